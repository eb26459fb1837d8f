"""Offline builds through the CLI: resume after SIGKILL, incremental reruns, corrupt files, manifests,
shards + merge (also under torchrun), search/stats/remove/compact commands."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from bindkit.cli import main
from bindkit.index import Index
from bindkit.index.build import build

from index_helpers import PYTHON, REPO, assert_consistent, cli, env, model_args, samples_index, write_imu_csvs


def _counter(db: Path, name: str = "embedded") -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.5)
        try:
            row = con.execute("SELECT value FROM state WHERE name=?", (name,)).fetchone()
        finally:
            con.close()
        return int(row[0]) if row else 0
    except sqlite3.Error:  # not created yet
        return 0


def _report(out: Path) -> dict:
    return json.loads((out / "build_report.json").read_text())


def _ids_and_vectors(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, list]]:
    with Index.open(path) as ix:
        out = {}
        for kind in ix.modalities:
            ids, vecs = ix.vectors(kind)
            out[kind] = (ids, vecs, [h.uri for h in ix.get(ids)])
        return out


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny_model, samples_dir) -> Path:
    """The reference: all samples built in one process (exact, no optimisation)."""
    return samples_index(tmp_path_factory, tiny_model, samples_dir)


@pytest.mark.slow
def test_killed_build_resumes_without_embedding_twice(tmp_path, fixture_dir):
    n = 80
    write_imu_csvs(tmp_path / "data" / "imu", n)
    out = tmp_path / "index"
    args = ["index", "build", tmp_path / "data", "--out", out, "--batch-size", "2", "--no-optimize", "-q",
            *model_args(fixture_dir)]
    proc = subprocess.Popen([PYTHON, "-m", "bindkit", *map(str, args)], env=env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while proc.poll() is None and _counter(out / "meta.sqlite") < 10:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the build finished before it could be killed"
    done = _counter(out / "meta.sqlite")
    assert 10 <= done < n
    with Index.open(out) as ix:  # a killed build leaves an openable, consistent index
        assert len(ix) == done
        assert_consistent(ix)
    cli(*args)
    report = _report(out)
    assert report["counts"]["embedded"] == n - done and report["counts"]["unchanged"] == done
    with Index.open(out) as ix:
        assert len(ix) == n and ix._store.embedded_total() == n  # each item embedded exactly once
        uris = [h.uri for h in ix.get(ix.vectors("imu")[0])]
        assert sorted(uris) == sorted(str(p) for p in (tmp_path / "data" / "imu").glob("*.csv"))
        assert_consistent(ix)


def test_incremental_rebuild_and_sync(tmp_path, tiny_model):
    files = write_imu_csvs(tmp_path / "data" / "imu", 6)
    out = tmp_path / "index"
    build([tmp_path / "data"], out, tiny_model, progress=False)
    with Index.open(out) as ix:
        before = {h.uri: h.id for h in ix.get(ix.vectors("imu")[0])}
    write_imu_csvs(tmp_path / "new" / "imu", 1, seed=7)[0].rename(tmp_path / "data" / "imu" / "zz_new.csv")
    files[1].write_text(files[1].read_text().replace("gyro_x", "gyro_x", 1) + "0,0,0,0,0,0\n")  # changed content
    files[2].unlink()
    r = build([tmp_path / "data"], out, tiny_model, progress=False)
    assert r["counts"]["embedded"] == 2 and r["counts"]["new"] == 1 and r["counts"]["changed"] == 1
    assert r["counts"]["unchanged"] == 4 and r["counts"]["removed"] == 0 and r["items_in_index"] == 7
    r = build([tmp_path / "data"], out, tiny_model, progress=False, sync=True)
    assert r["counts"]["embedded"] == 0 and r["counts"]["removed"] == 1 and r["items_in_index"] == 6
    assert r["embedded_total"] == 8
    with Index.open(out) as ix:
        after = {h.uri: h.id for h in ix.get(ix.vectors("imu")[0])}
        assert_consistent(ix)
    assert str(files[2]) not in after
    assert all(after[u] == before[u] for u in before if u != str(files[2]))  # the changed file kept its id
    os.utime(files[3], ns=(1_000_000_000, 1_000_000_000))  # same content, new mtime: not re-embedded ...
    r = build([tmp_path / "data"], out, tiny_model, progress=False)
    assert r["counts"]["embedded"] == 0 and r["counts"]["unchanged"] == 6
    with Index.open(out) as ix:  # ... and its new mtime is recorded, so the next scan need not hash it
        assert ix._store.lookup([str(files[3])])[str(files[3])][4] == 1_000_000_000


def test_build_with_corrupt_files_completes_and_reports_them(tmp_path, samples_dir, fixture_dir, capsys):
    data = tmp_path / "data"
    for kind, name in (("image", "dog.jpg"), ("audio", "car.wav"), ("thermal", "190001.jpg")):
        (data / kind).mkdir(parents=True, exist_ok=True)
        shutil.copy(samples_dir / kind / name, data / kind / name)
    (data / "image" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated nonsense")
    (data / "audio" / "empty.wav").write_bytes(b"")
    (data / "video").mkdir()
    (data / "video" / "cut.mp4").write_bytes((samples_dir / "video" / "wind_noise.mp4").read_bytes()[:2000])
    (data / "imu").mkdir()
    (data / "imu" / "bad.csv").write_text("gyro_x,gyro_y\nfoo,bar\n")
    (data / "notes.xyz").write_text("not a known kind")
    out = tmp_path / "index"
    assert main(["index", "build", str(data), "--out", str(out), "-q", *model_args(fixture_dir)]) == 0
    printed = capsys.readouterr().out
    report = _report(out)
    bad = {Path(f["item"]).name: f["reason"] for f in report["failures"]}
    assert set(bad) == {"corrupt.jpg", "empty.wav", "cut.mp4", "bad.csv"}
    assert all(reason for reason in bad.values())
    assert report["counts"]["embedded"] == 3 and report["counts"]["ignored"] == 1
    assert "corrupt.jpg" in printed and "4 failed" in printed
    with Index.open(out) as ix:
        assert len(ix) == 3 and sorted(ix.modalities) == ["audio", "image", "thermal"]
        assert {Path(f["item"]).name for f in ix._store.failures()} == set(bad)
    # a rerun retries the bad files but re-embeds none of the good ones
    assert main(["index", "build", str(data), "--out", str(out), "-q", *model_args(fixture_dir)]) == 0
    assert _report(out)["counts"]["embedded"] == 0 and _report(out)["counts"]["failed"] == 4


def test_manifests_with_metadata_and_texts(tmp_path, samples_dir, fixture_dir, tiny_model, capsys):
    img = samples_dir / "image"
    (tmp_path / "m.csv").write_text(
        "path,modality,split,year\n"
        f"{img / 'dog.jpg'},,train,2020\n"
        f"{img / 'car.jpg'},image,test,2021\n"
        f"{samples_dir / 'depth' / '010002.jpg'},depth,test,2019\n")
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"text": "a dog on the grass", "split": "train", "year": 2020},
        {"text": "a red car", "split": "test", "year": 2022, "tags": ["a", "b"]},
        {"split": "test", "note": "a row with neither path nor text"}]) + "\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"path": ["audio/bird.wav"], "split": ["test"], "year": [2023]}),
                   tmp_path / "a.parquet")
    shutil.copytree(samples_dir / "audio", tmp_path / "audio")
    out = tmp_path / "index"
    sources = [tmp_path / "m.csv", tmp_path / "t.jsonl", tmp_path / "a.parquet"]
    assert main(["index", "build", *map(str, sources), "--out", str(out), "-q", *model_args(fixture_dir)]) == 0
    (problem,) = _report(out)["failures"]  # the bad row is reported, the build went on
    assert problem["item"] == f"{tmp_path / 't.jsonl'}:3" and "neither" in problem["reason"]
    with Index.open(out) as ix:
        assert ix._store.modality_counts() == {"image": 2, "depth": 1, "text": 2, "audio": 1}
        metas = {h.uri or h.text: h.metadata for h in ix.get(ix._store.ids())}
    assert metas[str(img / "car.jpg")] == {"split": "test", "year": 2021}  # CSV numbers parsed
    assert metas["a red car"] == {"split": "test", "year": 2022, "tags": ["a", "b"]}
    assert metas[str(tmp_path / "audio" / "bird.wav")] == {"split": "test", "year": 2023}
    with Index.open(out, model=tiny_model) as ix:  # a manifest text and the same text added by API are one item
        again = ix.add(["a red car"], modality="text")
        assert again.embedded == 0 and again.unchanged == 1 and len(ix) == 6
    capsys.readouterr()
    # CLI search: --where filters before ranking, --modality selects result kinds, --json prints hits
    assert main(["search", str(out), "--text", "a dog", "-k", "5", "--modality", "image,text,audio",
                 "--where", "split=test", "--where", "year>=2021", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {k: len(v) for k, v in res.items()} == {"image": 1, "text": 1, "audio": 1}
    assert all(h["metadata"]["split"] == "test" and h["metadata"]["year"] >= 2021 for v in res.values() for h in v)
    assert main(["search", str(out), "--image", str(img / "dog.jpg"), "--text", "a dog", "--weight", "text=0.5",
                 "-k", "1"]) == 0
    text = capsys.readouterr().out
    assert "== image (1 hits)" in text and "== depth (1 hits)" in text


def test_stats_remove_compact_commands(one_process, tmp_path, capsys):
    path = tmp_path / "copy"
    shutil.copytree(one_process, path)
    with Index.open(path) as ix:
        ids = ix.vectors("depth")[0]
        n = len(ix)
    assert main(["index", "stats", str(path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["count"] == n and stats["modalities"]["depth"]["count"] == len(ids)
    assert main(["index", "remove", str(path), "--id", str(ids[0]), "--id", str(ids[1])]) == 0
    assert "removed 2 items" in capsys.readouterr().out
    assert main(["index", "remove", str(path), "--uri", "/no/such/file.jpg"]) == 0
    assert "removed 0 items" in capsys.readouterr().out
    assert main(["index", "compact", str(path)]) == 0
    assert main(["index", "stats", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"items    {n - 2}" in out
    with Index.open(path) as ix:
        assert len(ix) == n - 2 and ix.get(ids[:2]) == [None, None]
        assert np.array_equal(ix.vectors("depth")[0], ids[2:])
        assert_consistent(ix)
    assert main(["index", "remove", str(path)]) == 1  # nothing selected: an error, not "remove all"


def _assert_same(a: Path, b: Path) -> None:
    x, y = _ids_and_vectors(a), _ids_and_vectors(b)
    assert sorted(x) == sorted(y)
    for kind in x:
        assert np.array_equal(x[kind][0], y[kind][0]), kind
        assert x[kind][2] == y[kind][2]
        assert np.allclose(x[kind][1], y[kind][1], atol=2e-3), kind


def test_shards_then_merge_equal_one_process_build(one_process, tmp_path, samples_dir, fixture_dir):
    out = tmp_path / "parts"
    for i in range(3):
        assert main(["index", "build", str(samples_dir), "--out", str(out), "--shard", f"{i}/3", "-q",
                     *model_args(fixture_dir)]) == 0
    sizes = [len(Index.open(out / f"part-{i}-of-3")) for i in range(3)]
    assert sum(sizes) == len(Index.open(one_process)) and min(sizes) > 0
    shutil.rmtree(out / "part-2-of-3" / "image", ignore_errors=True)  # a part with a lost cache still merges
    with pytest.raises(Exception, match="missing"):
        from bindkit.index.merge import merge

        merge([out / "part-0-of-3", out / "part-1-of-3"], tmp_path / "bad")
    assert main(["index", "merge", str(out), "--out", str(tmp_path / "merged")]) == 0
    _assert_same(one_process, tmp_path / "merged")
    with Index.open(tmp_path / "merged") as ix:
        assert_consistent(ix)
    assert main(["index", "merge", str(out), "--out", str(tmp_path / "merged")]) == 1  # refuses to overwrite


@pytest.mark.slow
def test_torchrun_two_processes_shard_and_merge(one_process, tmp_path, samples_dir, fixture_dir):
    torchrun = Path(PYTHON).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip(f"{torchrun} not found")
    out = tmp_path / "parts"
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "bindkit", "index", "build", str(samples_dir),
         "--out", str(out), "-q", *model_args(fixture_dir)],
        capture_output=True, text=True, timeout=600, env=env(), cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["part-0-of-2", "part-1-of-2"]
    assert all(_report(out / p)["shard"] == s for p, s in (("part-0-of-2", "0/2"), ("part-1-of-2", "1/2")))
    cli("index", "merge", out, "--out", tmp_path / "merged")
    _assert_same(one_process, tmp_path / "merged")
