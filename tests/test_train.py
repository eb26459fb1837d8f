"""bindkit train end to end on a toy world: an image-text space learned from scratch (above chance), audio bound
to it with image and text frozen (bit-for-bit), the output directory used as a model everywhere."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

import bindkit
from train_helpers import COLOURS, cli, tiny_card, toy_world


@pytest.fixture(scope="module")
def one_thread():
    """Two shared cores: one intra-op thread is several times faster than two under load (same numbers)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("train_world")
    card = tiny_card(root / "tiny.json")
    manifests = toy_world(root / "data", n=64, kinds=("text", "audio"))
    return root, card, manifests


@pytest.fixture(scope="module")
def m1(world):
    root, card, manifests = world
    bindkit.train(manifests["text"], root / "m1", card=str(card), epochs=6, batch_size=16, lr=3e-3,
                  val_split=0.25, seed=0, log=lambda msg: None)
    return root / "m1"


@pytest.fixture(scope="module")
def m2(world, m1):
    """The issue's command shape, through the CLI: bind audio with image and text frozen."""
    root, _, manifests = world
    cli("train", manifests["audio"], "--init", m1, "--freeze", "image,text", "--out", root / "m2",
        "--epochs", "3", "--batch-size", "12", "--lr", "3e-3", "--val-split", "0.25", "-q")
    return root / "m2"


def test_learns_a_toy_world_far_above_chance(world, m1):
    root, _, manifests = world
    record = json.loads((m1 / "train_record.json").read_text())
    assert record["status"] == "finished" and record["steps"] == record["total_steps"] == 18
    best = record["best"]
    last = record["epochs"][-1]["val"]["image-text"]
    chance = max(last["chance_ab"], last["chance_ba"])
    assert best["val_score"] >= 2.5 * chance, (best, chance)  # held-out R@1 (both ways), 16 pairs

    model = bindkit.load_model(m1)
    assert model.modalities == ("vision", "text")
    rows = list(csv.DictReader(open(manifests["text"])))
    images = [str(manifests["text"].parent / r["image"]) for r in rows]
    truth = np.array([next(c for c in COLOURS if c in r["text"]) for r in rows])
    emb = model.embed(image=images, text=[f"a {c} square" for c in COLOURS])
    predicted = np.array(list(COLOURS))[(emb["image"] @ emb["text"].T).argmax(1)]
    assert (predicted == truth).mean() >= 0.6  # zero-shot colour naming; chance is 0.25


def test_output_directory_is_a_model_with_its_training_record(world, m1):
    root, card, manifests = world
    names = sorted(p.name for p in m1.iterdir())
    for f in ("card.json", "manifest.json", "vision.safetensors", "text.safetensors", "train_record.json",
              "metrics.csv", "val_metrics.csv", "checkpoints"):
        assert f in names
    manifest = json.loads((m1 / "manifest.json").read_text())
    record = json.loads((m1 / "train_record.json").read_text())
    assert manifest["format"] == "bindkit-weights" and manifest["source"] == "bindkit train"
    assert json.loads((m1 / "card.json").read_text())["name"] == "m1"
    import hashlib

    for info in manifest["files"].values():
        assert hashlib.sha256((m1 / info["file"]).read_bytes()).hexdigest() == info["sha256"]
    assert record["data"][0]["sha256"] == hashlib.sha256(manifests["text"].read_bytes()).hexdigest()
    assert record["data"][0]["media"]["files"] == 64 and len(record["data"][0]["media"]["sha256"]) == 64
    assert record["bindkit_version"] == bindkit.__version__ and record["seed"] == 0
    assert record["arguments"]["batch_size"] == 16 and len(record["epochs"]) == 6
    # fingerprints identify the trained weights: recorded, reproduced by hashing, unlike a fresh model's
    model = bindkit.load_model(m1)
    assert record["fingerprints"]["vision"] == manifest["files"]["vision"]["fingerprint"] == model.fingerprint("image")
    fresh = bindkit.build_model(str(card), modalities=["vision"])
    assert fresh.fingerprint("image") != model.fingerprint("image")
    from bindkit.models import tensor_fingerprint

    assert tensor_fingerprint(model.encoders["vision"].state_dict()) == model.fingerprint("image")


