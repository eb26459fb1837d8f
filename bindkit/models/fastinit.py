"""Building an architecture on the meta device without running its random initialisation.

``load_model`` builds the model on the meta device and then assigns the checkpoint's tensors, so the layers'
``reset_parameters`` (kaiming_uniform_, normal_...) compute nothing useful there — yet on meta tensors PyTorch
routes them through its Python decompositions, whose first use imports ``torch._dynamo`` and sympy: 2-4 s of
every cold ``load_model`` (and so of every one-off ``bindkit search``). :func:`skip_meta_init` turns those
in-place initialisers into no-ops for meta tensors only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode

_INITIALISERS = frozenset({
    torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.fill_, torch.Tensor.zero_,
    torch.Tensor.bernoulli_, torch.Tensor.exponential_, torch.Tensor.random_, torch.Tensor.erfinv_,
    torch.Tensor.clamp_, torch.Tensor.mul_, torch.Tensor.add_, torch.Tensor.copy_,
    *(getattr(torch.nn.init, name) for name in (
        "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "xavier_uniform_",
        "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_") if hasattr(torch.nn.init, name)),
})


class skip_meta_init(TorchFunctionMode):
    """Context manager: in-place initialisers on meta tensors return at once (meta tensors hold no values, so
    nothing is lost); every other call runs as usual."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _INITIALISERS:
            target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))  # nn.init passes tensor=
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)
