"""bindkit.datasets.synthetic.build_gallery: the one gallery `bindkit demo` and demos/app.py search — files of every
modality (videos of the first scenes), indexed with the model, per-scene stored vectors, and re-use of a complete
gallery built with the same arguments and weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

import bindkit
from bindkit.datasets import synthetic
from bindkit.datasets.synthetic.writer import DatasetError

N, VIDEOS = 8, 2


@pytest.fixture(scope="module")
def toy():
    return bindkit.load_model("bindkit_toy")


@pytest.fixture(scope="module")
def built(toy, tmp_path_factory):
    root = tmp_path_factory.mktemp("gallery")
    lines: list[str] = []
    g = synthetic.build_gallery(root / "g", toy, n=N, videos=VIDEOS, log=lines.append)
    yield g, lines
    g.close()


def test_gallery_holds_every_modality_of_the_same_scenes(built, toy):
    g, lines = built
    assert not g.reused and lines[0].startswith("building the demo gallery")
    assert g.kinds == ["image", "text", "audio", "video", "depth", "thermal", "imu"]
    assert len(g.scenes) == N and len(g.index) == 6 * N + VIDEOS
    assert "video" in g.scenes[VIDEOS - 1] and "video" not in g.scenes[VIDEOS]
    assert g.scenes[0]["video"].endswith(".webm") and g.media == g.path / "media"
    hit = g.index.search(text=g.scenes[3]["text"], k=1, modalities=["image"])["image"][0]
    assert set(synthetic.ATTRIBUTES) <= set(hit.metadata) and {"scene", "caption"} <= set(hit.metadata)
    # the stored vector of each scene is the one of that scene's file
    own = toy.embed(image=[g.scenes[5]["image"]], audio=[g.scenes[2]["audio"]])
    assert np.allclose(g.vectors("image")[5], own["image"][0], atol=1e-4)
    assert np.allclose(g.vectors("audio")[2], own["audio"][0], atol=1e-4)
    video = g.vectors("video")
    assert np.isfinite(video[:VIDEOS]).all() and np.isnan(video[VIDEOS:]).all()
    assert np.allclose(np.linalg.norm(video[:VIDEOS], axis=1), 1.0, atol=1e-4)
    with pytest.raises(KeyError, match="no 'rgb' items"):
        g.vectors("rgb")


def test_complete_gallery_is_reused_and_other_arguments_rebuild_it(toy, tmp_path):
    g = synthetic.build_gallery(tmp_path, toy, n=3, videos=1)
    marker = tmp_path / "done.json"
    stamp = marker.stat().st_mtime_ns
    with synthetic.build_gallery(tmp_path, toy, n=3, videos=1) as again:
        assert again.reused and again.ids == g.ids and again.scenes == g.scenes
        assert len(again.index) == len(g.index) == 6 * 3 + 1
    assert marker.stat().st_mtime_ns == stamp
    g.close()  # the folder is rebuilt below: no index of it may stay open
    with synthetic.build_gallery(tmp_path, toy, n=4) as other:
        assert not other.reused and len(other.scenes) == 4 and "video" not in other.kinds
        assert len(other.index) == 6 * 4
    assert json.loads(marker.read_text())["n"] == 4


def test_gallery_key_names_the_arguments_and_the_weights(toy):
    key = synthetic.gallery_key(toy, n=60, videos=24)
    assert key.startswith(f"v{synthetic.gallery.GALLERY_VERSION}-n60-vid24-")
    assert synthetic.gallery_key(toy, n=60, videos=24, seed=3) != key


def test_foreign_files_are_never_deleted(toy, tmp_path):
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "mine.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not empty"):
        synthetic.build_gallery(tmp_path, toy, n=2)
    assert (tmp_path / "media" / "mine.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="n >= 1"):
        synthetic.build_gallery(tmp_path / "x", toy, n=0)
