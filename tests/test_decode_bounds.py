"""Decode bounds from the bytes, not the header (issue 19, item 1): audio that lies about its length is
counted while decoding (and never held whole), huge video frames are scaled one at a time, many-channel audio
is folded before resampling, and a DecodeBudget stops a decode at its bound. Generated media only.

Memory is measured as the peak RSS growth of a fresh Python process around one load (its libraries imported
and warmed up first), with bounds far from both today's and the old figures."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from bindkit.inputs import audio
from bindkit.inputs.budget import DecodeBudget, DecodeLimitError, use_budget
from bindkit.inputs.sources import to_source
from hostile_media import huge_frame_video, lying_audio, lying_video, many_channel_wav

REPO = Path(__file__).resolve().parent.parent
MiB = 2**20


def peak_rss_growth(kind: str, path: Path, warm: Path) -> int:
    """Bytes the peak RSS of a fresh process grows by while ``kind`` loads ``path`` (after loading ``warm``)."""
    code = textwrap.dedent(f"""
        import resource, warnings
        warnings.simplefilter("ignore")
        from bindkit.inputs.batch import load_item, resolve_params
        p = resolve_params({kind!r}, "imagebind_tiny")
        load_item({kind!r}, open({str(warm)!r}, "rb").read(), 0, p)
        data = open({str(path)!r}, "rb").read()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        load_item({kind!r}, data, 0, p)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return int(r.stdout.split()[-1])


def test_header_lying_audio_is_counted_not_held_whole():
    # a header that says 1 s over 300 s of audio: decoded (PyAV) in pieces, never the whole waveform at once
    data = lying_audio(300.0, claimed_seconds=1.0, rate=8000)
    src = to_source(data, 0, "audio")
    tracemalloc.start()
    try:
        out = audio.load(src, dict(audio.DEFAULTS))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.shape == (3, 1, 128, 204)
    assert peak < 6 * MiB, peak  # the whole 300 s is 9.6 MB as float32 (19 MB with its concatenation)


def test_header_lying_audio_stops_at_the_budget_seconds():
    data = lying_audio(120.0, claimed_seconds=1.0, rate=8000)
    with use_budget(DecodeBudget(max_audio_seconds=10.0)), pytest.raises(DecodeLimitError) as err:
        audio.load(to_source(data, 0, "audio"), dict(audio.DEFAULTS))
    assert err.value.limit == "audio_seconds"
    assert 10.0 < err.value.value < 11.0  # decoding stopped right after the bound, not at the real 120 s
    assert "counted while decoding" in err.value.reason


def test_a_long_pyav_stream_is_read_clip_by_clip_with_the_same_values():
    # over WHOLE_READ_MAX_S: the first pass counts, the second keeps only the clips' input (same features)
    data = lying_audio(70.0, claimed_seconds=70.0, rate=22050, codec="pcm_f32le")
    src = to_source(data, 0, "audio")
    p = dict(audio.DEFAULTS)
    wave, rate = audio.decode(src, p)  # the whole waveform, as the loader used to take it
    assert torch.equal(audio.load(src, p), audio.from_waveform(wave, rate, p, src))


def test_huge_video_frames_are_scaled_one_at_a_time(tmp_path):
    big = tmp_path / "big.mp4"
    big.write_bytes(huge_frame_video(frames=8, size=(2000, 2000)))
    warm = tmp_path / "warm.mp4"
    warm.write_bytes(huge_frame_video(frames=2, size=(64, 64)))
    grown = peak_rss_growth("video", big, warm)
    # 10 kept frames of 2000 x 2000 as float32 are 480 MB (+ 120 MB as uint8); one at a time, ~64 MB
    assert grown < 250 * MiB, grown / MiB


def test_many_channels_are_folded_before_resampling(tmp_path):
    wav = tmp_path / "ch128.wav"
    wav.write_bytes(many_channel_wav(128, seconds=5.0, rate=8000))
    warm = tmp_path / "warm.wav"
    warm.write_bytes(many_channel_wav(1, seconds=1.0, rate=8000))
    grown = peak_rss_growth("audio", wav, warm)
    assert grown < 100 * MiB, grown / MiB  # 128 channels resampled 8 -> 16 kHz took ~400 MB


@pytest.mark.parametrize("channels", [3, 12])
def test_folded_channels_give_the_same_features(channels):
    data = many_channel_wav(channels, seconds=3.0, rate=22050, seed=channels)
    x, rate = sf.read(__import__("io").BytesIO(data), dtype="float32", always_2d=True)
    src = to_source(data, 0, "audio")
    for inplace in (True, False):
        p = dict(audio.DEFAULTS, reference_inplace_mean=inplace)
        whole = audio.from_waveform(torch.from_numpy(np.ascontiguousarray(x.T)), rate, p, src)  # every channel
        got = audio.load(src, p)
        if channels <= 8:
            assert torch.equal(got, whole)  # up to 7.1 surround: untouched, bit-identical
        else:
            assert torch.allclose(got, whole, rtol=0, atol=1e-3), (got - whole).abs().max()


