"""Audio loader: a sound file (or array) -> clips x 1 x mel x frames log-mel filterbanks, as the reference does it.

Steps (see NOTES "Audio"; each detail moves values by more than 1e-4):

1. decode every channel as float32 in [-1, 1) (soundfile; PyAV for what libsndfile cannot read), resample
   every channel to ``target_rate`` (16 kHz) with ``torchaudio.functional.resample`` defaults;
2. ``clips_per_file`` clips of ``clip_duration`` s starting at k * max(D - clip, 0) / clips (exact fractions,
   like pytorchvideo's ConstantClipsPerVideoSampler; the last clip does not reach the end);
3. per clip, in order: subtract the clip mean over all channels — in place on the shared waveform when
   ``reference_inplace_mean`` (the reference's quirk: overlapping clips see earlier clips' shifts) — then
   Kaldi fbank of channel 0 (Hanning 25 ms / 10 ms, htk_compat, no energy, no dither), transposed to
   mel x frames, zero-padded on the right or cut to ``target_length`` frames;
4. normalise (x - mean) / std.

Files longer than :data:`WHOLE_READ_MAX_S` that libsndfile can seek in are not decoded whole: only the input
the clips depend on is read and resampled (``bindkit.inputs.audio_ranges``; same values up to float rounding),
so a one-hour query costs what a minute does. A file whose header announces more data than it holds (a
truncated download) is embedded from what it holds, with a RuntimeWarning naming it.

All-silent audio is a valid signal and is embedded: its fbank is log(float32 eps) in every bin (what the
reference computes), i.e. a constant -1.277 after normalisation. Audio shorter than one 25 ms frame, or with no
samples at all, is an InputError.
"""

from __future__ import annotations

import itertools
import re
from fractions import Fraction
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import describe_exc
from ..fileio import sniff
from .audio_ranges import (FOLD_ABOVE, fold_channels, input_span, read_folded, read_resampled, resample_bytes, resample_span,
                           resampled_length, warn_if_truncated)
from .budget import DecodeLimitError, current_budget
from .sources import Source

DEFAULTS: dict[str, Any] = {
    "target_rate": 16000,
    "sample_rate": None,
    "num_mel_bins": 128,
    "target_length": 204,
    "clip_duration": 2.0,
    "clips_per_file": 3,
    "mean": -4.268,
    "std": 9.138,
    "reference_inplace_mean": True,
    "trim_silence_db": None,
}
#: The card's ``sample_rate`` is the rate the model expects; ``sample_rate`` as an option is the input's.
CARD_RENAMES = {"sample_rate": "target_rate"}

_FRAME_MS, _SHIFT_MS = 25, 10
#: Files up to this many seconds are decoded whole; longer ones clip by clip (see the module docstring).
WHOLE_READ_MAX_S = 60.0


def shape(p: dict[str, Any]) -> tuple[int, ...]:
    """Shape of one preprocessed file: (clips_per_file, 1, num_mel_bins, target_length)."""
    return (int(p["clips_per_file"]), 1, int(p["num_mel_bins"]), int(p["target_length"]))


def validate(p: dict[str, Any]) -> None:
    """Raise ValueError for option values this loader cannot use."""
    for key in ("target_rate", "num_mel_bins", "target_length", "clips_per_file"):
        if int(p[key]) <= 0:
            raise ValueError(f"{key} must be positive, got {p[key]!r}")
    if p.get("trim_silence_db") is not None and float(p["trim_silence_db"]) <= 0:
        raise ValueError(f"trim_silence_db must be positive (dB below the loudest frame), got {p['trim_silence_db']!r}")
    if float(p["clip_duration"]) <= 0 or float(p["std"]) == 0:
        raise ValueError("clip_duration must be positive and std non-zero")
    if p["sample_rate"] is not None and float(p["sample_rate"]) <= 0:
        raise ValueError(f"sample_rate must be positive, got {p['sample_rate']!r}")


def decode(src: Source, p: dict[str, Any]) -> tuple[torch.Tensor, int]:
    """Decode ``src`` to (channels x samples float32 waveform, sample rate). In-memory items: a 1-D array (one
    channel), channels x samples, or a ``(array, rate)`` tuple; without a rate they are taken to be at the
    ``sample_rate`` option, else at the model's ``target_rate``. Files with more than 8 channels come back
    folded to two (:func:`~bindkit.inputs.audio_ranges.fold_channels`: same features, 2 rows resampled instead
    of C). Decoding charges the active :class:`~bindkit.inputs.budget.DecodeBudget` as samples come out."""
    return _decode(src, p, None)


