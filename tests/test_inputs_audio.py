"""Audio loader: reference parity (quirk included), formats, rates/channels, lengths, clear errors."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from bindkit.errors import InputError
from bindkit.inputs import preprocess
from bindkit.inputs.audio import clip_bounds

RATE = 44100


def signal(seconds: float, rate: int = RATE, channels: int = 2, seed: int = 0) -> np.ndarray:
    """A chirp plus noise, samples x channels float32 (different per channel)."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    cols = [0.3 * np.sin(2 * np.pi * (300 + 100 * c) * t * (1 + t)) + 0.05 * rng.standard_normal(len(t))
            for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def encode(x: np.ndarray, rate: int = RATE, fmt: str = "WAV", subtype: str = "FLOAT") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()


def test_matches_reference_preprocessing(samples_dir, fixture_dir):
    want = torch.load(fixture_dir / "inputs.pt", weights_only=True)["audio"]
    got = preprocess("audio", sorted(samples_dir.glob("audio/*.wav")))
    assert got.shape == want.shape == (3, 3, 1, 128, 204)
    assert (got - want).abs().max().item() < 1e-4


def test_clean_variant_differs_only_where_clips_overlap(samples_dir, fixture_dir):
    """dog.wav (2.6 s) has overlapping clips: the in-place quirk changes clips 2 and 3, never clip 1."""
    dog = samples_dir / "audio" / "dog.wav"
    quirk = preprocess("audio", [dog])[0]
    clean = preprocess("audio", [dog], reference_inplace_mean=False)[0]
    assert torch.equal(quirk[0], clean[0])
    assert (quirk[1:] - clean[1:]).abs().max().item() > 1e-3


def test_clip_bounds_follow_the_sampler():
    n = int(5.0 * 16000)
    bounds = clip_bounds(n, 16000, 2.0, 3)
    assert [b - a for a, b in bounds] == [32000] * 3
    assert bounds[0][0] == 0 and bounds[1][0] == 16000 and bounds[2][0] == 32000  # k * (5 - 2) / 3 s
    assert bounds[2][1] < n  # divided by 3 clips, the last clip stops short of the end
    short = clip_bounds(8000, 16000, 2.0, 3)  # 0.5 s: every clip is the whole file
    assert short == [(0, 32000)] * 3


@pytest.mark.parametrize(
    "fmt,subtype,min_corr",
    [("FLAC", "PCM_24", 0.9999), ("OGG", "VORBIS", 0.98), ("MP3", "MPEG_LAYER_III", 0.98)],
)
def test_compressed_formats_decode_close_to_wav(fmt, subtype, min_corr):
    x = signal(3.0)
    wav, other = preprocess("audio", [encode(x), encode(x, fmt=fmt, subtype=subtype)])
    assert other.shape == (3, 1, 128, 204)
    assert corr(wav, other) > min_corr


def test_pyav_fallback_reads_what_libsndfile_cannot(tmp_path):
    av = pytest.importorskip("av")
    x = signal(2.5)
    path = tmp_path / "clip.m4a"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=RATE)
        stream.layout = "stereo"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x.T), format="fltp", layout="stereo")
        frame.sample_rate = RATE
        for packet in list(stream.encode(frame)) + list(stream.encode(None)):
            out.mux(packet)
    with pytest.raises(Exception):
        sf.read(str(path))
    got, wav = preprocess("audio", [path, encode(x)])
    assert corr(got, wav) > 0.9  # AAC adds 1024 priming samples: a 23 ms shift


def test_any_rate_and_channel_count():
    items = [encode(signal(3.0, r, c), r) for r, c in ((8000, 1), (48000, 3), (16000, 6))]
    got = preprocess("audio", items)
    assert got.shape == (3, 3, 1, 128, 204) and torch.isfinite(got).all()


def test_only_channel_0_is_embedded():
    x = signal(3.0)
    swapped = x[:, ::-1].copy()
    other1 = x.copy()
    other1[:, 1] = signal(3.0, seed=7)[:, 1]  # channel 1 only enters through the clip mean
    a, b, c = preprocess("audio", [encode(x), encode(swapped), encode(other1)])
    assert (a - b).abs().max().item() > 0.1
    assert (a - c).abs().max().item() < 1e-2  # a slightly different DC shift, nothing else


def test_short_and_long_files():
    got = preprocess("audio", [encode(signal(0.5)), encode(signal(12.0)), encode(signal(0.03))])
    assert got.shape == (3, 3, 1, 128, 204)
    # a file shorter than a clip gives three identical clips (same samples; the mean is already 0 for clips 2-3)
    assert (got[0, 0] - got[0, 1]).abs().max().item() < 1e-3


def test_in_memory_arrays_with_their_rate_match_the_file():
    x = signal(3.0)
    got = preprocess("audio", [encode(x), (x.T.copy(), RATE), (torch.from_numpy(x.T.copy()), RATE)])
    assert torch.equal(got[0], got[1]) and torch.equal(got[0], got[2])
    assert torch.equal(preprocess("audio", (x.T.copy(), RATE))[0], got[0])  # one pair is one item
    at16k = preprocess("audio", [x[:, 0][: 16000 * 3]], sample_rate=16000)
    assert at16k.shape == (1, 3, 1, 128, 204)


def test_silent_audio_is_a_valid_constant_signal():
    got = preprocess("audio", [encode(np.zeros((RATE * 3, 2), np.float32))])
    eps = torch.finfo(torch.float32).eps
    frames = 1 + (32000 - 400) // 160  # 2 s clips, 25 ms windows every 10 ms; the rest is zero padding
    real, pad = got[..., :frames], got[..., frames:]
    assert torch.allclose(real, torch.full_like(real, (math.log(eps) + 4.268) / 9.138), atol=1e-4)
    assert torch.allclose(pad, torch.full_like(pad, 4.268 / 9.138), atol=1e-6)


def test_bad_audio_raises_input_error(tmp_path, samples_dir):
    jpg = samples_dir / "image" / "dog.jpg"
    renamed = tmp_path / "photo.wav"
    renamed.write_bytes(jpg.read_bytes())
    zero = tmp_path / "zero.wav"
    zero.write_bytes(encode(np.zeros((0, 1), np.float32)))
    cases = [
        (renamed, str(renamed), "not a decodable audio file .it looks like a JPEG image"),
        (jpg.read_bytes(), "#0", "not a decodable audio file"),
        (jpg, str(jpg), "unknown extension"),
        (zero, str(zero), "zero-length"),
        (encode(np.zeros((100, 1), np.float32)), "#0", "too short"),
        (np.full(20000, np.nan, np.float32), "#0", "NaN"),
        (np.zeros((2, 3, 4), np.float32), "#0", "wrong array shape"),
    ]
    for item, label, words in cases:
        with pytest.raises(InputError, match=words) as info:
            preprocess("audio", [item])
        assert info.value.item == label and info.value.modality == "audio"
