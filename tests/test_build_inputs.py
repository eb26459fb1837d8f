"""Builds against awkward inputs: file names that are not UTF-8, broken manifests, symlinked folders, builds
where nothing succeeds, empty options, empty indexes and results, and the size `index compact` reports.

Most tests use ``bindkit.build_model("imagebind_tiny")`` (random weights, no files needed); the ones that go
through the CLI need the tiny fixture weights (``fixture_dir``)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import bindkit
from bindkit.cli import main
from bindkit.errors import InputError, ModalityError
from bindkit.fileio import disk_usage
from bindkit.index import Index
from bindkit.index.build import build, scan

from index_helpers import model_args, write_imu_csvs

LATIN1_NAME = b"caf\xe9.csv"  # "café.csv" in Latin-1: not valid UTF-8


@pytest.fixture(scope="module")
def random_model():
    """The tiny architecture with random weights (deterministic enough for identity checks, needs no files)."""
    import torch

    torch.manual_seed(0)
    return bindkit.build_model("imagebind_tiny")


def _bytes_name(folder: Path, name: bytes, source: Path | None = None, data: bytes | None = None) -> str:
    """Create ``folder/name`` (raw bytes) from ``source``'s bytes or ``data``; its str path (surrogate-escaped).
    Skips the test where the file system refuses names that are not UTF-8 (macOS, Windows)."""
    raw = os.path.join(os.fsencode(folder), name)
    try:
        with open(raw, "wb") as f:
            f.write(source.read_bytes() if source is not None else data)
    except OSError as exc:
        pytest.skip(f"this file system refuses non-UTF-8 file names ({exc})")
    return os.fsdecode(raw)


def _non_utf8_imu_folder(tmp_path: Path) -> tuple[Path, str, str]:
    """data/imu with two good recordings, one named caf\\xe9.csv, and a broken one named bad\\xe9.csv."""
    data = tmp_path / "data" / "imu"
    good = write_imu_csvs(data, 2)
    odd = _bytes_name(data, LATIN1_NAME, source=good[1])
    good[1].unlink()
    bad = _bytes_name(data, b"bad\xe9.csv", data=b"gyro_x,gyro_y\nfoo,bar\n")
    return tmp_path / "data", odd, bad


# ---- item 2: file names that are not valid UTF-8 ----------------------------------------------------------------
def test_non_utf8_file_names_are_indexed_losslessly(tmp_path, random_model):
    data, odd, bad = _non_utf8_imu_folder(tmp_path)
    out = tmp_path / "index"
    report = build([data], out, random_model, progress=False)
    assert report["counts"]["embedded"] == 2 and report["items_in_index"] == 2
    assert [f["item"] for f in report["failures"]] == [bad]  # the broken one fails alone, named exactly
    assert json.loads((out / "build_report.json").read_text())["failures"][0]["item"] == bad
    with Index.open(out, model=random_model) as ix:
        hits = ix.search(imu=odd, k=2)["imu"]
        uris = {h.uri for h in hits}
        assert odd in uris
        assert os.path.isfile(odd) and os.fsencode(odd).endswith(b"/" + LATIN1_NAME)  # opens the same file
        assert {f["item"] for f in ix._store.failures()} == {bad}
        again = ix.add([odd])  # the same file added by the API is the same item
        assert again.unchanged == 1 and again.embedded == 0 and len(ix) == 2
    con = sqlite3.connect(out / "meta.sqlite")
    try:  # stored as the file name's exact bytes, not as a lossy string
        kinds = {t for (t,) in con.execute("SELECT typeof(uri) FROM items")}
        raw = con.execute("SELECT uri FROM items WHERE typeof(uri)='blob'").fetchone()[0]
    finally:
        con.close()
    assert kinds == {"text", "blob"} and raw == os.fsencode(odd)
    rerun = build([data], out, random_model, progress=False)  # the lookup finds it: nothing re-embedded
    assert rerun["counts"]["embedded"] == 0 and rerun["counts"]["unchanged"] == 2
    os.remove(odd)
    synced = build([data], out, random_model, progress=False, sync=True)
    assert synced["counts"]["removed"] == 1 and synced["items_in_index"] == 1


def test_cli_build_and_search_print_non_utf8_names(tmp_path, fixture_dir, capsys):
    data, odd, bad = _non_utf8_imu_folder(tmp_path)
    out = tmp_path / "index"
    # capsys' stream encodes strictly (like a UTF-8 terminal): a raw surrogate would fail the print
    assert main(["index", "build", str(data), "--out", str(out), "-q", *model_args(fixture_dir)]) == 0
    printed = capsys.readouterr().out
    assert "2 indexed" in printed and "1 failed" in printed and "bad\\xe9.csv (imu)" in printed
    assert main(["search", str(out), "--imu", odd, "-k", "2"]) == 0
    assert "caf\\xe9.csv" in capsys.readouterr().out
    assert main(["search", str(out), "--imu", odd, "-k", "2", "--json"]) == 0
    uris = {h["uri"] for h in json.loads(capsys.readouterr().out)["imu"]}
    assert odd in uris  # JSON keeps the name exact (\udce9 escape)
    assert main(["index", "remove", str(out), "--uri", odd]) == 0
    assert "removed 1 items" in capsys.readouterr().out


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_cli_embed_writes_non_utf8_paths_losslessly(tmp_path, fixture_dir, suffix, capsys):
    data, odd, _ = _non_utf8_imu_folder(tmp_path)
    files = sorted(str(p) for p in (data / "imu").iterdir() if not os.fsencode(p.name).startswith(b"bad"))
    out = tmp_path / f"emb{suffix}"
    assert main(["embed", *files, "--out", str(out), "-q", "--model", "imagebind_tiny",
                 "--weights", str(fixture_dir / "state_dict.pt")]) == 0
    if suffix == ".npy":
        assert np.isfinite(np.load(out)).all()
        lines = (tmp_path / "emb.paths.txt").read_bytes().splitlines()
        assert [os.fsdecode(line) for line in lines] == files
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(out)
        assert [os.fsdecode(b) for b in table.column("path_bytes").to_pylist()] == files
        shown = table.column("path").to_pylist()
        assert shown[files.index(odd)].endswith("caf\\xe9.csv") and all(table.column("ok").to_pylist())


def test_text_with_a_lone_surrogate_is_a_bad_row_not_a_crash(tmp_path, random_model):
    (tmp_path / "t.jsonl").write_text('{"text": "caf\\udce9"}\n{"text": "a dog"}\n')
    report = build([tmp_path / "t.jsonl"], tmp_path / "index", random_model, progress=False)
    assert report["items_in_index"] == 1
    (problem,) = report["failures"]
    assert problem["item"].endswith("t.jsonl:1") and "surrogate" in problem["reason"]
    with Index.open(tmp_path / "index", model=random_model) as ix:  # the API says so too
        with pytest.raises(InputError, match="surrogate"):
            ix.add(["caf\udce9"], modality="text")
        with pytest.raises(InputError, match="lone surrogate"):
            ix.add(["/tmp/caf\ud800.jpg"])  # a surrogate no file name can hold (not a PEP 383 escape)
        result = ix.add(["caf\udce9", "a cat"], modality="text", strict=False)
        assert result[0] is None and result[1] is not None and len(ix) == 2


# ---- item 7: manifests ------------------------------------------------------------------------------------------
def test_jsonl_bad_lines_are_skipped_and_listed_with_line_numbers(tmp_path, random_model):
    (tmp_path / "m.jsonl").write_bytes(
        b'{"text": "a dog", "split": "train"}\n'
        b'{"text": "a cat", \n'  # cut JSON
        b"\n"
        b'["not", "an", "object"]\n'
        b'{"text": "caf\xe9"}\n'  # Latin-1 inside a JSONL line
        b'{"text": "a car"}\n')
    report = build([tmp_path / "m.jsonl"], tmp_path / "index", random_model, progress=False)
    assert report["items_in_index"] == 2 and report["counts"]["embedded"] == 2
    problems = {f["item"].rsplit(":", 1)[1]: f for f in report["failures"]}
    assert set(problems) == {"2", "4", "5"}  # real line numbers (the blank line 3 counts)
    assert "not valid JSON" in problems["2"]["reason"]
    assert "JSON object" in problems["4"]["reason"]
    assert "not UTF-8" in problems["5"]["reason"] and "0xe9" in problems["5"]["reason"]
    assert all(f["modality"] == "manifest" for f in report["failures"])


def test_corrupt_parquet_is_refused_before_anything_is_embedded(tmp_path, random_model, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = tmp_path / "ok.jsonl"
    good.write_text('{"text": "a dog"}\n')
    pq.write_table(pa.table({"text": ["a cat", "a car"]}), tmp_path / "m.parquet")
    data = (tmp_path / "m.parquet").read_bytes()
    (tmp_path / "m.parquet").write_bytes(data[:len(data) // 2])  # truncated
    out = tmp_path / "index"
    with pytest.raises(InputError, match=r"m\.parquet.*not a readable Parquet file"):
        build([good, tmp_path / "m.parquet"], out, random_model, progress=False)
    assert not (out / "meta.sqlite").exists()
    # the CLI refuses it before loading any model (the weights path here does not even exist)
    assert main(["index", "build", str(good), str(tmp_path / "m.parquet"), "--out", str(out),
                 "--model", "imagebind_tiny", "--weights", str(tmp_path / "no-such-weights.pt")]) == 1
    err = capsys.readouterr().err
    assert "m.parquet" in err and "not a readable Parquet file" in err and "Traceback" not in err


def test_latin1_csv_manifest_is_refused_with_line_and_offset(tmp_path, random_model):
    m = tmp_path / "m.csv"
    m.write_bytes(b"text,city\na dog,Paris\na cat,Montr\xe9al\n")
    with pytest.raises(InputError) as info:
        build([m], tmp_path / "index", random_model, progress=False)
    msg = str(info.value)
    assert "m.csv" in msg and "not UTF-8" in msg and "line 3" in msg and "byte offset 33" in msg
    assert "iconv" in msg and "UTF-8" in msg
    assert not (tmp_path / "index" / "meta.sqlite").exists()


def test_csv_sources_that_are_not_manifests_are_not_decoded_whole(tmp_path):
    imu = tmp_path / "imu.csv"  # an IMU recording whose header is Latin-1 (a degree sign): not a manifest
    imu.write_bytes(b"gyro_x (\xb0/s),gyro_y,gyro_z,accl_x,accl_y,accl_z\n" + b"0,0,0,0,0,1\n" * 20)
    candidates, ignored, problems = scan([imu])
    assert [(c.kind, c.path) for c in candidates] == [("imu", str(imu))] and not problems


# ---- item 9: exit codes, counts, messages, symlinks, compact size -----------------------------------------------
def test_build_where_every_item_fails_exits_nonzero_with_modalities(tmp_path, fixture_dir, capsys):
    (tmp_path / "m.jsonl").write_text('{"path": "nope.jpg"}\n{"path": "nope.wav"}\n')
    out = tmp_path / "index"
    assert main(["index", "build", str(tmp_path / "m.jsonl"), "--out", str(out), "-q",
                 *model_args(fixture_dir)]) == 1
    captured = capsys.readouterr()
    assert "0 indexed" in captured.out and "2 failed" in captured.out and "0 skipped" in captured.out
    assert "(None)" not in captured.out
    assert "nope.jpg (image)" in captured.out and "nope.wav (audio)" in captured.out
    assert "nothing was indexed" in captured.err and "all 2 item(s) failed" in captured.err
    # a source with nothing of a known kind is an error too
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.xyz").write_text("?")
    assert main(["index", "build", str(tmp_path / "empty"), "--out", str(tmp_path / "i2"), "-q",
                 *model_args(fixture_dir)]) == 1
    assert "no file of a known kind" in capsys.readouterr().err


def test_empty_modality_is_an_error(tmp_path, random_model, capsys):
    write_imu_csvs(tmp_path / "data", 1)
    with pytest.raises(ModalityError, match="empty"):
        build([tmp_path / "data"], tmp_path / "index", random_model, modality="", progress=False)
    assert main(["index", "build", str(tmp_path / "data"), "--out", str(tmp_path / "index"),
                 "--modality", "", "--model", "imagebind_tiny"]) == 1
    assert "modality is empty" in capsys.readouterr().err
    assert not (tmp_path / "index" / "meta.sqlite").exists()
    with pytest.raises(SystemExit, match="modality is empty"):
        main(["embed", str(tmp_path / "data" / "rec000.csv"), "--out", str(tmp_path / "e.npy"), "-m", ""])


def test_symlinked_folders_are_followed_once_and_loops_reported(tmp_path, random_model):
    data = tmp_path / "data"
    write_imu_csvs(data / "imu", 2)
    write_imu_csvs(tmp_path / "elsewhere" / "imu", 1, seed=3)
    try:
        (data / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)  # outside the source
        (data / "imu" / "loop").symlink_to(data, target_is_directory=True)  # back up: a loop
        (data / "again").symlink_to(data / "imu", target_is_directory=True)  # a second way in
    except OSError as exc:
        pytest.skip(f"cannot create symlinks here ({exc})")
    report = build([data], tmp_path / "index", random_model, progress=False)
    assert report["items_in_index"] == 3 and report["counts"]["failed"] == 0
    skipped = {Path(s["item"]).name: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {"loop", "again"} and report["counts"]["skipped"] == 2
    assert all("already indexed" in reason for reason in skipped.values())
    with Index.open(tmp_path / "index") as ix:  # a folder reachable both ways is indexed under its real path
        uris = sorted(h.uri for h in ix.get(ix._store.ids()))
    assert uris == sorted([str(data / "imu" / "rec000.csv"), str(data / "imu" / "rec001.csv"),
                           str(data / "linked" / "imu" / "rec000.csv")])


def test_compact_reports_the_size_left_on_disk(tmp_path, random_model):
    write_imu_csvs(tmp_path / "data" / "imu", 12)
    out = tmp_path / "index"
    build([tmp_path / "data"], out, random_model, progress=False, optimize=False)
    with Index.open(out) as ix:
        ix.remove(ix._store.ids()[:8])
        stats = ix.compact()
        wal = out / "meta.sqlite-wal"
        assert not wal.exists() or wal.stat().st_size == 0  # VACUUM's copy of the database is folded in
    # measured after close, as `du` would: compact did not count the database twice (nor SQLite's -shm)
    assert stats["disk_bytes"] <= disk_usage(out)


def test_empty_index_and_empty_result_say_so(tmp_path, fixture_dir, tiny_model, capsys):
    out = tmp_path / "index"
    Index.create(out, tiny_model).close()
    (tmp_path / "t.jsonl").write_text('{"text": "a dog", "split": "train"}\n')
    assert main(["index", "stats", str(out)]) == 0
    assert "the index is empty" in capsys.readouterr().out
    args = ["--model", "imagebind_tiny", "--weights", str(fixture_dir / "state_dict.pt")]
    assert main(["search", str(out), "--text", "a dog", *args]) == 0
    assert "no results: the index is empty" in capsys.readouterr().out
    assert main(["index", "build", str(tmp_path / "t.jsonl"), "--out", str(out), "-q", *args]) == 0
    capsys.readouterr()
    assert main(["search", str(out), "--text", "a dog", "--where", "split=test", *args]) == 0
    assert "no results among 1 items" in capsys.readouterr().out