def _decode(src: Source, p: dict[str, Any], whole_max_s: float | None) -> tuple[torch.Tensor, int]:
    """:func:`decode`; with ``whole_max_s``, a stream (PyAV) found longer than that raises :class:`_LongStream`
    instead of being held whole."""
    if src.obj is not None:
        return _from_array(src.obj, src, p.get("sample_rate") or p["target_rate"])
    target = int(p["target_rate"])
    try:
        return _decode_soundfile(src, target)
    except _SoundfileFailed as first:
        try:
            return _decode_pyav(src, target, whole_max_s)
        except _PyAVFailed as second:
            what = sniff(src.head())
            hint = f"it looks like {what}; " if what else ""
            raise src.fail(
                f"not a decodable audio file ({hint}soundfile: {first}; PyAV: {second}); "
                "expected WAV, FLAC, OGG, MP3 or another audio format"
            ) from None


class _SoundfileFailed(Exception):
    pass


class _PyAVFailed(Exception):
    pass


class _LongStream(Exception):
    """A PyAV stream longer than the whole-read bound: ``frames`` samples at ``rate`` (counted by decoding)."""

    def __init__(self, frames: int, rate: int):
        super().__init__(frames, rate)
        self.frames, self.rate = frames, rate


def _first_line(exc: BaseException) -> str:
    # libsndfile prefixes the file object's repr ("Error opening <_io.BytesIO ...>: "); keep the reason only
    return re.sub(r"^(\w+: )?Error opening .*?: ", "", describe_exc(exc))


def _open_soundfile(src: Source) -> Any:
    import soundfile as sf

    try:
        return sf.SoundFile(src.open())
    except Exception as exc:  # libsndfile raises several types (LibsndfileError, TypeError, RuntimeError)
        raise _SoundfileFailed(_first_line(exc))


def _charge_soundfile(f: Any, src: Source, target: int, frames: int) -> None:
    """Check the decode budget before reading ``frames`` frames of ``f`` (libsndfile reads at most the frames
    its header announces, and allocates exactly that: the header bounds what is decoded)."""
    budget = current_budget()
    rate = int(f.samplerate)
    budget.check_audio(int(f.frames), rate, src.label)
    channels = int(f.channels) if int(f.channels) <= FOLD_ABOVE else 2
    budget.charge(frames * channels * 4 + resample_bytes(rate, target), src.label, "audio")


def _decode_soundfile(src: Source, target: int) -> tuple[torch.Tensor, int]:
    with _open_soundfile(src) as f:
        warn_if_truncated(f, src.label)
        _charge_soundfile(f, src, target, int(f.frames))
        try:
            data = read_folded(f, int(f.frames))
        except Exception as exc:
            raise _SoundfileFailed(_first_line(exc))
        return torch.from_numpy(data), int(f.samplerate)


def _pyav_chunks(src: Source) -> Iterator[tuple[np.ndarray, int]]:
    """The decoded audio of ``src``'s first audio stream, as (folded channels x samples float32, rate) chunks,
    in order. Counts the samples as they come and checks them against the decode budget's duration bound, so a
    container whose header understates the length is stopped by what it really holds."""
    import av

    budget = current_budget()
    try:
        with av.open(src.open(), mode="r") as container:
            if not container.streams.audio:
                raise _PyAVFailed("no audio stream")
            stream = container.streams.audio[0]
            resampler = None
            n = 0
            for frame in itertools.chain(container.decode(stream), [None]):
                if frame is None and resampler is None:
                    raise _PyAVFailed("the audio stream has no frames")
                if resampler is None:
                    rate = frame.sample_rate
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=rate)
                for out in resampler.resample(frame):
                    chunk = fold_channels(out.to_ndarray())
                    n += chunk.shape[1]
                    budget.check_audio(n, rate, src.label)
                    yield chunk, int(rate)
    except (_PyAVFailed, DecodeLimitError):
        raise
    except Exception as exc:  # FFmpeg errors come as many av.error subclasses
        raise _PyAVFailed(_first_line(exc))


def _decode_pyav(src: Source, target: int, whole_max_s: float | None) -> tuple[torch.Tensor, int]:
    """The whole stream as one waveform; with ``whole_max_s``, a stream that turns out longer is dropped as
    soon as that is known (and counted to its end: :class:`_LongStream`)."""
    budget = current_budget()
    chunks: list[np.ndarray] = []
    held = n = rate = 0
    for chunk, rate in _pyav_chunks(src):
        if not n:
            budget.charge(resample_bytes(rate, target), src.label, "audio")
        n += chunk.shape[1]
        if chunks is None:
            continue
        if whole_max_s is not None and n > whole_max_s * rate:
            budget.refund(held)
            chunks, held = None, 0  # type: ignore[assignment]
            continue
        budget.charge(chunk.nbytes, src.label, "audio")
        held += chunk.nbytes
        chunks.append(chunk)
    if chunks is None:
        raise _LongStream(n, rate)
    data = np.concatenate(chunks, axis=1).astype(np.float32) if chunks else np.zeros((1, 0), np.float32)
    return torch.from_numpy(data), int(rate)


