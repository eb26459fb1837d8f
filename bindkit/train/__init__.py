"""``bindkit.train``: bind modalities through images by contrastive training on pair manifests.

Call it like a function — ``bindkit.train("image_text.csv", "m1", card="bindkit_small")`` — or use the
parts: :mod:`.data` (manifests, validation, batching), :mod:`.augment`, :mod:`.loss` (symmetric InfoNCE with
cross-rank negatives), :mod:`.loop`, :mod:`.checkpoint` (the output directory) and :mod:`.trainer`
(:func:`train`). See :func:`bindkit.train.trainer.train` for every argument; the CLI is ``bindkit train``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .data import ManifestError
from .trainer import TrainResult, train

__all__ = ["ManifestError", "TrainResult", "train"]


class _CallableModule(types.ModuleType):
    """``bindkit.train`` is both this package and the function: importing ``bindkit.train.data`` makes the
    attribute ``bindkit.train`` the package, so the package forwards calls to :func:`train`."""

    def __call__(self, *args: Any, **kwargs: Any) -> TrainResult:
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
