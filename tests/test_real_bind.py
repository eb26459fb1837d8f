"""The real-data binding benchmark at test size (issue 18): real handwritten digits (scikit-learn) and spoken
digit names (espeak-ng, held-out voices), bound through images with the documented command shape. Checks the
machinery end to end on data bindkit did not generate itself: the label column drives the pairing, the schedule
comes from the data, the eval report carries accuracy, top-5 and the confusion matrix. The figures at full size
come from benchmarks/bench_real_bind.py (docs/own_sensor.md)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from train_helpers import cli, tiny_card


def _need(tool_ok: bool, what: str) -> None:
    if tool_ok:
        return
    msg = f"{what} is not installed (tests/setup.sh installs it)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{msg}; under CI it must be present")
    pytest.skip(msg)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    _need(shutil.which("espeak-ng") is not None, "espeak-ng")
    try:
        import sklearn  # noqa: F401
    except ImportError:
        _need(False, "scikit-learn")
    from bindkit.datasets.digits import Settings, write_spoken_digits

    root = tmp_path_factory.mktemp("real_bind")
    summary = write_spoken_digits(root / "data", Settings.small())
    return root, root / "data", summary


def test_data_set_is_real_handwriting_and_held_out_voices(data):
    _, d, summary = data
    assert summary["images_train"] + summary["images_test"] == 1797  # every scikit-learn digit, once
    assert not set(summary["train_voices"]) & set(summary["test_voices"])
    header = (d / "image_audio.csv").read_text().splitlines()[0]
    assert header == "image,audio,label"
    assert json.loads((d / "labels.json").read_text())[3] == "three"
    import soundfile

    rates = {soundfile.info(str(p)).samplerate for p in (d / "audio").iterdir()}
    assert rates == {8000, 16000}  # telephone-band and wideband recordings


def test_the_documented_command_shape_binds_audio_through_images(data):
    root, d, _ = data
    card = tiny_card(root / "tiny.json")
    m1, m2 = root / "m1", root / "m2"
    cli("train", d / "image_text.csv", "--card", card, "--out", m1, "--max-steps", "100", "--lr", "3e-3", "-q")
    cli("train", d / "image_audio.csv", "--init", m1, "--freeze", "image,text", "--out", m2, "--max-steps", "40",
        "--lr", "3e-3", "-q")
    rec = json.loads((m2 / "train_record.json").read_text())
    assert list(rec["pairing"].values()) == ["label"]  # the label column was used, without being asked
    val = rec["epochs"][-1]["val"]["image-audio"]
    assert val["level"] == "label" and 0.05 < val["chance_ab"] < 0.2  # label-level chance ~1/10, not ~1/N
    reports = {}
    for test in ("image_test.csv", "audio_test.csv"):
        out = cli("eval", m2, "--zero-shot", d / test, "--classes", d / "labels.json", "--templates", "{}",
                  "the digit {}", "--json")
        reports[test] = json.loads(out.stdout)
    img, aud = reports["image_test.csv"], reports["audio_test.csv"]
    assert img["modality"] == "image" and aud["modality"] == "audio" and aud["n"] == 80
    assert len(aud["confusion"]) == 10 and sum(map(sum, aud["confusion"])) == 80 and "top5" in aud
    # 100 steps of a 1-block, 32-wide model already read real handwriting well above chance (0.1)
    assert img["accuracy"] > 0.2, img["accuracy"]
