"""The optimiser's parameter groups and the learning-rate schedule of ``bindkit train`` and ``bindkit distill``
(the optimiser itself: :func:`bindkit.train.run.build_adamw`; schedules sized to the data: :mod:`.schedule`)."""

from __future__ import annotations

import math
from typing import Any, Sequence

from torch import nn


def fraction_or_steps(value: float, total: int) -> int:
    """``--warmup``: a fraction of the total steps when below 1, else a step count."""
    return int(round(value * total)) if 0 <= value < 1 else int(value)


def lr_lambda(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / span)))


def param_groups(encoders: Sequence[nn.Module], weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices (linear/conv weights, token embeddings); none on biases,
    norms, class/position tokens, bias key/values and temperatures."""
    decay, no_decay = [], []
    for enc in encoders:
        for name, p in enc.named_parameters():
            if not p.requires_grad:
                continue
            skip = p.ndim < 2 or name.endswith(("cls_token", "pos_embed", "bias_k", "bias_v", "log_logit_scale"))
            (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
