"""The options of ``bindkit distill`` (:func:`bindkit.distill`): the run options it shares with ``bindkit train``
(:class:`bindkit.train.options.RunOptions`, with distillation's defaults) and its own."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import DistillArgumentError
from ..train.options import RunOptions


@dataclass(kw_only=True)
class DistillOptions(RunOptions):
    """The options of :func:`bindkit.distill` (see its docstring)."""

    teacher: Any
    data: "str | os.PathLike | Sequence[Any]"
    student_card: Any
    modality: str = "text"
    teacher_weights: str | os.PathLike | None = None
    column: str | None = None
    epochs: int = 10
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.01
    contrastive: float = 0.1
    temperature: float = 0.05
    teacher_targets: bool = True
    val_split: float = 0.02
    init_from_teacher: bool = True
    teacher_blocks: Sequence[int] | None = None
    cache: str | os.PathLike | None = None
    cache_chunk: int = 4096
    teacher_batch_size: int = 256

    def check(self) -> None:
        """DistillArgumentError for an argument no run can use."""
        for label, v, lo in (("epochs", self.epochs, 1), ("batch_size", self.batch_size, 2),
                             ("cache_chunk", self.cache_chunk, 1)):
            if int(v) < lo:
                raise DistillArgumentError(f"{label} must be at least {lo}, got {v!r}")
        if not 0 <= self.val_split < 1:
            raise DistillArgumentError(f"val_split must be in [0, 1), got {self.val_split!r}")
        if self.temperature <= 0 or self.contrastive < 0:
            raise DistillArgumentError(f"temperature must be > 0 and contrastive >= 0 (got {self.temperature}, "
                                       f"{self.contrastive})")


__all__ = ["DistillArgumentError", "DistillOptions"]