def test_frozen_encoders_stay_bit_for_bit_identical(world, m1, m2):
    before = bindkit.load_model(m1)
    after = bindkit.load_model(m2)
    assert after.modalities == ("vision", "text", "audio")
    for enc in ("vision", "text"):
        a, b = before.encoders[enc].state_dict(), after.encoders[enc].state_dict()
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{enc}.{k} changed"
        assert before.fingerprint(enc) == after.fingerprint(enc)
    record = json.loads((m2 / "train_record.json").read_text())
    assert record["frozen"] == ["vision", "text"] and record["trainable"] == ["audio"]
    assert record["data"][0]["cached_sides"] == ["image"]  # frozen, not augmented: embedded once
    assert record["init"]["modalities"] == ["vision", "text"]
    fresh_audio = bindkit.build_model(str(world[1]), modalities=["audio"])
    assert not torch.equal(fresh_audio.encoders["audio"].head.proj.weight, after.encoders["audio"].head.proj.weight)


def test_frozen_side_run_every_step_with_augmentation_is_unchanged_too(world, m1, tmp_path):
    _, _, manifests = world
    out = tmp_path / "m3"
    res = bindkit.train(manifests["text"], out, init=m1, freeze="image", augment="all", max_steps=2,
                        batch_size=8, val_split=0, log=lambda msg: None)
    assert res.finished and res.record["data"][0]["cached_sides"] == []
    before, after = bindkit.load_model(m1), bindkit.load_model(out)
    for k, v in before.encoders["vision"].state_dict().items():
        assert torch.equal(v, after.encoders["vision"].state_dict()[k])
    assert not torch.equal(before.encoders["text"].head.proj.weight, after.encoders["text"].head.proj.weight)


def test_trained_model_works_wherever_a_model_is_accepted(world, m2, tmp_path):
    root, _, manifests = world
    model = bindkit.load_model(m2)
    index = bindkit.Index.create(tmp_path / "idx", model=model)
    index.close()
    sounds = sorted((manifests["audio"].parent / "media").glob("snd00*.wav"))[:3]
    cli("embed", *sounds, "--model", m2, "--out", tmp_path / "vecs.npy", "-q")
    vecs = np.load(tmp_path / "vecs.npy")
    assert vecs.shape == (3, 32)
    assert np.allclose(vecs, model.embed(audio=[str(s) for s in sounds])["audio"], atol=1e-5)
    assert bindkit.load_model(str(m2), modalities=["audio"]).modalities == ("audio",)


def test_bindkit_small_card_builds_and_preprocesses_every_modality(tmp_path):
    from PIL import Image

    model = bindkit.build_model("bindkit_small")
    assert model.dim == 128 and model.modalities == ("vision", "text", "audio", "depth", "thermal", "imu")
    assert sum(p.numel() for p in model.parameters()) < 6_000_000
    rate = 16000
    items = {
        "image": [Image.new("RGB", (90, 70), (200, 10, 10))],
        "text": ["a red square"],
        "audio": [(np.sin(np.arange(rate * 3) / rate * 2 * np.pi * 440).astype(np.float32), rate)],
        "depth": [np.full((70, 90), 2.0, np.float32)],
        "thermal": [Image.new("L", (90, 70), 128)],
        "imu": [np.random.default_rng(0).standard_normal((6, 1234)).astype(np.float32)],
    }
    shapes = {"image": (1, 3, 64, 64), "text": (1, 32), "audio": (1, 1, 1, 64, 96), "depth": (1, 1, 64, 64),
              "thermal": (1, 1, 64, 64), "imu": (1, 6, 500)}
    with torch.inference_mode():
        for kind, it in items.items():
            batch = bindkit.preprocess(kind, it, card="bindkit_small")
            assert tuple(batch.shape) == shapes[kind], kind
            assert model.encode(kind, batch).shape == (1, 128)
        video = bindkit.preprocess("video", [np.zeros((20, 48, 64, 3), np.uint8)], card="bindkit_small", fps=10)
        assert tuple(video.shape) == (1, 2, 3, 2, 64, 64) and model.encode("video", video).shape == (1, 128)
    assert model.encoders["vision"].stem.pos_embed.shape[1] == 1 + 64  # (2, 8, 8) kernel over 2 x 64 x 64
