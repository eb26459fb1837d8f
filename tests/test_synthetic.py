"""The synthetic world: determinism, held-out combinations, files the loaders read, signals that carry their
attributes, and the ``bindkit datasets synthetic`` command."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bindkit.cli import main
from bindkit.datasets import synthetic as S
from bindkit.datasets.synthetic.captions import SHAPE_WORDS
from bindkit.datasets.synthetic.raster import shape_mask
from bindkit.datasets.synthetic.writer import DatasetError

SMALL = {"train": 6, "test": 4, "compositional": 3}


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_sample_is_a_pure_function_of_seed_split_and_index():
    a, b = S.sample(3, seed=1), S.sample(3, seed=1)
    for key in ("image", "audio", "depth", "thermal", "thermal_c", "imu"):
        assert np.array_equal(a[key], b[key]), key
    assert a["text"] == b["text"] and a["labels"] == b["labels"]
    other = S.sample(3, seed=2)
    assert not np.array_equal(a["image"], other["image"])
    assert not np.array_equal(a["image"], S.sample(3, seed=1, split="test")["image"])


def test_sample_shapes_types_and_labels():
    s = S.sample(0, seed=0, size=48, audio_seconds=1.0, imu_seconds=2.0, imu_rate=50)
    assert s["image"].shape == (48, 48, 3) and s["image"].dtype == np.uint8
    assert s["depth"].shape == (48, 48) and s["depth"].dtype == np.float32 and s["depth"].min() > 0
    assert s["thermal"].shape == (48, 48) and s["thermal"].dtype == np.uint8
    assert s["audio"].shape == (16000,) and np.abs(s["audio"]).max() <= 1.0
    assert s["imu"].shape == (100, 6)
    assert set(s["labels"]) == set(S.ATTRIBUTES)
    for attr, name in s["labels"].items():
        assert name in S.classes(attr)
    with pytest.raises(ValueError, match="unknown parameter"):
        S.sample(0, sizee=32)
    with pytest.raises(ValueError, match="unknown split"):
        S.sample(0, split="training")


def test_held_out_combinations_only_in_the_compositional_split():
    for split in ("train", "test"):
        combos = {(sc.shape, sc.colour) for sc in (S.scene(i, 0, split) for i in range(400))}
        assert not combos & S.HELD_OUT
        assert {sc.shape for sc in (S.scene(i, 0, split) for i in range(400))} == set(S.classes("shape"))
    comp = {(sc.shape, sc.colour) for sc in (S.scene(i, 0, "compositional") for i in range(200))}
    assert comp == set(S.HELD_OUT)


def test_captions_name_the_shape_and_vary():
    texts = [S.sample(i, 0, size=16, audio_seconds=0.1, imu_seconds=0.5)["text"] for i in range(60)]
    assert len(set(texts)) == len(texts)
    for i, text in enumerate(texts):
        shape = S.scene(i, 0).shape
        assert any(w in text for w in SHAPE_WORDS[shape]), (shape, text)


def test_thermal_depth_and_imu_carry_their_attributes():
    """Physics with wide margins: hot objects are bright and cold ones dark on the fixed thermal scale,
    the object is nearer than the room behind it, spinning turns the gyroscope, bouncing has free fall."""
    seen = {"hot": 0, "cold": 0, "spinning": 0, "still": 0, "bouncing": 0}
    for i in range(40):
        s = S.sample(i, 0)
        sc = s["scene"]
        m = shape_mask(sc.shape, sc.cx, sc.cy, sc.radius, sc.angle, 64) > 0.9
        inside = s["thermal_c"][m].mean()
        if sc.temperature == "hot":
            assert inside > sc.ambient_c + 10 and s["thermal"][m].mean() > s["thermal"][~m].mean() + 15
            seen["hot"] += 1
        elif sc.temperature == "cold":
            assert inside < sc.ambient_c - 5 and s["thermal"][m].mean() < s["thermal"][~m].mean() - 5
            seen["cold"] += 1
        if not sc.distractors and sc.material != "glass":
            row, col = int(sc.cy * 64), int(sc.cx * 64)
            above = max(0, int((sc.cy - 1.3 * sc.radius) * 64))
            assert s["depth"][row, col] < s["depth"][above, col]
        gyro = np.linalg.norm(s["imu"][:, 3:], axis=1).mean()
        free_fall = (np.linalg.norm(s["imu"][:, :3], axis=1) < 3).mean()
        if sc.motion == "spinning":
            assert gyro > 3
            seen["spinning"] += 1
        elif sc.motion == "still":
            assert gyro < 0.2 and free_fall == 0
            seen["still"] += 1
        elif sc.motion == "bouncing":
            assert free_fall > 0.08
            seen["bouncing"] += 1
    assert all(seen.values()), seen


def test_generate_is_byte_identical_and_loaders_read_every_file(tmp_path):
    from bindkit.inputs import preprocess

    a, b = tmp_path / "a", tmp_path / "b"
    summary = S.generate(a, seed=3, splits=SMALL, size=32, show_progress=False)
    S.generate(b, seed=3, splits=SMALL, size=32, show_progress=False, workers=2)
    assert _tree(a) == _tree(b)
    assert summary["counts"] == SMALL

    pairs = _rows(a / "image_audio.csv")
    assert list(pairs[0]) == ["image", "audio"] and len(pairs) == SMALL["train"]
    for kind in ("text", "audio", "depth", "thermal", "imu"):
        assert (a / f"image_{kind}.csv").is_file() and (a / "test" / f"image_{kind}.csv").is_file()
    row = _rows(a / "image_imu.csv")[0]
    batch = {kind: preprocess(kind, [a / p], "imagebind_tiny")
             for kind, p in (("image", row["image"]), ("imu", row["imu"]))}
    assert batch["image"].shape == (1, 3, 224, 224) and batch["imu"].shape == (1, 6, 2000)

    s = S.sample(0, seed=3, split="test", size=32)
    test = a / "test"
    labels = _rows(test / "labels.csv")[0]
    assert labels["text"] == s["text"] and labels["material"] == s["labels"]["material"]
    assert np.array_equal(np.asarray(Image.open(test / labels["image"])), s["image"])
    assert np.array_equal(np.asarray(Image.open(test / labels["thermal"])), s["thermal"])
    depth = Image.open(test / labels["depth"])
    assert depth.mode == "I;16"
    assert np.abs(np.asarray(depth) / 1000.0 - s["depth"]).max() <= 0.0006
    for kind in ("audio", "depth", "thermal"):
        assert preprocess(kind, [test / labels[kind]], "imagebind_tiny").shape[0] == 1

    zs = _rows(test / "audio_material.csv")
    assert list(zs[0]) == ["audio", "label"] and len(zs) == SMALL["test"]
    assert all(r["label"] in S.classes("material") for r in zs)
    assert json.loads((a / "classes_motion.json").read_text()) == S.classes("motion")
    comp = _rows(a / "compositional" / "labels.csv")
    assert all((r["shape"], r["colour"]) in S.HELD_OUT for r in comp)


def test_generate_refuses_to_clobber(tmp_path):
    S.generate(tmp_path / "w", splits={"train": 2}, size=16, show_progress=False)
    with pytest.raises(DatasetError, match="overwrite"):
        S.generate(tmp_path / "w", splits={"train": 2}, size=16, show_progress=False)
    S.generate(tmp_path / "w", splits={"train": 1}, size=16, show_progress=False, overwrite=True)
    assert len(list((tmp_path / "w" / "train" / "image").iterdir())) == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="no world.json"):
        S.generate(other, splits={"train": 1}, size=16, show_progress=False, overwrite=True)
    assert (other / "keep.txt").read_text() == "mine"


def test_cli_writes_a_world(tmp_path, capsys):
    out = tmp_path / "world"
    args = ["datasets", "synthetic", "--out", str(out), "--n", "3", "--n-test", "2", "--n-compositional", "0",
            "--size", "32", "--seed", "5"]
    assert main(args) == 0
    assert "wrote a synthetic world" in capsys.readouterr().out
    assert len(_rows(out / "image_text.csv")) == 3 and len(_rows(out / "test" / "imu_motion.csv")) == 2
    assert not (out / "compositional").exists()
    world = json.loads((out / "world.json").read_text())
    assert world["seed"] == 5 and world["params"]["size"] == 32
    assert main(args) == 1
    assert "--overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["datasets", "synthetic", "--help"])
    assert exc.value.code == 0
    assert "image_text.csv" in capsys.readouterr().out


#: sha256 of the WAV files of test samples 0 and 1 (seed 4, 0.5 s) as bindkit wrote them before the microphone
#: option existed: the default ("clean") world must stay byte for byte what it was (bindkit_toy was trained on it).
CLEAN_WAV_SHA256 = ["928c86a330fc4ccbf551754f546637245b3f59457477ff6b46b223d5cde613be",
                    "27fe73952a50fe669b8383c381a512d714f5706444fd6540341d318cc4db66cc"]


def _low_band_share(wave: np.ndarray, rate: int, below_hz: float = 350.0) -> float:
    power = np.abs(np.fft.rfft(wave.astype(np.float64))) ** 2
    return float(power[np.fft.rfftfreq(wave.size, 1 / rate) < below_hz].sum() / power.sum())


def test_shifted_microphone_changes_only_the_sounds_and_the_default_stays_as_it_was(tmp_path):
    clean, shifted = tmp_path / "clean", tmp_path / "shifted"
    S.generate(clean, seed=4, splits={"test": 2}, size=24, audio_seconds=0.5, show_progress=False)
    S.generate(shifted, seed=4, splits={"test": 2}, size=24, audio_seconds=0.5, show_progress=False,
               audio_mic="shifted")
    wavs = sorted((clean / "test" / "audio").iterdir())
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in wavs] == CLEAN_WAV_SHA256
    assert "audio_mic" not in json.loads((clean / "world.json").read_text())["params"]
    assert "microphone" not in (clean / "README.md").read_text()
    assert json.loads((shifted / "world.json").read_text())["params"]["audio_mic"] == "shifted"

    a, b = _tree(clean / "test"), _tree(shifted / "test")
    assert a.keys() == b.keys()
    differ = sorted(k for k in a if a[k] != b[k])
    assert differ == [f"audio/{p.name}" for p in wavs]  # images, depth, thermal, IMU, captions, labels: identical

    large = [i for i in range(40) if S.scene(i, seed=4).size == "large"][:3]
    assert len(large) == 3
    for i in large:  # the band-pass takes the low end away: large objects ring at 200-320 Hz
        c, s = S.sample(i, seed=4), S.sample(i, seed=4, audio_mic="shifted")
        assert np.array_equal(c["image"], s["image"]) and c["text"] == s["text"]
        assert _low_band_share(s["audio"], 16000) < 0.7 * _low_band_share(c["audio"], 16000)
        assert np.abs(s["audio"]).max() <= 0.2 + 1e-6 and s["audio"].dtype == np.float32
    with pytest.raises(ValueError, match="audio_mic"):
        S.sample(0, audio_mic="vintage")
    with pytest.raises(DatasetError, match="audio_mic"):
        S.generate(tmp_path / "bad", splits={"test": 1}, audio_mic="vintage", show_progress=False)


def test_cli_audio_mic_option(tmp_path):
    out = tmp_path / "w"
    assert main(["datasets", "synthetic", "--out", str(out), "--n", "1", "--n-test", "0", "--n-compositional", "0",
                 "--size", "16", "--audio-seconds", "0.2", "--audio-mic", "shifted", "-q"]) == 0
    assert json.loads((out / "world.json").read_text())["params"]["audio_mic"] == "shifted"
    assert "shifted microphone" in json.loads((out / "world.json").read_text())["formats"]["audio"]
