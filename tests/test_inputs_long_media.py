"""Long media queries read only what the model uses (issue 7, item 6): audio files longer than a minute are
read clip by clip with the same values as a whole read, IMU CSVs are parsed as a stream with a row limit,
and a truncated WAV is embedded with a warning naming it. Generated files only (no ../shared needed)."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from bindkit.errors import InputError
from bindkit.inputs import audio, imu, preprocess
from bindkit.inputs.sources import to_source


def _wav(path, seconds: float, rate: int, channels: int, subtype: str = "PCM_16", seed: int = 0):
    n = int(seconds * rate)
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * 440 * t * (1 + t / 20))[:, None] + 0.05 * rng.standard_normal((n, channels))
    sf.write(path, x.astype(np.float32), rate, subtype=subtype)
    return path


def _whole(path, p):
    src = to_source(str(path), 0, "audio")
    wave, rate = audio.decode(src, p)
    return audio.from_waveform(wave, rate, p, src)


@pytest.mark.parametrize("rate, channels", [(8000, 1), (11025, 2), (16000, 1), (16000, 2), (44100, 1),
                                            (48000, 2), (12345, 1)])
def test_clip_by_clip_reading_equals_the_whole_read(tmp_path, rate, channels):
    path = _wav(tmp_path / "a.wav", 10.0, rate, channels, subtype="PCM_16" if channels == 1 else "FLOAT")
    p = dict(audio.DEFAULTS)
    clipped = audio.load_clips(to_source(str(path), 0, "audio"), p, whole_max_s=0.0)
    assert clipped is not None  # 10 s: the three 2 s clips do not overlap, so the range reader is used
    whole = _whole(path, p)
    assert clipped.shape == whole.shape
    # bit-identical here; 1e-6 is the contract (features are logs of band energies, so the resampled
    # samples themselves must agree to float rounding for this to hold)
    assert torch.allclose(clipped, whole, rtol=0, atol=1e-6), (clipped - whole).abs().max()


def test_overlapping_clips_are_read_whole(tmp_path):
    path = _wav(tmp_path / "short.wav", 5.0, 22050, 1)
    src = to_source(str(path), 0, "audio")
    # the in-place mean quirk makes overlapping clips share shifts: only a whole read reproduces it
    assert audio.load_clips(src, dict(audio.DEFAULTS), whole_max_s=0.0) is None
    p = dict(audio.DEFAULTS, reference_inplace_mean=False)
    assert torch.allclose(audio.load_clips(src, p, whole_max_s=0.0), _whole(path, p), rtol=0, atol=1e-6)


def test_a_long_file_is_not_decoded_whole(tmp_path):
    path = _wav(tmp_path / "long.wav", 600.0, 8000, 1)  # 10 minutes: 19 MB as float32, 9.6 MB on disk
    src = to_source(str(path), 0, "audio")
    tracemalloc.start()
    try:
        got = audio.load(src, dict(audio.DEFAULTS))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got.shape == audio.shape(audio.DEFAULTS)
    assert peak < 4 * 2**20  # three clips' worth of input, not the 19 MB waveform


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


@pytest.mark.parametrize("seconds", [4.0, 90.0])  # whole read, and clip-by-clip read
def test_a_truncated_wav_warns_naming_the_file(tmp_path, seconds):
    path = _truncate(_wav(tmp_path / "cut.wav", seconds, 16000, 1))
    with pytest.warns(RuntimeWarning, match=r"cut\.wav: truncated audio file") as record:
        out = preprocess("audio", [path], num_workers=1)
    assert out.shape[0] == 1 and torch.isfinite(out).all()
    assert str(path) in str(record[0].message)
    intact = _wav(tmp_path / "intact.wav", seconds, 16000, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        preprocess("audio", [intact], num_workers=1)


# ---- IMU ----------------------------------------------------------------------------------------------------
HEADER = "t,gyro_x,gyro_y,gyro_z,accl_x,accl_y,accl_z"


def _imu_csv(path, rows: int, seed: int = 0):
    data = np.random.default_rng(seed).normal(size=(rows, 7))
    data[:, 0] = np.arange(rows)
    np.savetxt(path, data, delimiter=",", header=HEADER, comments="", fmt="%.9f")
    return path


def test_imu_csv_over_the_row_limit_is_refused_naming_the_option(tmp_path):
    path = _imu_csv(tmp_path / "long.csv", 500)
    with pytest.raises(InputError, match=r"more than 499 data rows.*max_rows"):
        preprocess("imu", [path], max_rows=499)
    assert preprocess("imu", [path], max_rows=500).shape == (1, 6, 2000)
    with pytest.raises(ValueError, match="max_rows"):
        preprocess("imu", [path], max_rows=0)


def test_imu_csv_is_parsed_as_a_stream(tmp_path):
    path = _imu_csv(tmp_path / "big.csv", 100_000)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        got = imu.load(to_source(str(path), 0, "imu"), dict(imu.DEFAULTS))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got.shape == (6, 2000)
    assert peak < 2 * size  # 8 bytes a value; Python lists of floats took ~7x the file's size


def test_imu_stream_parsing_keeps_the_csv_rules(tmp_path):
    rows = np.random.default_rng(1).normal(size=(300, 6))
    lines = [",".join(repr(float(v)) for v in r) for r in rows]
    header = "gyro_x,gyro_y,gyro_z,accl_x,accl_y,accl_z"
    variants = {
        "crlf.csv": "\r\n".join([header] + lines) + "\r\n",
        "bom.csv": "\ufeff" + "\n".join([header] + lines),
        "comments.csv": "# exported\n\n" + header + "\n" + "\n\n".join(lines) + "\n# end\n",
        "semicolons.csv": "\n".join([header.replace(",", ";")] + [ln.replace(",", ";") for ln in lines]),
    }
    want = preprocess("imu", [rows], columns=header.split(","))
    for name, text in variants.items():
        (tmp_path / name).write_text(text, encoding="utf-8", newline="")
        assert torch.equal(preprocess("imu", [tmp_path / name]), want), name
    bad = tmp_path / "latin1.csv"
    bad.write_bytes((header + "\n" + lines[0] + "\n# caf\xe9\n").encode("latin-1"))
    with pytest.raises(InputError, match="invalid UTF-8"):
        preprocess("imu", [bad])
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(header + "\n" + lines[0] + "\n1,2,3\n")
    with pytest.raises(InputError, match="rows have 3 fields but the header names 6 columns"):
        preprocess("imu", [ragged])
