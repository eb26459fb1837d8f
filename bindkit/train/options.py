"""The options of ``bindkit train`` and ``bindkit distill`` as typed dataclasses, declared once: the fields both
commands share (:class:`RunOptions`: output, schedule, optimiser, checkpointing, device) and each command's own
(:class:`TrainOptions`; :class:`bindkit.distill.options.DistillOptions`). :func:`bindkit.train` and
:func:`bindkit.distill` take them as keyword arguments (see their docstrings for each one's meaning); the CLI
builds them from its parsed arguments (:func:`bindkit.cli.common.options_from`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterable, Sequence

import torch

from ..errors import ArgumentError

AUGMENT_MODES = ("trainable", "all", "none")


@dataclass(kw_only=True)
class RunOptions:
    """The options every run has (defaults: ``bindkit train``'s where the two commands differ)."""

    out: str | os.PathLike
    epochs: int | None = None
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    val_split: float = 0.1
    max_steps: int | None = None
    save_every: int | None = None
    stop_after: int | None = None
    resume: bool = False
    device: str | torch.device | None = None
    workers: int = 0
    name: str | None = None
    progress: bool | None = None
    log: Callable[[str], None] | None = None
    command: list[str] | None = None

    @classmethod
    def names(cls) -> list[str]:
        """The option names, in declaration order."""
        return [f.name for f in fields(cls)]

    def as_kwargs(self) -> dict[str, Any]:
        """The options as keyword arguments (of :func:`bindkit.train` or :func:`bindkit.distill`)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(kw_only=True)
class TrainOptions(RunOptions):
    """The options of :func:`bindkit.train` (see its docstring)."""

    manifests: Sequence[str | os.PathLike] | str | os.PathLike
    card: Any = None
    init: Any = None
    weights: str | os.PathLike | None = None
    freeze: Iterable[str] | str | None = None
    augment: str = "trainable"
    max_bad_rows: float = 0.05
    cache_mb: float = 2048
    amp: bool | None = None
    lora: Any = None
    pairing: str = "auto"
    patience: int | None = None

    def check(self, world: int) -> None:
        """ArgumentError for an argument no run can use (``world``: the number of processes)."""
        if self.augment not in AUGMENT_MODES:
            raise ArgumentError(f"augment must be one of {', '.join(AUGMENT_MODES)}, got {self.augment!r}")
        for label, v, lo in (("epochs", self.epochs, 1), ("batch_size", self.batch_size, 2),
                             ("patience", self.patience, 0)):
            if v is not None and int(v) < lo:
                raise ArgumentError(f"{label} must be at least {lo}, got {v!r}")
        if not 0 <= self.val_split < 1:
            raise ArgumentError(f"val_split must be in [0, 1), got {self.val_split!r}")
        if self.batch_size % world:
            raise ArgumentError(f"the global batch size {self.batch_size} is not divisible by the {world} processes")


__all__ = ["AUGMENT_MODES", "RunOptions", "TrainOptions"]