def test_budget_counts_decoded_bytes_across_items():
    budget = DecodeBudget(max_bytes=3 * MiB)
    data = many_channel_wav(2, seconds=60.0, rate=8000)  # 3.84 MB as float32
    with use_budget(budget), pytest.raises(DecodeLimitError) as err:
        audio.load(to_source(data, 0, "audio"), dict(audio.DEFAULTS))
    assert err.value.limit == "bytes" and err.value.allowed == 3 * MiB
    with use_budget(DecodeBudget(max_bytes=8 * MiB)) as ok:
        audio.load(to_source(data, 0, "audio"), dict(audio.DEFAULTS))
    assert 3 * MiB < ok.used < 8 * MiB


def test_a_prime_sample_rate_is_charged_its_resampling_kernel():
    # resampling 7919 Hz -> 16 kHz builds a 16000 x 7933 kernel (2 GB in float64 temporaries)
    data = many_channel_wav(1, seconds=0.5, rate=7919)
    with use_budget(DecodeBudget(max_bytes=256 * MiB)), pytest.raises(DecodeLimitError):
        audio.load(to_source(data, 0, "audio"), dict(audio.DEFAULTS))


def test_video_frames_over_the_budget_pixels_are_refused_while_decoding():
    from bindkit.inputs import video

    data = huge_frame_video(frames=2, size=(640, 480))
    with use_budget(DecodeBudget(max_pixels=100_000)), pytest.raises(DecodeLimitError) as err:
        video.load(to_source(data, 0, "video"), dict(video.DEFAULTS))
    assert err.value.limit == "pixels" and err.value.value == 640 * 480


def _video(data: bytes) -> tuple[torch.Tensor, DecodeBudget]:
    """The video loader's output for ``data`` (tiny-card sizes) and the budget it charged (bytes of the frames
    it converted)."""
    from bindkit.inputs import video

    budget = DecodeBudget()
    with use_budget(budget):
        out = video.load(to_source(data, 0, "video"), dict(video.DEFAULTS, mean=[0, 0, 0], std=[1, 1, 1]))
    return out, budget


@pytest.mark.parametrize("fmt", ["matroska", "mp4"])
def test_video_clips_are_placed_from_the_frames_when_the_header_claims_too_little(fmt):
    # 20 s of frames whose header says 1 s: the clips spread over the 20 s, as for the honest file (the
    # header alone put all five on the first 2 s), and only the picked frames are converted
    honest, _ = _video(lying_video(200, None, fmt=fmt))
    lying, budget = _video(lying_video(200, 1.0, fmt=fmt))
    assert torch.equal(lying, honest)
    assert not torch.equal(lying[0], lying[-1])  # first and last clip: different frames
    assert budget.used <= 10 * 64 * 48 * 3  # 5 clips x 2 frames, each charged once as it is converted


def test_video_whose_header_claims_ten_hours_places_clips_on_its_two_seconds():
    # 2 s of frames whose Matroska header says 10 hours: the same clips as the honest file (the header put
    # four of the five clips past the end, on the last frame), nothing sought or held for the 10 hours
    honest, _ = _video(lying_video(20, None))
    lying, budget = _video(lying_video(20, 36000.0))
    assert torch.equal(lying, honest)
    assert budget.used <= 10 * 64 * 48 * 3


def test_video_header_within_the_slack_is_kept_as_the_reference_does():
    # honest headers (and ones off by less than the slack) keep placing the clips: bit-identical to before
    from bindkit.inputs import video

    src = to_source(lying_video(40, 4.5), 0, "video")
    times, _, duration = video._stream_info(src)
    assert duration == 4.5 and len(times) == 40


def test_a_video_of_many_tiny_frames_is_refused_while_its_timestamps_are_read():
    # 8192 frames of 16 x 16 (a few bytes each once compressed): the timestamp table the clips are placed with
    # is charged to the budget as the file is read, so a small budget refuses it before any frame is converted
    from bindkit.inputs import video

    data = lying_video(8192, None, fps=100, size=(16, 16))
    budget = DecodeBudget(max_bytes=1_000_000)
    with use_budget(budget), pytest.raises(DecodeLimitError) as err:
        video.load(to_source(data, 0, "video"), dict(video.DEFAULTS))
    assert err.value.limit == "bytes" and err.value.modality == "video"
    # stopped at the first block of timestamps past the bound: half the file unread, no frame converted
    assert budget.used == video._TABLE_BLOCK * video.TIMESTAMP_BYTES
    times, _, duration = video._stream_info(to_source(data, 0, "video"))  # no budget: read as before
    assert len(times) == 8192 and duration == pytest.approx(81.92)
