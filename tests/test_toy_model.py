"""bindkit_toy, the model committed in weights/: it loads on a fresh clone, and it finds the right items of the
synthetic world it was trained on (meaning, not only plumbing). Its image and text encoders are the frozen
image-text stage, so the figures asserted here have wide margins over what they measure (quoted per test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bindkit
from bindkit import evaluate
from bindkit.datasets import synthetic

from index_helpers import env

REPO = Path(__file__).resolve().parent.parent
TOY = REPO / "weights" / "bindkit_toy"
N = 90  # gallery scenes (test split: never trained on)


@pytest.fixture(scope="module")
def toy():
    return bindkit.load_model("bindkit_toy")


@pytest.fixture(scope="module")
def gallery():
    return [synthetic.sample(i, seed=0, split="test") for i in range(N)]


def test_committed_model_is_small_documented_and_loads_by_name(toy):
    assert toy.card.name == "bindkit_toy" and set(toy.modalities) == {"vision", "text", "audio", "depth", "thermal",
                                                                       "imu"}
    assert sum(p.stat().st_size for p in TOY.glob("*.safetensors")) <= 20 * 2**20
    assert "synthetic world only" in toy.card.description
    manifest = json.loads((TOY / "manifest.json").read_text())
    assert {m: f["fingerprint"] for m, f in manifest["files"].items()} == {m: toy.fingerprint(m)
                                                                           for m in toy.modalities}
    record = json.loads((TOY / "train_record.json").read_text())
    assert record["frozen"] and {"vision", "text"} <= set(record["frozen"])  # bound through images only


def test_colour_zero_shot_on_held_out_images(toy, gallery):
    """Image -> colour names: measured 0.96 on 400 held-out scenes (chance 0.17); asserted >= 0.6."""
    names = synthetic.classes("colour")
    cls = evaluate.class_embeddings(toy, names, synthetic.templates("colour"))
    emb = toy.embed(image=[s["image"] for s in gallery], show_progress_bar=False)["image"]
    s = evaluate.zero_shot_scores(emb, cls, [names.index(g["labels"]["colour"]) for g in gallery], names)
    assert s["accuracy"] >= 0.6, s["per_class"]


@pytest.mark.parametrize("kind,attr", [("audio", "material"), ("audio", "size"), ("thermal", "temperature"),
                                       ("imu", "motion")])
def test_emergent_zero_shot_without_any_x_text_pairs(toy, gallery, kind, attr):
    """Audio, thermal and IMU were bound to frozen images only; naming their attributes with text prompts works
    anyway. Measured on 400 held-out scenes: audio -> material 0.92 (chance 0.25), audio -> size 0.92 (0.33),
    thermal -> temperature 0.94 (0.33), IMU -> motion 0.89 (0.20); asserted: at least 2x chance on this gallery."""
    names = synthetic.classes(attr)
    cls = evaluate.class_embeddings(toy, names, synthetic.templates(attr))
    items = [(g["audio"], g["audio_rate"]) if kind == "audio" else g[kind] for g in gallery]
    emb = toy.embed(**{kind: items}, show_progress_bar=False)[kind]
    s = evaluate.zero_shot_scores(emb, cls, [names.index(g["labels"][attr]) for g in gallery], names)
    assert s["accuracy"] >= 2 * s["chance"], s["per_class"]


def test_index_finds_the_asked_colour_and_the_paired_caption(toy, gallery, tmp_path):
    """Through bindkit.Index: a colour query returns images of that colour, and an image finds its own caption
    among the gallery's captions far more often than chance."""
    with bindkit.Index.create(tmp_path / "idx", model=toy) as index:
        meta = [dict(g["labels"], i=k) for k, g in enumerate(gallery)]
        index.add([g["image"] for g in gallery], modality="image", metadata=meta)
        index.add([g["text"] for g in gallery], modality="text", metadata=meta)
        for colour in ("red", "blue", "yellow"):
            present = sum(g["labels"]["colour"] == colour for g in gallery)
            hits = index.search(text=f"a {colour} shape", k=3, modalities=["image"])["image"]
            right = sum(h.metadata["colour"] == colour for h in hits)
            assert present >= 3 and right >= 2, (colour, [h.metadata["colour"] for h in hits])
        found = 0
        for k, g in enumerate(gallery):
            hits = index.search(image=g["image"], k=5, modalities=["text"])["text"]
            found += any(h.metadata["i"] == k for h in hits)
        assert found / N >= 4 * 5 / N, found  # image -> caption R@5: measured 0.67 on 60 scenes, chance 5/N


def test_make_demo_main_job_on_a_fresh_machine(tmp_path):
    """`bindkit demo` with no weights but the committed ones and no ../shared: the three sections appear."""
    e = env(BINDKIT_WEIGHTS=str(tmp_path / "none"), XDG_CACHE_HOME=str(tmp_path / "cache"), HOME=str(tmp_path))
    run = subprocess.run([sys.executable, "-m", "bindkit", "demo", "--n", "24"], capture_output=True, text=True,
                         timeout=600, env=e, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout
    assert "model bindkit_toy" in out and "indexed 144 items" in out  # 24 scenes x (5 media + 1 caption)
    for section in ("1. Text -> each modality", "2. Image -> X retrieval", "3. Zero-shot"):
        assert section in out
    assert "audio    -> material" in out and "imu      -> motion" in out
