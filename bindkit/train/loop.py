"""Moved: the encoding helpers are in :mod:`bindkit.train.encode`, the optimiser's groups and schedule in
:mod:`bindkit.train.optim`. This module re-exports them for old imports."""

from .encode import (PairModule, embed_rows, empty_batch, encode_side, make_loader, same_items,  # noqa: F401  (moved)
                     to_device, validate)
from .optim import fraction_or_steps, lr_lambda, param_groups  # noqa: F401  (moved)