def _pyav_clips(src: Source, p: dict[str, Any], frames: int, rate: int) -> torch.Tensor:
    """Features of a long PyAV stream of ``frames`` samples at ``rate`` (counted by a first pass): one more
    decoding pass keeps only the input spans the clips depend on, resampled as :func:`load_clips` does."""
    target = int(p["target_rate"])
    n = resampled_length(frames, rate, target)
    bounds = clip_bounds(n, target, float(p["clip_duration"]), int(p["clips_per_file"]))
    spans = [input_span(a, b, rate, frames, target) for a, b in bounds]
    budget = current_budget()
    segs: list[np.ndarray | None] = [None] * len(spans)
    pos, last = 0, max(stop for _, stop in spans)
    for chunk, _ in _pyav_chunks(src):
        end = pos + chunk.shape[1]
        for i, (start, stop) in enumerate(spans):
            if start < end and pos < stop:
                if segs[i] is None:
                    budget.charge((stop - start) * chunk.shape[0] * 4, src.label, "audio")
                    segs[i] = np.zeros((chunk.shape[0], stop - start), np.float32)
                lo, hi = max(start, pos), min(stop, end)
                segs[i][:, lo - start:hi - start] = chunk[:, lo - pos:hi - pos]
        pos = end
        if pos >= last:
            break
    if any(seg is None for seg in segs):
        raise src.fail("the audio stream ended early on a second decoding pass; the file may be damaged")
    views = [resample_span(torch.from_numpy(seg), span, a, b, rate, frames, target)
             for seg, span, (a, b) in zip(segs, spans, bounds)]
    if any(not torch.isfinite(v).all() for v in views):
        raise src.fail("audio contains NaN or inf samples")
    return _features(views, target, p)


def _from_array(obj: Any, src: Source, default_rate: float) -> tuple[torch.Tensor, int]:
    rate = default_rate
    if isinstance(obj, tuple) and len(obj) == 2:
        obj, rate = obj
    t = obj.detach().cpu() if isinstance(obj, torch.Tensor) else torch.from_numpy(np.asarray(obj))
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2:
        raise src.fail(f"wrong array shape {tuple(t.shape)}; expected samples or channels x samples")
    if not t.dtype.is_floating_point:
        raise src.fail(f"audio arrays must be float in [-1, 1), got dtype {t.dtype}")
    return t.float().contiguous(), int(rate)


def clip_bounds(n_samples: int, rate: int, clip_s: float, clips: int) -> list[tuple[int, int]]:
    """Sample ranges [a, b) of the clips: start_k = k * max(D - clip_s, 0) / clips with D = n / rate, in exact
    fractions of the float duration (as pytorchvideo's ConstantClipsPerVideoSampler computes them)."""
    duration = n_samples / rate
    step = Fraction(max(duration - clip_s, 0)) / clips
    clip = Fraction(clip_s)
    return [(int(step * k * rate), int((step * k + clip) * rate)) for k in range(clips)]


def melspec(wave: torch.Tensor, rate: int, p: dict[str, Any]) -> torch.Tensor:
    """Kaldi fbank of channel 0 of ``wave`` (channels x samples), as mel x ``target_length`` (not normalised)."""
    from torchaudio.compliance import kaldi

    fbank = kaldi.fbank(
        wave[:1],
        htk_compat=True,
        sample_frequency=rate,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=int(p["num_mel_bins"]),
        dither=0.0,
        frame_length=_FRAME_MS,
        frame_shift=_SHIFT_MS,
    ).transpose(0, 1)
    pad = int(p["target_length"]) - fbank.shape[1]
    return F.pad(fbank, (0, pad)) if pad > 0 else fbank[:, : int(p["target_length"])]


