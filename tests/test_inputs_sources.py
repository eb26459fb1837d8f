"""Items -> sources: kind guessing from paths, and errors about the item itself."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from bindkit.errors import InputError
from bindkit.inputs import kind_from_path
from bindkit.inputs.sources import to_source


@pytest.mark.parametrize(
    "path,kind",
    [
        ("a/photo.JPG", "image"),
        ("a/clip.webp", "image"),
        ("a/song.mp3", "audio"),
        ("a/rec.flac", "audio"),
        ("a/movie.mkv", "video"),
        ("a/run.csv", "imu"),
        ("a/note.txt", "text"),
        ("a/array.npy", None),
        ("a/archive.zip", None),
        ("data/depth/0001.png", "depth"),
        ("data/Depth/scene/0001.npy", "depth"),
        ("data/thermal/0001.jpg", "thermal"),
        ("data/IR/0001.jpg", "thermal"),
        ("data/infrared/0001.jpg", "thermal"),
        ("data/imu/rec.npy", "imu"),
        ("data/depth/clip.wav", "audio"),  # a hint never overrides an extension the hinted kind cannot read
    ],
)
def test_kind_from_path(path, kind):
    assert kind_from_path(path) == kind


def test_folder_hints_can_be_turned_off(samples_dir):
    depth = sorted(samples_dir.glob("depth/*.jpg"))[0]
    assert kind_from_path(depth) == "depth"
    assert kind_from_path(depth, folder_hints=False) == "image"
    assert kind_from_path(Path("x/thermal/y/z/w/a.jpg")) == "image"  # too far up to count


def test_item_types(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"\x89PNG...")
    assert to_source(path, 0, "image").path == path
    assert to_source(b"abc", 3, "image").label == "#3"
    src = to_source(io.BytesIO(b"abc"), 1, "audio")
    assert src.data == b"abc" and src.label == "#1"
    assert to_source(np.zeros(3), 0, "imu").obj is not None


def test_item_errors(tmp_path):
    empty = tmp_path / "e.wav"
    empty.write_bytes(b"")
    cases = [
        (tmp_path / "nope.wav", "no such file"),
        (tmp_path, "directory"),
        (empty, "empty file"),
        (b"", "empty bytes"),
        (io.BytesIO(b""), "empty"),
        (io.StringIO("text"), "text mode"),
        (12345, "unsupported item type int"),
    ]
    for item, words in cases:
        with pytest.raises(InputError, match=words) as info:
            to_source(item, 0, "audio")
        # paths are named by their path, in-memory items by their position
        assert info.value.item == (str(item) if isinstance(item, Path) else "#0")
        assert info.value.modality == "audio"
