"""``bindkit.train``: bind modalities through images by contrastive training on pair manifests.

Call it like a function — ``bindkit.train("image_text.csv", "m1", card="bindkit_small")`` — or use the
parts: :mod:`.data` (manifests, validation, batching), :mod:`.augment`, :mod:`.loss` (symmetric InfoNCE with
cross-rank negatives), :mod:`.encode` (encoding and validation), :mod:`.step` (one training step), :mod:`.optim`
(parameter groups, schedule), :mod:`.options` (the arguments as dataclasses), :mod:`.run` (the run shell shared
with ``bindkit distill``), :mod:`.checkpoint` (the output directory) and :mod:`.trainer` (:func:`train`). See :func:`bindkit.train.trainer.train` for every argument; the CLI is ``bindkit train``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .data import ManifestError
from .options import RunOptions, TrainOptions
from .trainer import TrainResult, train, train_with

__all__ = ["ManifestError", "RunOptions", "TrainOptions", "TrainResult", "train", "train_with"]


class _CallableModule(types.ModuleType):
    """``bindkit.train`` is both this package and the function: importing ``bindkit.train.data`` makes the
    attribute ``bindkit.train`` the package, so the package forwards calls to :func:`train`."""

    def __call__(self, *args: Any, **kwargs: Any) -> TrainResult:
        return train(*args, **kwargs)


# Why this stays: ``bindkit.train`` must be both the function (``bindkit.train(...)``, the documented API) and this
# package (``bindkit.train.data`` ...). Making ``bindkit.__getattr__`` return the function is not enough: importing
# any submodule (``import bindkit.train.data``, done by bindkit itself) sets the attribute ``bindkit.train`` to the
# package, after which ``bindkit.train(...)`` would fail. A callable package works whichever happened first.
sys.modules[__name__].__class__ = _CallableModule