def from_waveform(wave: torch.Tensor, rate: int, p: dict[str, Any], src: Source) -> torch.Tensor:
    """A decoded waveform (channels x samples at ``rate``) -> (clips, 1, mel, target_length) tensor."""
    import torchaudio.functional as AF

    if wave.shape[1] == 0:
        raise src.fail("zero-length audio (no samples)")
    if not torch.isfinite(wave).all():
        raise src.fail("audio contains NaN or inf samples")
    target = int(p["target_rate"])
    if rate != target:
        wave = AF.resample(wave, orig_freq=rate, new_freq=target)
    min_samples = target * _FRAME_MS // 1000
    if wave.shape[1] < min_samples:
        raise src.fail(
            f"too short: {wave.shape[1] / target * 1000:.1f} ms; at least one {_FRAME_MS} ms frame is needed"
        )
    if p.get("trim_silence_db") is not None:
        wave = trim_silence(wave, target, float(p["trim_silence_db"]))
    inplace = bool(p["reference_inplace_mean"])
    if inplace:
        wave = wave.clone()  # the quirk mutates the waveform; never the caller's tensor
    bounds = clip_bounds(wave.shape[1], target, float(p["clip_duration"]), int(p["clips_per_file"]))
    return _features([wave[:, a:b] for a, b in bounds], target, p)


def trim_silence(wave: torch.Tensor, rate: int, below_db: float, margin_s: float = 0.05) -> torch.Tensor:
    """``wave`` without its leading and trailing quiet: 10 ms frames of channel 0 more than ``below_db`` under
    the loudest frame are cut from both ends (keeping ``margin_s`` around the sound). A short word in a long
    silent recording then fills the clip instead of a corner of it (bindkit's small cards; not the reference)."""
    hop = max(1, rate // 100)
    x = wave[0]
    n = x.shape[0] // hop
    if n < 3:
        return wave
    energy = x[: n * hop].view(n, hop).pow(2).mean(dim=1)
    db = 10 * torch.log10(energy + 1e-12)
    loud = torch.nonzero(db >= db.max() - below_db).flatten()
    margin = int(margin_s * rate)
    a = max(0, int(loud[0]) * hop - margin)
    b = min(x.shape[0], (int(loud[-1]) + 1) * hop + margin)
    return wave[:, a:b] if b - a >= rate * _FRAME_MS // 1000 else wave


def _features(views: list[torch.Tensor], rate: int, p: dict[str, Any]) -> torch.Tensor:
    """Clip views (in order) -> normalised (clips, 1, mel, target_length); subtracts each clip's mean first."""
    clips = []
    for view in views:
        if p["reference_inplace_mean"]:
            view -= view.mean()  # shifts the shared waveform: later overlapping clips see it (reference)
        else:
            view = view - view.mean()
        clips.append(melspec(view, rate, p))
    out = (torch.stack(clips) - float(p["mean"])) / float(p["std"])
    return out.unsqueeze(1)


def load_clips(src: Source, p: dict[str, Any], whole_max_s: float = WHOLE_READ_MAX_S) -> torch.Tensor | None:
    """Like :func:`load` for a file longer than ``whole_max_s`` seconds, reading only what its clips need;
    None when the file is not that long, not readable or seekable by libsndfile, or its clips overlap while
    ``reference_inplace_mean`` makes them share mean shifts (then :func:`load` decodes it whole)."""
    if src.obj is not None:
        return None
    try:
        f = _open_soundfile(src)
    except _SoundfileFailed:
        return None
    with f:
        rate, frames, target = int(f.samplerate), int(f.frames), int(p["target_rate"])
        if not f.seekable() or rate <= 0 or frames <= whole_max_s * rate:
            return None
        n = resampled_length(frames, rate, target)
        bounds = clip_bounds(n, target, float(p["clip_duration"]), int(p["clips_per_file"]))
        if p["reference_inplace_mean"] and any(b1 > a2 for (_, b1), (a2, _) in zip(bounds, bounds[1:])):
            return None  # overlapping clips share in-place mean shifts (reference quirk): decode whole
        warn_if_truncated(f, src.label)
        spans = [input_span(a, b, rate, frames, target) for a, b in bounds]
        _charge_soundfile(f, src, target, sum(stop - start for start, stop in spans))
        try:
            views = [read_resampled(f, a, b, target) for a, b in bounds]
        except Exception as exc:  # libsndfile errors mid-file
            raise src.fail(f"cannot decode the audio ({_first_line(exc)})") from None
    if any(not torch.isfinite(v).all() for v in views):
        raise src.fail("audio contains NaN or inf samples")
    return _features(views, target, p)


def load(src: Source, p: dict[str, Any]) -> torch.Tensor:
    """One audio item -> float32 tensor (clips_per_file, 1, num_mel_bins, target_length)."""
    clipped = load_clips(src, p)
    if clipped is not None:
        return clipped
    try:
        wave, rate = _decode(src, p, WHOLE_READ_MAX_S)
    except _LongStream as long:  # PyAV: read clip by clip too, in a second decoding pass
        return _pyav_clips(src, p, long.frames, long.rate)
    return from_waveform(wave, rate, p, src)
