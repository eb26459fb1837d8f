"""bindkit train on a ``video,audio`` manifest (issue #8): video goes through the vision encoder with the card's
video preprocessing (augmented by flips), alone and together with an ``image,text`` manifest (one pair type per
batch); the output directory embeds video and audio. Tiny sizes, two steps: only the plumbing is under test."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

import bindkit
from bindkit.errors import CardError
from train_helpers import cli, tiny_card, toy_world, video_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("video_world")
    card = tiny_card(root / "tiny.json")
    video_audio = video_world(root / "data", n=10)
    image_text = toy_world(root / "data", n=8)["text"]
    return root, card, video_audio, image_text


def _metrics(out) -> list[dict[str, str]]:
    with open(out / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_video_audio_manifest_trains_and_the_model_embeds_both(world):
    root, card, video_audio, _ = world
    out = root / "va"
    cli("train", video_audio, "--card", card, "--max-steps", "2", "--batch-size", "4", "--val-split", "0.3",
        "--out", out, "-q")
    record = json.loads((out / "train_record.json").read_text())
    assert record["status"] == "finished" and record["steps"] == 2
    assert record["trainable"] == ["vision", "audio"]
    data = record["data"][0]
    assert data["pair"] == "video-audio" and data["skipped_at_load"] == 0
    assert data["augmented"] == {"video": True, "audio": True}  # video: flips
    rows = _metrics(out)
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(math.isfinite(float(r["loss"])) and float(r["loss"]) > 0 for r in rows)
    with open(out / "val_metrics.csv", newline="") as fh:
        val = list(csv.DictReader(fh))
    assert val and val[-1]["pair"] == "video-audio" and int(val[-1]["n"]) == 3  # ceil(0.3 * 10) clips held out
    assert math.isfinite(float(val[-1]["loss"]))

    model = bindkit.load_model(out)
    assert model.modalities == ("vision", "audio")
    with open(video_audio, newline="") as fh:
        pairs = list(csv.DictReader(fh))[:3]
    emb = model.embed(video=[str(video_audio.parent / p["video"]) for p in pairs],
                      audio=[str(video_audio.parent / p["audio"]) for p in pairs])
    for kind in ("video", "audio"):
        assert emb[kind].shape == (3, 32)
        assert np.allclose(np.linalg.norm(emb[kind], axis=1), 1.0, atol=1e-4)
    assert not np.allclose(emb["video"][0], emb["video"][1])  # different clips, different vectors


def test_image_text_and_video_audio_train_together(world):
    root, card, video_audio, image_text = world
    out = root / "mixed"
    bindkit.train([image_text, video_audio], out, card=str(card), max_steps=2, batch_size=4, val_split=0,
                  progress=False, log=lambda _msg: None)
    record = json.loads((out / "train_record.json").read_text())
    assert record["status"] == "finished" and [d["pair"] for d in record["data"]] == ["image-text", "video-audio"]
    rows = _metrics(out)
    assert len(rows) == 2
    for r in rows:  # one batch of each pair type per step, each with its own finite loss
        a, b = float(r["loss_image-text"]), float(r["loss_video-audio"])
        assert math.isfinite(a) and math.isfinite(b)
        assert float(r["loss"]) == pytest.approx(a + b, rel=1e-4)
    model = bindkit.load_model(out)
    assert model.modalities == ("vision", "text", "audio")
    emb = model.embed(video=[str(next(video_audio.parent.glob("media/vid*.mp4")))])
    assert np.allclose(np.linalg.norm(emb["video"], axis=1), 1.0, atol=1e-4)


def test_card_whose_video_frames_do_not_fit_the_vision_encoder_is_refused_before_training(world, tmp_path):
    root, card, video_audio, _ = world
    bad = json.loads(card.read_text())
    bad["preprocess"]["video"]["size"] = 64  # the vision encoder takes 32 px
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(CardError, match=r"preprocess\.video .*2 x 3 x 2 x 64 x 64.*S x 3 x 2 x 32 x 32.*"
                                        r"modalities\.vision"):
        bindkit.train(video_audio, tmp_path / "out", card=str(path), max_steps=1, batch_size=4, val_split=0,
                      log=lambda _msg: None)
