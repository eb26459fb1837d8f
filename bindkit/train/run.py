"""The run shell shared by ``bindkit train`` and ``bindkit distill``: everything around the step.

Both commands write a model directory the same way: refuse a non-empty output directory unless resuming, and a
resume whose arguments changed; snapshot the arguments; save and restore the RNG streams; checkpoint ``last``
(with the optimiser, scheduler and RNG state) and ``best``; publish the best epoch (else the last step); measure
throughput; and write a JSON record whose header says what made it. What differs (the data, the model, the step,
the record's body) stays with each command (:mod:`bindkit.train.trainer`, :mod:`bindkit.distill.loop`).

The loop shell is :class:`RunState`: the step counter, the schedule's length, the per-epoch history and best epoch,
and ``stop_after``; :meth:`RunState.epochs` and :meth:`RunState.batches` walk the remaining steps so that a
resumed run continues at its step exactly.
"""

from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ..errors import CheckpointError
from . import checkpoint as ck
from .optim import lr_lambda

Log = Callable[[str], None]


def log_to_stderr(msg: str) -> None:
    """The default ``log``: one line on stderr, above a progress bar rather than through it."""
    from tqdm.auto import tqdm

    tqdm.write(msg, file=sys.stderr)


# --- RNG ------------------------------------------------------------------------------------------------------

def seed_all(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """torch's CPU (and CUDA) generator states, as a checkpoint keeps them."""
    st: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


# --- arguments, output directory, resume ----------------------------------------------------------------------

def args_snapshot(**kw: Any) -> dict[str, Any]:
    """The arguments as JSON values (paths, devices and other objects as text, sequences as lists): what the
    record keeps and what a resume compares."""

    def norm(v: Any) -> Any:
        if isinstance(v, (str, int, float, bool)) or v is None:
            return v
        if isinstance(v, os.PathLike):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        if isinstance(v, torch.device):
            return str(v)
        return str(v)

    return {k: norm(v) for k, v in kw.items()}


def refuse_non_empty(out: Path, resume_hint: str = "--resume") -> None:
    """CheckpointError when ``out`` exists and holds anything (a run that is not resumed starts empty)."""
    if out.exists() and any(out.iterdir()):
        raise CheckpointError(f"output directory {out} is not empty; continue that run with {resume_hint}, or "
                              "choose another --out")


def refuse_changed_args(saved: dict[str, Any], args: dict[str, Any], keys: Sequence[str], out: Path, *,
                        what: str = "the arguments", show: Callable[[Any], str] = repr) -> None:
    """CheckpointError naming every argument in ``keys`` that differs between the run in ``out`` (``saved``)
    and this call (``args``): they decide the data order and the schedule, so a resume needs them unchanged."""
    changed = [k for k in keys if saved.get(k) != args.get(k)]
    if changed:
        diffs = "; ".join(f"{k}: {show(saved.get(k))} then, {show(args.get(k))} now" for k in changed)
        raise CheckpointError(f"--resume needs {what} of the run in {out}; changed: {diffs}")


# --- optimiser and schedule -----------------------------------------------------------------------------------

def build_adamw(groups: list[dict[str, Any]], lr: float, *, device: torch.device | None = None,
                fused: bool = False) -> torch.optim.Optimizer:
    """AdamW with betas (0.9, 0.95) and eps 1e-6, the one optimiser of both commands. ``fused``: PyTorch's fused
    update where ``device`` offers it (distillation: a student's token table is most of its parameters, and the
    fused update of it is ~8x faster on a CPU), else the plain one (training: the update its results were made
    with)."""
    if fused and device is not None:
        try:
            return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-6,
                                     fused=device.type in ("cpu", "cuda"))
        except (RuntimeError, TypeError, ValueError):  # an older PyTorch or another device: the plain update
            pass
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-6)


def build_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int,
                    total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``total`` (:func:`~.optim.lr_lambda`)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_lambda(s, warmup_steps, total))


def restore_optimiser(state: dict[str, Any], optimizer: torch.optim.Optimizer, scheduler: Any,
                      scaler: Any = None) -> None:
    """Load the optimiser, scheduler (and loss scaler) states a ``last`` checkpoint holds."""
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])


# --- the loop shell -------------------------------------------------------------------------------------------

