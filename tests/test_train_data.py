"""Bad input for bindkit train: clear errors before training starts, or a few bad rows skipped and counted;
corrupt media found at load time are skipped and counted, never a crash mid-epoch."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch

import bindkit
from bindkit.train.data import ManifestError, read_manifest, split
from bindkit.cli import main
from train_helpers import tiny_card, toy_world


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    toy_world(root, n=40)
    tiny_card(root / "tiny.json")
    return root


def _write(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _rows(data):
    return list(csv.reader(open(data / "image_text.csv")))[1:]


def test_manifest_formats_and_relative_paths(data, tmp_path):
    m = read_manifest(data / "image_text.csv")
    assert (m.a, m.b, len(m.rows)) == ("image", "text", 40) and m.rows[0][0].startswith(str(data))
    rows = _rows(data)
    jsonl = data / "pairs.jsonl"
    jsonl.write_text("".join(json.dumps({"vision": i, "text": t, "id": n}) + "\n" for n, (i, t) in enumerate(rows)))
    m = read_manifest(jsonl)
    assert (m.a, m.b, len(m.rows), m.ignored_columns) == ("image", "text", 40, ["id"])
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": [t for _, t in rows], "image": [i for i, _ in rows]}), data / "pairs.parquet")
    m = read_manifest(data / "pairs.parquet")
    assert (m.a, m.b) == ("text", "image") and m.rows[0][1] == m.rows[0][1]


@pytest.mark.parametrize("header, rows, message", [
    (["image", "txt"], [["media/img000.png", "a red square"]], r"did you mean 'text'\?"),
    (["image", "caption"], [["media/img000.png", "a red square"]], r"two columns named by different modalities.*"
                                                                    r"it has image.*ignored: caption"),
    (["image", "text"], [], "has no rows"),
    (["image", "text", "audio"], [["a", "b", "c"]], "exactly two columns"),
])
def test_bad_manifest_columns_and_rows_are_refused_with_the_reason(data, header, rows, message):
    with pytest.raises(ManifestError, match=message):
        read_manifest(_write(data / "bad.csv", header, rows))


def test_missing_files_fail_before_training_unless_a_few(data):
    rows = _rows(data)
    many = [[("gone/" + i if n % 3 == 0 else i), t] for n, (i, t) in enumerate(rows)]
    with pytest.raises(ManifestError, match=r"14 of 40 rows are unusable — row 2: image file 'gone/media/img000.png' "
                                            r"not found.*relative to the manifest's folder.*--max-bad-rows"):
        read_manifest(_write(data / "many_missing.csv", ["image", "text"], many))
    few = [list(r) for r in rows]
    few[5][0] = "media/nope.png"
    few[9][1] = " "
    m = read_manifest(_write(data / "few_missing.csv", ["image", "text"], few), max_bad_fraction=0.05)
    assert len(m.rows) == 38 and [n for n, _ in m.bad] == [7, 11] and "empty 'text'" in m.bad[1][1]


def test_empty_split_is_refused(data):
    m = read_manifest(_write(data / "two.csv", ["image", "text"], _rows(data)[:2]))
    with pytest.raises(ManifestError, match="training split is empty or has one pair.*--val-split"):
        split(m, 0.5, seed=0)


def test_cli_reports_bad_input_as_an_error_not_a_traceback(data, capsys):
    assert main(["train", str(data / "nothere.csv"), "--card", str(data / "tiny.json"), "--out", str(data / "x")]) == 1
    err = capsys.readouterr().err
    assert "error: manifest" in err and "does not exist" in err and not (data / "x").exists()
    with pytest.raises(SystemExit) as exc:
        main(["train", str(data / "image_text.csv"), "--freeze", "smell", "--out", str(data / "x")])
    assert exc.value.code == 2 and "unknown modality 'smell'" in capsys.readouterr().err


def test_corrupt_media_are_skipped_and_counted_never_a_crash(data, tmp_path):
    root = tmp_path / "corrupt"
    shutil.copytree(data / "media", root / "media")
    rows = _rows(data)
    (root / "media" / "img003.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (root / "media" / "img007.png").write_bytes(b"")
    manifest = _write(root / "pairs.csv", ["image", "text"], rows)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = bindkit.train(manifest, root / "out", card=str(data / "tiny.json"), max_steps=4, batch_size=20,
                            val_split=0, log=lambda msg: None)
    finally:
        torch.set_num_threads(before)
    assert res.finished and res.step == 4
    entry = res.record["data"][0]
    assert entry["skipped_at_load"] == 2 and entry["skipped_at_validation"] == 0
    assert any("img003.png" in e and "not a readable image" in e for e in entry["skipped_examples"])
    assert bindkit.load_model(root / "out").modalities == ("vision", "text")
