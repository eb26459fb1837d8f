"""Reading parts of a sound file as if it had been decoded and resampled whole.

A long query (an hour of WAV is 2.5 GB as float32) needs only the few seconds its clips cover. The audio
loader resamples the whole waveform with ``torchaudio.functional.resample`` (a windowed-sinc polyphase filter:
output block ``i`` of ``new`` samples is a dot product of the kernel with input ``[i*orig - width,
i*orig + orig + width)``, zero outside the file, with ``orig``/``new`` the rates divided by their gcd). So
output samples ``[a, b)`` need only the input from the block of ``a`` minus the filter width to the block of
``b - 1`` plus the width: :func:`read_resampled` reads that range (block-aligned, so the polyphase phases
line up), resamples it and keeps ``[a, b)``; the values equal the whole-file result up to float rounding.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

import numpy as np
import torch

_LOWPASS_WIDTH, _ROLLOFF = 6, 0.99  # torchaudio.functional.resample's defaults, which the loader uses
#: Input frames read at least per range. torch's CPU convolution picks its algorithm by input size (oneDNN
#: above 20480 elements for one channel, the native one below) and the two round differently (~1e-7, which
#: the log-mel of a quiet band amplifies to ~1e-4); a long file always takes the oneDNN path, so a range at
#: least this long does too, and its samples come out bit-identical to the whole-file resample.
MIN_READ_FRAMES = 1 << 15


def _reduced(orig: int, new: int) -> tuple[int, int]:
    g = math.gcd(int(orig), int(new))
    return int(orig) // g, int(new) // g


def filter_width(orig: int, new: int) -> int:
    """Input samples the resampling kernel reaches on each side of a block (torchaudio's ``width``)."""
    o, n = _reduced(orig, new)
    return math.ceil(_LOWPASS_WIDTH * o / (min(o, n) * _ROLLOFF))


def resampled_length(frames: int, orig: int, new: int) -> int:
    """Length of ``resample(wave, orig, new)`` for ``frames`` input samples, computed as torchaudio does
    (its float32 ``ceil``, capped by what its convolution produces)."""
    if orig == new:
        return int(frames)
    o, n = _reduced(orig, new)
    wanted = int(torch.ceil(torch.as_tensor(n * frames / o)).long())
    return min(wanted, (frames // o + 1) * n)


def input_span(a: int, b: int, rate: int, frames: int, target: int) -> tuple[int, int]:
    """Input frames ``[start, stop)`` that resampled samples ``[a, b)`` depend on (block-aligned, at least
    :data:`MIN_READ_FRAMES` long where the file allows; ``[a, b)`` itself when no resampling is needed)."""
    if rate == target:
        return a, b
    o, n = _reduced(rate, target)
    width = filter_width(rate, target)
    first, last = a // n, (b - 1) // n  # output blocks holding samples a and b - 1
    start = max(0, (first - math.ceil(width / o)) * o)  # a whole number of blocks before, covering the width
    stop = min(frames, max((last + 1) * o + width, start + MIN_READ_FRAMES))
    if stop - start < MIN_READ_FRAMES:  # near the end: widen backwards, still by whole blocks
        start = max(0, start - math.ceil((MIN_READ_FRAMES - (stop - start)) / o) * o)
    return start, stop


def resample_span(seg: torch.Tensor, span: tuple[int, int], a: int, b: int, rate: int, frames: int,
                  target: int) -> torch.Tensor:
    """Resampled samples ``[a, b)`` from ``seg``, the input frames ``span = input_span(a, b, ...)`` of a file of
    ``frames`` frames. Returns a view into a wider tensor (as a clip of a whole waveform is)."""
    import torchaudio.functional as AF

    if rate == target:
        # a view into a wider buffer, like a clip of the whole waveform: reductions over it (the clip mean)
        # then add in the same order as on the whole-file path, rather than over one flat run of samples
        return torch.nn.functional.pad(seg, (0, 1))[:, : b - a]
    o, n = _reduced(rate, target)
    width = filter_width(rate, target)
    start, stop = span
    if stop == frames:  # the whole-file resample pads with zeros past the end: so do we
        seg = torch.nn.functional.pad(seg, (0, width + o))
    out = AF.resample(seg, orig_freq=rate, new_freq=target)
    offset = (start // o) * n
    return out[:, a - offset:b - offset]


def read_resampled(f: Any, a: int, b: int, target: int) -> torch.Tensor:
    """Samples ``[a, b)`` (channels x (b - a) float32) of the open soundfile ``f`` resampled to ``target``,
    reading only the input they depend on. Returns a view into a wider tensor (as a clip of a whole waveform is)."""
    rate, frames = int(f.samplerate), int(f.frames)
    span = input_span(a, b, rate, frames, target)
    return resample_span(_read(f, *span), span, a, b, rate, frames, target)


def resample_bytes(orig: int, new: int) -> int:
    """About the memory ``torchaudio.functional.resample(orig -> new)`` allocates besides its input and output:
    its windowed-sinc kernel (new x (orig + 2 width), built in float64, twice over), with ``orig``/``new``
    divided by their gcd. Tiny for usual rates (44.1 kHz -> 16 kHz: 1 MB); a prime rate like 7919 Hz needs 2 GB."""
    if orig == new:
        return 0
    o, n = _reduced(orig, new)
    return 2 * 8 * n * (o + 2 * filter_width(orig, new))


#: Files with more channels than this are folded to two (:func:`fold_channels`) as they are decoded; up to 8
#: (7.1 surround) they are kept as they are, so their features stay bit-identical to a whole decode.
FOLD_ABOVE = 8
#: Read (and fold) a many-channel file in blocks of this many frames, so that it is never held whole.
_BLOCK_FRAMES = 1 << 16


def fold_channels(x: np.ndarray) -> np.ndarray:
    """channels x samples -> at most 2 x samples with the same channel 0 and the same mean over channels.

    The loader uses channel 0 for the filterbank and the mean over *all* channels of each clip (the clip mean
    is subtracted first); both are linear, so channel 0 plus a companion row ``2 * mean - channel 0`` gives
    the same features (up to float rounding: ~1e-5, at most ~2e-4 in quiet bands) while resampling 2 rows
    instead of C. Up to :data:`FOLD_ABOVE` channels pass as they are (their values stay bit-identical)."""
    if x.shape[0] <= FOLD_ABOVE:
        return x
    mean = x.mean(axis=0, dtype=np.float64)
    return np.stack([x[0], (2.0 * mean - x[0]).astype(np.float32)])


def read_folded(f: Any, frames: int) -> np.ndarray:
    """Up to ``frames`` frames from the open soundfile ``f`` (from its position) as a folded (:func:`fold_channels`)
    channels x samples float32 array: one read up to :data:`FOLD_ABOVE` channels, blocks for more."""
    if int(f.channels) <= FOLD_ABOVE:
        return np.ascontiguousarray(f.read(frames, dtype="float32", always_2d=True).T)
    parts = []
    while frames > 0:
        block = f.read(min(frames, _BLOCK_FRAMES), dtype="float32", always_2d=True)
        if not len(block):
            break
        parts.append(fold_channels(block.T))
        frames -= len(block)
    return np.concatenate(parts, axis=1) if parts else np.zeros((2, 0), np.float32)


def _read(f: Any, start: int, stop: int) -> torch.Tensor:
    f.seek(start)
    return torch.from_numpy(read_folded(f, stop - start))


_DATA_LINE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)
_PLACEHOLDERS = (0, 0xFFFFFFFF, 0x7FFFFFFF)  # sizes streaming writers put in headers they cannot rewrite


def warn_if_truncated(f: Any, label: str) -> bool:
    """Warn (RuntimeWarning naming ``label``) when the file's header announces more audio data than the file
    holds (a cut-off download or copy); libsndfile then reads what is there. Returns whether it warned."""
    m = _DATA_LINE.search(getattr(f, "extra_info", "") or "")
    if not m or int(m[1]) in _PLACEHOLDERS or int(m[1]) <= int(m[2]):
        return False
    rate = int(f.samplerate)
    warnings.warn(f"{label}: truncated audio file: its header announces {int(m[1])} bytes of audio data but the "
                  f"file holds {int(m[2])}; embedding the {int(f.frames)} frames present "
                  f"({int(f.frames) / rate:.2f} s); re-export or re-download it", RuntimeWarning, stacklevel=2)
    return True