@dataclass
class RunState:
    """Where a run is: ``step`` of ``total`` (``spe`` steps per epoch), the steps taken by this call
    (``done_here``, against ``stop_after``), the per-epoch ``history`` and the ``best`` epoch."""

    total: int
    spe: int
    stop_after: int | None = None
    step: int = 0
    done_here: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None

    def paused(self) -> bool:
        """This call has taken its ``stop_after`` steps."""
        return self.stop_after is not None and self.done_here >= self.stop_after

    def epochs(self) -> Iterator[tuple[int, int]]:
        """``(epoch, first batch)`` for every epoch left to run (the first one may start mid-epoch)."""
        while self.step < self.total and not self.paused():
            yield divmod(self.step, self.spe)

    def batches(self, offset: int) -> Iterator[int]:
        """The batch numbers of the current epoch from ``offset``, while the run goes on (call :meth:`advance`
        after each)."""
        for b in range(offset, self.spe):
            if self.step >= self.total or self.paused():
                break
            yield b

    def advance(self) -> None:
        """One step taken."""
        self.step += 1
        self.done_here += 1

    def end_of_epoch(self) -> bool:
        return self.step % self.spe == 0 or self.step == self.total

    def checkpoint_due(self, end_of_epoch: bool, save_every: int | None) -> bool:
        """Save ``last`` now: at the end of an epoch, every ``save_every`` steps, and before pausing."""
        return end_of_epoch or bool(save_every and self.step % save_every == 0) or self.paused()

    @property
    def finished(self) -> bool:
        return self.step >= self.total

    def trainer_state(self, args: dict[str, Any], optimizer: torch.optim.Optimizer, scheduler: Any, rng: Any,
                      **extra: Any) -> dict[str, Any]:
        """What ``checkpoints/last`` keeps to resume: step, arguments, optimiser, scheduler, RNG, history, best
        and the caller's ``extra``."""
        return {"step": self.step, "args": args, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": rng, "history": self.history, "best": self.best,
                **extra}


class Throughput:
    """Items per second over a window that restarts every 30 s (so the figure follows the current speed)."""

    def __init__(self) -> None:
        self.items, self.since = 0, time.time()

    def add(self, n: int) -> tuple[float, float]:
        """Count ``n`` items; returns (items per second, now)."""
        self.items += n
        now = time.time()
        ips = self.items / max(now - self.since, 1e-9)
        if now - self.since > 30:
            self.items, self.since = 0, now
        return ips, now


# --- record, checkpoints, publishing --------------------------------------------------------------------------

def run_record(fmt: str, status: str, command: list[str] | None, args: dict[str, Any], body: dict[str, Any],
               started: float) -> dict[str, Any]:
    """A run's record: the header (``fmt``, version 1, ``status``, bindkit's and torch's versions, the command
    and its arguments), the command's ``body``, and the wall time so far."""
    import bindkit

    return {"format": fmt, "format_version": 1, "status": status, "bindkit_version": bindkit.__version__,
            "torch_version": torch.__version__, "command": command, "arguments": args, **body,
            "wall_s": round(time.time() - started, 1)}


def save(out: Path, which: str, weights: dict[str, torch.Tensor] | None, card: dict[str, Any],
         state: dict[str, Any] | None, record: dict[str, Any], *, record_name: str = ck.RECORD_FILE,
         write: Callable[..., Any] | None = None) -> None:
    """Checkpoint ``which`` (``last``: with ``state``, to resume from; ``best``: weights only) and rewrite the
    record next to it."""
    ck.save_checkpoint(out, which, weights, card, state, write=write)
    ck.write_record(out, record, record_name)


def publish(out: Path, best: dict[str, Any] | None) -> str:
    """Copy the best checkpoint (else the last) to ``out``'s top level; returns what was published, as the
    record says it."""
    src = ck.checkpoint_dir(out, "best") if best is not None else None
    ck.publish(out, src or ck.checkpoint_dir(out, "last"))
    return f"best (epoch {best['epoch'] + 1}, step {best['step']})" if best is not None else "last"


def fingerprints(manifest: dict[str, Any]) -> dict[str, Any]:
    """``{encoder: fingerprint}`` of a published model directory's manifest."""
    return {m: info.get("fingerprint") for m, info in manifest["files"].items()}


def say_done(say: Log, run: RunState, out: Path) -> None:
    """The last line of a run: finished, or paused and how to continue."""
    say(f"{'finished' if run.finished else 'paused'} at step {run.step}/{run.total}: {out}"
        + ("" if run.finished else " (continue with --resume)"))


__all__ = ["Log", "RunState", "Throughput", "args_snapshot", "build_adamw", "build_scheduler", "fingerprints",
           "log_to_stderr", "publish", "refuse_changed_args", "refuse_non_empty", "restore_optimiser",
           "rng_state", "run_record", "save", "say_done", "seed_all", "set_rng_state"]
