"""embed(): files in, unit vectors out in input order, reference parity end to end, per-item errors; and the
``bindkit embed`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bindkit
from bindkit.cli import main
from bindkit.errors import InputError, ModalityError
from bindkit.inputs import Embeddings, ItemError, embed, preprocess


@pytest.fixture(scope="module")
def files(samples_dir):
    return {
        "image": sorted(samples_dir.glob("image/*.jpg")),
        "audio": sorted(samples_dir.glob("audio/*.wav")),
        "depth": sorted(samples_dir.glob("depth/*.jpg"))[:2],
        "thermal": sorted(samples_dir.glob("thermal/*.jpg"))[:2],
        "imu": sorted(samples_dir.glob("imu/*.csv"))[2:4],  # 4k and 6k rows: fitting matters
        "video": [samples_dir / "video" / "wind_noise.mp4"],
    }


def test_files_to_vectors_match_the_reference_end_to_end(tiny_model, files, fixture_dir):
    """Reference preprocessing + reference model outputs: embed() on the sample files reproduces them."""
    outputs = torch.load(fixture_dir / "outputs.pt", weights_only=True)
    texts = json.loads((fixture_dir / "texts.json").read_text())["texts"]
    got = embed(tiny_model, image=files["image"], audio=files["audio"], text=texts)
    for kind, ref in (("image", "vision"), ("audio", "audio"), ("text", "text")):
        want = F.normalize(outputs[ref].float(), dim=-1).numpy()
        assert got[kind].dtype == np.float32 and got[kind].shape == want.shape
        assert np.abs(got[kind] - want).max() < 1e-5
    assert got.errors == []


def test_every_modality_in_one_call(tiny_model, files):
    got = embed(tiny_model, **files, text=["a dog"], batch_size=2)
    assert isinstance(got, Embeddings) and set(got) == set(files) | {"text"}
    for kind, vecs in got.items():
        assert vecs.shape == (len(files.get(kind, [1])), tiny_model.dim)
        assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
        assert got.ok(kind).all()


def test_rows_follow_input_order_and_do_not_depend_on_batching(tiny_model, files):
    items = files["image"] + files["thermal"]  # thermal images are fine RGB images too
    a = embed(tiny_model, image=items, batch_size=2, num_workers=2)["image"]
    b = embed(tiny_model, image=items[::-1], batch_size=32, num_workers=1)["image"]
    assert np.abs(a - b[::-1]).max() < 1e-5
    c = tiny_model.encode("image", preprocess("image", items, card=tiny_model)).numpy()
    assert np.abs(a - c).max() < 1e-5


def test_one_bad_file_loses_nothing_else(tiny_model, files, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF but not really a wav file")
    good = embed(tiny_model, audio=files["audio"], image=files["image"])
    mixed = embed(tiny_model, audio=[files["audio"][0], broken, *files["audio"][1:]], image=files["image"],
                  batch_size=2)
    assert np.isnan(mixed["audio"][1]).all()
    assert np.abs(np.delete(mixed["audio"], 1, axis=0) - good["audio"]).max() < 1e-5
    assert np.abs(mixed["image"] - good["image"]).max() < 1e-5
    assert mixed.ok("audio").tolist() == [True, False, True, True] and mixed.ok("image").all()
    [err] = mixed.errors
    assert isinstance(err, ItemError)
    assert (err.kind, err.index, err.item) == ("audio", 1, str(broken)) and "decodable" in err.reason


def test_strict_raises_the_first_input_error(tiny_model, files, tmp_path):
    with pytest.raises(InputError) as info:
        embed(tiny_model, image=[files["image"][0], tmp_path / "missing.jpg", b"junk"], strict=True)
    assert info.value.item == str(tmp_path / "missing.jpg")


def test_bad_items_of_every_kind_are_reported(tiny_model, tmp_path):
    got = embed(tiny_model, text=["ok", 42], imu=[np.full((6, 50), np.nan)], depth=[np.zeros((2, 2, 2))])
    assert sorted((e.kind, e.index) for e in got.errors) == [("depth", 0), ("imu", 0), ("text", 1)]
    assert got.ok("text").tolist() == [True, False]


def test_arguments_are_checked(tiny_model, files):
    with pytest.raises(ValueError, match="unknown keyword argument 'imagez'.*valid ones:.*image.*batch_size"):
        embed(tiny_model, imagez=files["image"])
    with pytest.raises(ValueError, match="unit-length"):
        embed(tiny_model, image=files["image"], normalize_embeddings=False)
    with pytest.raises(ValueError, match="unknown imu option"):
        embed(tiny_model, imu=[np.zeros((6, 10))], options={"imu": {"fitt": "x"}})
    alias = embed(tiny_model, vision=files["image"][:1])
    assert alias["image"].shape == (1, tiny_model.dim)


def test_options_reach_the_loaders(tiny_model, files):
    default = embed(tiny_model, imu=files["imu"])["imu"]
    cropped = embed(tiny_model, imu=files["imu"], options={"imu": {"fit": "crop_pad"}})["imu"]
    assert np.abs(default - cropped).max() > 1e-4


def test_empty_lists_and_missing_encoders(tiny_model, files):
    empty = embed(tiny_model, image=[])
    assert empty["image"].shape == (0, tiny_model.dim) and empty.errors == []
    vision_only = bindkit.build_model("imagebind_tiny", modalities=["vision"])
    with pytest.raises(ModalityError, match="audio"):
        embed(vision_only, audio=files["audio"])


def test_bindkit_as_model_method(tiny_model, files):
    got = tiny_model.embed(image=files["image"][:1], text=["a bird"])
    assert set(got) == {"image", "text"}


def test_cli_writes_npy_paths_and_error_report(tiny_model, files, fixture_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really")
    note = tmp_path / "note.txt"
    note.write_text("a dog barking")
    inputs = [files["image"][0], files["audio"][2], bad, note, files["depth"][0], tmp_path / "what.bin"]
    out = tmp_path / "out" / "emb.npy"
    report = tmp_path / "errors.json"
    rc = main(["embed", *map(str, inputs), "--model", "imagebind_tiny", "--weights",
               str(fixture_dir / "state_dict.pt"), "--out", str(out), "--errors", str(report), "-q"])
    assert rc == 1
    matrix = np.load(out)
    assert matrix.shape == (len(inputs), tiny_model.dim)
    assert (out.parent / "emb.paths.txt").read_text().splitlines() == list(map(str, inputs))
    want = embed(tiny_model, image=[inputs[0]], audio=[inputs[1]], text=["a dog barking"], depth=[inputs[4]])
    for row, kind in ((0, "image"), (1, "audio"), (3, "text"), (4, "depth")):
        assert np.abs(matrix[row] - want[kind][0]).max() < 1e-5
    assert np.isnan(matrix[2]).all() and np.isnan(matrix[5]).all()
    errors = json.loads(report.read_text())
    assert errors["embedded"] == 4 and [e["path"] for e in errors["errors"]] == [str(bad), str(tmp_path / "what.bin")]


def test_cli_parquet_and_forced_modality(files, fixture_dir, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "imu.parquet"
    rc = main(["embed", *map(str, files["imu"]), "-m", "imu", "-o", "imu.fit=crop_pad", "--model",
               "imagebind_tiny", "--weights", str(fixture_dir / "state_dict.pt"), "--out", str(out), "-q"])
    assert rc == 0
    table = pq.read_table(out)
    assert table.column("path").to_pylist() == list(map(str, files["imu"]))
    assert table.column("modality").to_pylist() == ["imu"] * len(files["imu"])
    vecs = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
