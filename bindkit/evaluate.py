"""``bindkit.evaluate``: the evaluation API under its first name. The code lives in the package :mod:`bindkit.eval`
(``metrics``, ``tasks``, ``distillation``) and :class:`~bindkit.errors.EvalError` in :mod:`bindkit.errors`;
every name is re-exported here unchanged."""

from __future__ import annotations

from .eval import *  # noqa: F403  (moved: the same names, listed in bindkit.eval.__all__)
from .eval import __all__  # noqa: F401
