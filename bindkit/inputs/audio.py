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

All-silent audio is a valid signal and is embedded: its fbank is log(float32 eps) in every bin (what the
reference computes), i.e. a constant -1.277 after normalisation. Audio shorter than one 25 ms frame, or with no
samples at all, is an InputError.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import describe_exc
from ..fileio import sniff
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
}
#: The card's ``sample_rate`` is the rate the model expects; ``sample_rate`` as an option is the input's.
CARD_RENAMES = {"sample_rate": "target_rate"}

_FRAME_MS, _SHIFT_MS = 25, 10


def shape(p: dict[str, Any]) -> tuple[int, ...]:
    """Shape of one preprocessed file: (clips_per_file, 1, num_mel_bins, target_length)."""
    return (int(p["clips_per_file"]), 1, int(p["num_mel_bins"]), int(p["target_length"]))


def validate(p: dict[str, Any]) -> None:
    """Raise ValueError for option values this loader cannot use."""
    for key in ("target_rate", "num_mel_bins", "target_length", "clips_per_file"):
        if int(p[key]) <= 0:
            raise ValueError(f"{key} must be positive, got {p[key]!r}")
    if float(p["clip_duration"]) <= 0 or float(p["std"]) == 0:
        raise ValueError("clip_duration must be positive and std non-zero")
    if p["sample_rate"] is not None and float(p["sample_rate"]) <= 0:
        raise ValueError(f"sample_rate must be positive, got {p['sample_rate']!r}")


def decode(src: Source, p: dict[str, Any]) -> tuple[torch.Tensor, int]:
    """Decode ``src`` to (channels x samples float32 waveform, sample rate). In-memory items: a 1-D array (one
    channel), channels x samples, or a ``(array, rate)`` tuple; without a rate they are taken to be at the
    ``sample_rate`` option, else at the model's ``target_rate``."""
    if src.obj is not None:
        return _from_array(src.obj, src, p.get("sample_rate") or p["target_rate"])
    try:
        return _decode_soundfile(src)
    except _SoundfileFailed as first:
        try:
            return _decode_pyav(src)
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


def _first_line(exc: BaseException) -> str:
    # libsndfile prefixes the file object's repr ("Error opening <_io.BytesIO ...>: "); keep the reason only
    return re.sub(r"^(\w+: )?Error opening .*?: ", "", describe_exc(exc))


def _decode_soundfile(src: Source) -> tuple[torch.Tensor, int]:
    import soundfile as sf

    try:
        data, rate = sf.read(src.open(), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises several types (LibsndfileError, TypeError, RuntimeError)
        raise _SoundfileFailed(_first_line(exc))
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(rate)


def _decode_pyav(src: Source) -> tuple[torch.Tensor, int]:
    import av

    try:
        with av.open(src.open(), mode="r") as container:
            if not container.streams.audio:
                raise _PyAVFailed("no audio stream")
            stream = container.streams.audio[0]
            resampler = None
            chunks = []
            for frame in container.decode(stream):
                if resampler is None:
                    rate = frame.sample_rate
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=rate)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            if resampler is None:
                raise _PyAVFailed("the audio stream has no frames")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
    except _PyAVFailed:
        raise
    except Exception as exc:  # FFmpeg errors come as many av.error subclasses
        raise _PyAVFailed(_first_line(exc))
    data = np.concatenate(chunks, axis=1).astype(np.float32) if chunks else np.zeros((1, 0), np.float32)
    return torch.from_numpy(data), int(rate)


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
    inplace = bool(p["reference_inplace_mean"])
    if inplace:
        wave = wave.clone()  # the quirk mutates the waveform; never the caller's tensor
    clips = []
    for a, b in clip_bounds(wave.shape[1], target, float(p["clip_duration"]), int(p["clips_per_file"])):
        view = wave[:, a:b]
        if inplace:
            view -= view.mean()  # shifts the shared waveform: later overlapping clips see it (reference)
        else:
            view = view - view.mean()
        clips.append(melspec(view, target, p))
    out = (torch.stack(clips) - float(p["mean"])) / float(p["std"])
    return out.unsqueeze(1)


def load(src: Source, p: dict[str, Any]) -> torch.Tensor:
    """One audio item -> float32 tensor (clips_per_file, 1, num_mel_bins, target_length)."""
    wave, rate = decode(src, p)
    return from_waveform(wave, rate, p, src)
