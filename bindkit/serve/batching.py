"""Dynamic batching: concurrent requests share forward passes instead of taking turns on a lock.

Handlers (on the asyncio event loop) submit preprocessed items with :meth:`DynamicBatcher.submit`, which
returns an awaitable. One worker thread owns the model: it takes the first waiting job, keeps collecting jobs
for at most ``max_wait_ms`` (or until ``max_batch`` items are waiting), groups the items by input kind and runs
each group through its encoder in batches of at most ``max_batch`` items, then hands every job its rows.
While a forward pass runs, new requests queue up and form the next batch, so under load batches fill without
any waiting; an idle server adds at most ``max_wait_ms`` to a request. ``max_batch=1`` turns batching off
(one item per forward pass, the baseline the benchmark compares against).

The vectors returned are the encoder's outputs *before* bindkit's final renormalisation of clip averages:
unit vectors for images, text, depth, thermal and IMU; for audio and video the mean of the clips' unit
vectors (what the reference model averages, after its per-clip normalisation). ``normalize`` of those rows
is exactly ``model.encode``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TYPE_CHECKING

import numpy as np
import torch

from ..modality import encoder_of

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel

log = logging.getLogger("bindkit.serve")

_STOP = object()


@dataclass
class _Job:
    kind: str
    items: list[torch.Tensor]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    queued: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    """Counters the worker keeps (served at ``/meta``): forward passes, items, and the largest batch."""

    forwards: int = 0
    items: int = 0
    jobs: int = 0
    largest_batch: int = 0

    def to_dict(self) -> dict[str, Any]:
        mean = self.items / self.forwards if self.forwards else 0.0
        return {"forwards": self.forwards, "items": self.items, "jobs": self.jobs,
                "largest_batch": self.largest_batch, "mean_batch": round(mean, 3)}


def clip_mean_vectors(model: "BindModel", kind: str, batch: torch.Tensor) -> torch.Tensor:
    """float32 (N, dim) rows for a preprocessed ``batch`` of ``kind``: unit vectors, or for audio/video the
    mean over clips of the clips' unit vectors (not renormalised). Same casts and ops as ``model.encode``."""
    encoder = model.encoders[encoder_of(kind)]
    param = next(encoder.parameters())
    batch = batch.to(param.device, param.dtype if batch.dtype.is_floating_point else batch.dtype)
    with torch.inference_mode():
        if kind in ("audio", "video"):
            if kind == "audio" and batch.ndim == 4:  # one clip per file
                batch = batch.unsqueeze(1)
            n, s = batch.shape[:2]
            out = encoder(batch.flatten(0, 1)).view(n, s, -1).mean(dim=1)
        else:
            out = encoder(batch)
    return out.float()


class DynamicBatcher:
    """Runs ``model`` in one worker thread on batches coalesced from concurrent :meth:`submit` calls.

    Args:
        model: a BindModel (eval mode).
        max_batch: most items per forward pass (1 = no batching).
        max_wait_ms: how long the worker waits for more jobs after the first one arrives.

    Attributes:
        on_forward: called in the worker thread after each forward pass with (input kind, items, seconds)
            (the server's metrics); None by default.
    """

    def __init__(self, model: "BindModel", max_batch: int = 32, max_wait_ms: float = 5.0):
        if int(max_batch) < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch!r}")
        if float(max_wait_ms) < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms!r}")
        self.model = model
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.stats = BatchStats()
        self.on_forward: Callable[[str, int, float], None] | None = None
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="bindkit-batcher", daemon=True)
        self._started = False
        self._stopped = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Finish the jobs already queued, then end the worker thread."""
        if self._started and not self._stopped:
            self._stopped = True
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def queue_depth(self) -> int:
        """Jobs (requests' groups of items) waiting for a forward pass, not counting the batch being run."""
        return self._queue.qsize()

    async def submit(self, kind: str, items: list[torch.Tensor]) -> np.ndarray:
        """Rows (len(items), dim) float32 for preprocessed items of one kind (see the module docstring)."""
        if not items:
            return np.zeros((0, int(self.model.dim)), np.float32)
        if self._stopped:
            raise RuntimeError("the batcher has been stopped (the server is shutting down)")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put(_Job(kind, list(items), fut, loop))
        return await fut

    # ---- worker thread --------------------------------------------------------------------------------------
    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs, n, stop = [first], len(first.items), False
        deadline = time.perf_counter() + self.max_wait
        while n < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    job = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if job is _STOP:
                stop = True
                break
            jobs.append(job)
            n += len(job.items)
        return jobs, stop

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            jobs, stop = self._collect(first)
            by_kind: dict[str, list[_Job]] = {}
            for job in jobs:
                by_kind.setdefault(job.kind, []).append(job)
            for kind, group in by_kind.items():
                self._forward(kind, group)
        # jobs that raced with the stop signal still get answered
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP:
                self._forward(job.kind, [job])

    def _forward(self, kind: str, jobs: list[_Job]) -> None:
        items = [t for job in jobs for t in job.items]
        try:
            parts = []
            for start in range(0, len(items), self.max_batch):
                chunk = items[start : start + self.max_batch]
                began = time.perf_counter()
                parts.append(clip_mean_vectors(self.model, kind, torch.stack(chunk)).cpu().numpy())
                self.stats.forwards += 1
                self.stats.largest_batch = max(self.stats.largest_batch, len(chunk))
                if self.on_forward is not None:
                    self.on_forward(kind, len(chunk), time.perf_counter() - began)
            rows = np.concatenate(parts)
        except BaseException as exc:  # a bug or out-of-memory: every waiting request learns of it
            log.exception("forward pass for %d %s item(s) failed", len(items), kind)
            for job in jobs:
                job.loop.call_soon_threadsafe(_set_exception, job.future, exc)
            return
        self.stats.items += len(items)
        self.stats.jobs += len(jobs)
        offset = 0
        for job in jobs:
            n = len(job.items)
            job.loop.call_soon_threadsafe(_set_result, job.future, rows[offset : offset + n])
            offset += n


def _set_result(fut: asyncio.Future, value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
