"""Decode budgets: bounds on what decoding one request may hold, counted from the decoded bytes themselves.

A container header can lie (an audio file that claims 1 s and holds 20 minutes, a video whose frames are far
larger than its size field says), so limits checked on headers alone do not bound memory. A
:class:`DecodeBudget` is installed around a decode with :func:`use_budget`; the loaders then *charge* it as they
decode — audio samples as they come out of the decoder, video frames as they are converted, image pixels as
the decoder allocates them — and stop with :class:`DecodeLimitError` the moment a bound is passed, so at most
one decoder chunk past the bound is ever held.

Without a budget installed (the Python API, the CLI) loaders decode with no bound, as before; ``bindkit
serve`` installs one per request (its ``--max-decoded-size``, ``--max-audio-seconds``, ``--max-pixels``).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator

from ..errors import DecodeLimitError


@dataclass
class DecodeBudget:
    """Bounds for decoding the items of one request (thread-safe: items decode in parallel threads).

    Attributes:
        max_bytes: most decoded bytes (samples x channels x 4 for audio, width x height x 3 per converted video
            frame and ``video.TIMESTAMP_BYTES`` per video frame's timestamp, width x height x bands per image) all
            items together may produce; None: unbounded.
        max_audio_seconds: longest audio, counted in decoded samples (not the header's duration); None: unbounded.
        max_pixels: most pixels of one decoded video frame; None: unbounded.
        used: decoded bytes charged so far.
        breaches: every DecodeLimitError this budget raised, in order (a caller that gets an item's failure
            back as a plain reason, like ``Index.add``, can tell a budget's refusal from undecodable data).
    """

    max_bytes: int | None = None
    max_audio_seconds: float | None = None
    max_pixels: int | None = None
    used: int = 0
    breaches: list[DecodeLimitError] = field(default_factory=list, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def charge(self, nbytes: int, item: object, modality: str) -> None:
        """Count ``nbytes`` more decoded bytes; DecodeLimitError when the total passes ``max_bytes``."""
        with self._lock:
            self.used += int(nbytes)
            used = self.used
        if self.max_bytes is not None and used > self.max_bytes:
            raise self._breach(DecodeLimitError(item, modality, f"decoding the request's media needs more than "
                                                f"{self.max_bytes} bytes of memory", "bytes", used, self.max_bytes))

    def refund(self, nbytes: int) -> None:
        """Take back ``nbytes`` charged earlier for data that was released before decoding went on."""
        with self._lock:
            self.used -= int(nbytes)

    def check_audio(self, samples: int, rate: int, item: object) -> None:
        """DecodeLimitError when ``samples`` decoded at ``rate`` Hz pass ``max_audio_seconds``."""
        if self.max_audio_seconds is not None and rate > 0 and samples > self.max_audio_seconds * rate:
            seconds = samples / rate
            raise self._breach(DecodeLimitError(item, "audio", f"the audio lasts at least {seconds:.1f} s (counted "
                                                f"while decoding), over the limit of {self.max_audio_seconds:g} s",
                                                "audio_seconds", seconds, self.max_audio_seconds))

    def check_pixels(self, width: int, height: int, item: object, modality: str) -> None:
        """DecodeLimitError when a decoded frame of ``width`` x ``height`` passes ``max_pixels``."""
        if self.max_pixels is not None and width * height > self.max_pixels:
            raise self._breach(DecodeLimitError(item, modality, f"a decoded frame is {width} x {height} = "
                                                f"{width * height} pixels, over the limit of {self.max_pixels}",
                                                "pixels", width * height, self.max_pixels))

    def _breach(self, exc: DecodeLimitError) -> DecodeLimitError:
        with self._lock:
            self.breaches.append(exc)
        return exc

    def breach_for(self, reason: str) -> DecodeLimitError | None:
        """The breach whose reason starts ``reason`` (an item failure reported as text), or None: whether an
        item failed because this budget refused it rather than because it could not be decoded."""
        with self._lock:
            return next((b for b in self.breaches if reason.startswith(b.reason)), None)


_UNBOUNDED = DecodeBudget()
_CURRENT: ContextVar[DecodeBudget] = ContextVar("bindkit_decode_budget", default=_UNBOUNDED)


def current_budget() -> DecodeBudget:
    """The budget active in this thread/context (an unbounded one when none is installed)."""
    return _CURRENT.get()


@contextmanager
def use_budget(budget: DecodeBudget | None) -> Iterator[DecodeBudget]:
    """Install ``budget`` for the decodes run inside the ``with`` block (None: unbounded)."""
    token = _CURRENT.set(budget or DecodeBudget())
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)
