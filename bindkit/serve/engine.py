"""The server's model side: decode request media off the event loop, check limits, and embed through the
dynamic batcher. Handlers only ever see :class:`~bindkit.serve.errors.ApiError` for bad input.

Media always reaches bindkit's loaders as ``bytes`` (never as a string, which a loader would take for a
path), so no request can make the server read its own files.
"""

from __future__ import annotations

import asyncio
import os
import re
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Sequence, TYPE_CHECKING

import numpy as np
import torch

from ..errors import InputError, ModalityError, describe_exc
from ..fileio import sniff
from ..inputs.batch import load_item, resolve_params
from ..inputs.budget import DecodeBudget, DecodeLimitError, use_budget
from ..modality import encoder_of
from .batching import DynamicBatcher
from .errors import ApiError
from .limits import Limits

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel


class Engine:
    """A loaded model with its batcher, decoding pool and limits.

    Args:
        model: a BindModel in eval mode.
        limits: the request limits.
        max_batch, max_wait_ms: see :class:`~bindkit.serve.batching.DynamicBatcher`.
        decode_workers: threads decoding media (default: the CPU count, at most 8).
    """

    def __init__(self, model: "BindModel", limits: Limits | None = None, *, max_batch: int = 32, max_wait_ms: float = 5.0,
                 decode_workers: int | None = None):
        self.model = model
        self.limits = limits or Limits()
        self.batcher = DynamicBatcher(model, max_batch=max_batch, max_wait_ms=max_wait_ms)
        workers = decode_workers or max(1, min(os.cpu_count() or 1, 8))
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bindkit-decode")
        self._params: dict[str, dict] = {}
        # the input kinds this model can embed (vision serves image and video)
        self.kinds = tuple(k for k in ("text", "image", "audio", "video", "depth", "thermal", "imu")
                           if encoder_of(k) in model.modalities)

    def start(self) -> None:
        self.warm_up()
        self.batcher.start()

    def warm_up(self) -> None:
        """Import now, before the server says it is ready, what the first request of each kind would import:
        its loader (torchvision for images), its decoders (PyAV, soundfile) and its parameters. Imported under
        load instead, a module is compiled while holding the GIL (for seconds where no ``.pyc`` can be written),
        and every other request - ``/.well-known/live`` included - waits."""
        from ..inputs.batch import LOADERS

        for kind in self.kinds:
            LOADERS[kind]
            self.params(kind)
        if {"audio", "video"} & set(self.kinds):
            import av  # noqa: F401  (the decoder of video, and of audio soundfile cannot read)
        if "audio" in self.kinds:
            import soundfile  # noqa: F401
        if {"image", "video", "depth", "thermal"} & set(self.kinds):
            from PIL import Image

            Image.init()  # Pillow imports its format plugins on the first file it does not know

    def close(self) -> None:
        """Finish the batch in progress, then stop the batcher and the decoding pool (decodes of requests that
        were cancelled at shutdown are not waited for)."""
        self.batcher.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def params(self, kind: str) -> dict:
        if kind not in self._params:
            self._params[kind] = resolve_params(kind, self.model)
        return self._params[kind]

    def scale(self, kind: str) -> float:
        """The reference's output scale for ``kind`` (1 for image and video)."""
        s = self.model.logit_scale(kind)
        return 1.0 if s is None else float(s)

    def require(self, kind: str, param: str) -> None:
        """422 when the model has no encoder for ``kind``."""
        if kind not in self.kinds:
            raise ApiError(422, f"{param}: this server's model has no {encoder_of(kind)!r} encoder (it embeds "
                           f"{', '.join(self.kinds)})", param=param)

    # ---- decoding -----------------------------------------------------------------------------------------------
    def _load(self, kind: str, item: bytes | str, label: str, budget: DecodeBudget) -> torch.Tensor:
        try:
            with use_budget(budget):
                if kind != "text":
                    if not isinstance(item, (bytes, bytearray)):  # never a str: the loader would read it as a path
                        raise ApiError(500, f"{label}: internal error, media reached the loader as "
                                       f"{type(item).__name__}")
                    self.limits.check_media(kind, bytes(item), label, budget)
                return load_item(kind, item, 0, self.params(kind))
        except DecodeLimitError as exc:
            raise limit_error(label, exc) from None
        except InputError as exc:
            reason = _BUFFER_REPR.sub("", exc.reason)
            what = sniff(bytes(item[:16]), media=True) if isinstance(item, (bytes, bytearray)) else None
            if what and "looks like" not in reason and not _matches(kind, what):
                reason += f"; it looks like {what}, not {_KIND_WORDS.get(kind, kind)}"
            raise ApiError(422, f"{label}: {reason}", param=label) from None
        except MemoryError:
            raise ApiError(413, f"{label}: decoding it needs more memory than this server has", param=label) from None
        except (ValueError, RuntimeError) as exc:  # a decoder complaint the loader did not wrap
            raise ApiError(422, f"{label}: could not be decoded as {kind} ({describe_exc(exc)})",
                           param=label) from None

    async def load(self, kind: str, items: Sequence[bytes | str], labels: Sequence[str]) -> list[torch.Tensor]:
        """Decode ``items`` of one kind in the decoding pool, all at once; the first failure (in input order)
        is raised as an ApiError naming its label."""
        loop = asyncio.get_running_loop()
        budget = request_budget(self.limits)
        futs = [loop.run_in_executor(self.pool, self._load, kind, item, label, budget)
                for item, label in zip(items, labels)]
        results = await asyncio.gather(*futs, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return list(results)

    async def vectors(self, kind: str, items: Sequence[bytes | str], labels: Sequence[str]) -> np.ndarray:
        """float32 (n, dim): unit vectors, or for audio/video the mean of the clips' unit vectors."""
        if not items:
            return np.zeros((0, int(self.model.dim)), np.float32)
        tensors = await self.load(kind, items, labels)
        try:
            return await self.batcher.submit(kind, tensors)
        except ModalityError as exc:
            raise ApiError(422, str(exc)) from None

    async def unit_vectors(self, kind: str, items: Sequence[bytes | str], labels: Sequence[str]) -> np.ndarray:
        """float32 (n, dim) unit vectors, equal to ``model.embed`` of the same items."""
        rows = await self.vectors(kind, items, labels)
        return normalize(rows) if kind in ("audio", "video") else rows  # the others already are unit rows


_REQUEST_BUDGET: ContextVar[DecodeBudget | None] = ContextVar("bindkit_request_budget", default=None)
_LIMIT_OPTIONS = {"bytes": "--max-decoded-size", "audio_seconds": "--max-audio-seconds", "pixels": "--max-pixels"}


def limit_error(label: str, exc: DecodeLimitError) -> ApiError:
    """The 413 answer for item ``label`` refused by the request's decode budget (names the option to raise)."""
    return ApiError(413, f"{label}: {exc.reason} ({_LIMIT_OPTIONS[exc.limit]})", param=label)


def check_media(limits: Limits, kind: str, data: bytes, label: str, budget: DecodeBudget) -> None:
    """``limits.check_media`` charging ``budget`` (what a file's header makes its decoder allocate); 413 naming
    ``label`` when over a limit."""
    try:
        limits.check_media(kind, data, label, budget)
    except DecodeLimitError as exc:
        raise limit_error(label, exc) from None


def start_request(limits: Limits) -> None:
    """Give the current request (the asyncio context it runs in) a fresh decode budget, shared by all of its
    items whatever their kind."""
    _REQUEST_BUDGET.set(limits.budget())


def request_budget(limits: Limits) -> DecodeBudget:
    """The current request's decode budget (a fresh one outside a request started by :func:`start_request`)."""
    return _REQUEST_BUDGET.get() or limits.budget()


_BUFFER_REPR = re.compile(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>")
_KIND_WORDS = {"image": "an image", "depth": "a depth map", "thermal": "a thermal image", "audio": "audio",
               "video": "a video", "imu": "an IMU CSV"}


def _matches(kind: str, what: str) -> bool:
    """Whether the description ``what`` fits input kind ``kind`` (so no hint is needed)."""
    w = what.lower()
    if kind in ("image", "depth", "thermal"):
        return "image" in w
    return kind in w


def normalize(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (as torch's F.normalize: eps 1e-12), float32."""
    t = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
    return torch.nn.functional.normalize(t, dim=-1).numpy()
