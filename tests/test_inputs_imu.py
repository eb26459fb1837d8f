"""IMU loader: channels by name (any column order, aliases), transpose not reshape, fitting rules, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bindkit.errors import InputError
from bindkit.inputs import preprocess
from bindkit.inputs.imu import canonical_channel

ORDER = ["accl_x", "accl_y", "accl_z", "gyro_x", "gyro_y", "gyro_z"]  # the card order, in the samples' names


def read_named(path) -> dict[str, np.ndarray]:
    data = np.genfromtxt(path, delimiter=",", names=True)
    return {name: np.asarray(data[name], dtype=np.float64) for name in data.dtype.names}


def write_csv(path, columns: dict[str, np.ndarray], order: list[str]) -> None:
    rows = np.stack([columns[c] for c in order], axis=1)
    np.savetxt(path, rows, delimiter=",", header=",".join(order), comments="", fmt="%.9g")


def test_every_sample_loads(samples_dir):
    got = preprocess("imu", sorted(samples_dir.glob("imu/*.csv")))
    assert got.shape == (6, 6, 2000) and got.dtype == torch.float32 and torch.isfinite(got).all()


def test_channels_by_name_resampled_over_the_whole_recording(samples_dir):
    path = samples_dir / "imu" / "imu3_4k.csv"
    cols = read_named(path)
    t = len(cols["gyro_x"])
    grid = np.linspace(0, t - 1, 2000)
    want = np.stack([np.interp(grid, np.arange(t), cols[c]) for c in ORDER])
    got = preprocess("imu", [path])[0].numpy()
    assert np.abs(got - want).max() < 1e-5


def test_shuffled_columns_and_aliases_give_the_same_tensor(samples_dir, tmp_path):
    path = samples_dir / "imu" / "imu2_2k.csv"
    cols = read_named(path)
    shuffled = tmp_path / "shuffled.csv"
    order = list(np.random.default_rng(0).permutation(list(cols)))
    assert order != list(cols)  # a real shuffle, so a loader reading by position would fail
    write_csv(shuffled, cols, order)
    aliases = {"accl_x": "ax", "accl_y": "AccY", "accl_z": "accelerometer_z", "gyro_x": "gx",
               "gyro_y": "Gyr_Y", "gyro_z": "gyro_z (rad/s)"}
    renamed = tmp_path / "renamed.csv"
    write_csv(renamed, {aliases[k]: v for k, v in cols.items()}, [aliases[c] for c in order])
    got = preprocess("imu", [path, shuffled, renamed])
    assert torch.allclose(got[0], got[1], atol=1e-6) and torch.allclose(got[0], got[2], atol=1e-6)


def test_canonical_channel_names():
    assert canonical_channel("ACCEL_X") == "accel_x"
    assert canonical_channel("acc_y [m/s^2]") == "accel_y"
    assert canonical_channel("GyroZ") == "gyro_z"
    assert canonical_channel("timestamp") is None and canonical_channel("mag_x") is None


def test_crop_pad_rule(tmp_path):
    rng = np.random.default_rng(0)
    for t in (6000, 1500):
        cols = {c: rng.standard_normal(t) for c in ORDER}
        path = tmp_path / f"r{t}.csv"
        write_csv(path, cols, ORDER)
        got = preprocess("imu", [path], fit="crop_pad")[0].numpy()
        full = np.stack([cols[c] for c in ORDER])
        if t > 2000:
            a = (t - 2000) // 2
            assert np.abs(got - full[:, a : a + 2000]).max() < 1e-6  # centre crop
        else:
            assert np.abs(got[:, :t] - full).max() < 1e-6 and not got[:, t:].any()  # zero-padded at the end


def test_sample_rate_windows_5_seconds_at_400_hz():
    t = 1500  # 7.5 s at 200 Hz -> 3000 steps at 400 Hz -> centre 2000
    ramp = np.tile(np.arange(t, dtype=np.float64), (6, 1))
    got = preprocess("imu", [ramp], sample_rate=200)[0]
    step = (t - 1) / (3000 - 1)
    assert got[0, 0].item() == pytest.approx(500 * step, rel=1e-5)
    assert got[0, 1].item() - got[0, 0].item() == pytest.approx(step, rel=1e-4)


def test_npy_and_arrays_either_orientation(samples_dir, tmp_path):
    path = samples_dir / "imu" / "imu1_2k.csv"
    cols = read_named(path)
    data = np.stack([cols[c] for c in ORDER])  # 6 x T in card order
    npy = tmp_path / "rec.npy"
    np.save(npy, data.T)
    got = preprocess("imu", [path, npy, data, torch.from_numpy(data.T.copy())])
    for row in got[1:]:
        assert torch.allclose(row, got[0], atol=1e-6)


def test_bad_imu_raises_input_error(tmp_path):
    header = ",".join(ORDER)
    nan = tmp_path / "nan.csv"
    nan.write_text(header + "\n1,2,3,4,5,nan\n1,2,3,4,5,6\n")
    missing = tmp_path / "missing.csv"
    missing.write_text("accl_x,accl_y,accl_z,gyro_x,gyro_y\n1,2,3,4,5\n")
    headless = tmp_path / "headless.csv"
    headless.write_text("1,2,3,4,5,6\n1,2,3,4,5,6\n")
    text = tmp_path / "text.csv"
    text.write_text(header + "\n1,2,3,4,5,six\n")
    cases = [(nan, "NaN"), (missing, "missing channel"), (headless, "no header"), (text, "non-numeric")]
    for path, words in cases:
        with pytest.raises(InputError, match=words) as info:
            preprocess("imu", [path])
        assert info.value.item == str(path) and info.value.modality == "imu"
    assert preprocess("imu", [headless], columns=ORDER).shape == (1, 6, 2000)
    with pytest.raises(InputError, match="wrong array shape"):
        preprocess("imu", [np.zeros((5, 100))])
    with pytest.raises(InputError, match="NaN"):
        preprocess("imu", [np.full((6, 100), np.inf)])
    with pytest.raises(ValueError, match="fit"):
        preprocess("imu", [headless], fit="stretch")
