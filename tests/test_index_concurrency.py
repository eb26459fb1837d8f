"""Several processes writing and reading one index at once: no call fails because another process is busy, and
the index ends holding exactly what the successful calls say they did (FAISS caches agreeing with SQLite).

Runs without ../shared: the children build the same seeded tiny random text model as the test."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from bindkit.index import Index
from bindkit.index.faiss_index import CURRENT, VectorIndex

from index_helpers import PYTHON, REPO, env

WRITERS, READERS, ROUNDS = 2, 2, 36

WRITER = textwrap.dedent("""
    import json, sys, traceback
    import numpy as np, torch, bindkit
    from bindkit.index import Index
    path, wid, rounds, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.manual_seed(0)  # the same random weights as the test's model
    model = bindkit.build_model("imagebind_tiny", modalities=["text"])
    rng = np.random.default_rng(wid)
    added, removed, errors = [], [], []
    mine = []
    index = Index.open(path, model=model)
    for r in range(rounds):
        try:
            if r % 10 == 9:  # now and then a fresh handle, as a short-lived writer process would
                index.close()
                index = Index.open(path, model=model)
            if mine and r % 3 == 2:
                victim = mine.pop(int(rng.integers(len(mine))))
                if index.remove([victim]) == 1:
                    removed.append(victim)
            else:
                texts = [f"writer {wid} round {r} item {i}" for i in range(1 + r % 3)]
                ids = index.add(texts, modality="text")
                added += [int(i) for i in ids]
                mine += [int(i) for i in ids]
            index.search(vector=rng.normal(size=index.dim).astype(np.float32), k=3)
        except Exception:
            errors.append(traceback.format_exc())
    index.close()
    json.dump({"added": added, "removed": removed, "errors": errors}, open(out, "w"))
""")

READER = textwrap.dedent("""
    import json, os, sys, time, traceback
    import numpy as np
    from bindkit.index import Index
    path, stop, out, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    rng = np.random.default_rng(seed)
    done, errors = 0, []
    while not os.path.exists(stop) or done < 5:
        try:
            index = Index.open(path, mmap=bool(done % 2))
            try:
                index.search(vector=rng.normal(size=index.dim).astype(np.float32), k=5)
                index.stats()
            finally:
                index.close()
        except Exception:
            errors.append(traceback.format_exc())
        done += 1
        time.sleep(0.02)  # leave the (two, shared) cores to the writers
    json.dump({"done": done, "errors": errors}, open(out, "w"))
""")


@pytest.fixture
def text_index(tmp_path) -> Path:
    """An index with a few texts, made with a small random text model (seeded: the children build it too)."""
    import torch

    import bindkit

    torch.manual_seed(0)
    model = bindkit.build_model("imagebind_tiny", modalities=["text"])
    path = tmp_path / "index"
    with Index.create(path, model=model) as ix:
        ix.add([f"seed text {i}" for i in range(5)], modality="text")
    return path


def _spawn(code: str, *args: object) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-c", code, *map(str, args)], env=env(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> None:
    try:
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]


@pytest.mark.slow
def test_concurrent_writers_and_readers(text_index, tmp_path):
    path = text_index
    with Index.open(path) as ix:
        start = set(ix._store.ids().tolist())
    stop = tmp_path / "stop"
    readers = [_spawn(READER, path, stop, tmp_path / f"reader{n}.json", n) for n in range(READERS)]
    writers = [_spawn(WRITER, path, n, ROUNDS, tmp_path / f"writer{n}.json") for n in range(WRITERS)]
    try:
        for proc in writers:
            _finish(proc)
        stop.touch()
        for proc in readers:
            _finish(proc)
    finally:
        stop.touch()
        for proc in readers + writers:
            if proc.poll() is None:
                proc.kill()

    reports = [json.loads((tmp_path / f"writer{n}.json").read_text()) for n in range(WRITERS)]
    reads = [json.loads((tmp_path / f"reader{n}.json").read_text()) for n in range(READERS)]
    errors = [e for r in reports + reads for e in r["errors"]]
    assert not errors, f"{len(errors)} failed calls; the first:\n{errors[0]}"
    added = {i for r in reports for i in r["added"]}
    removed = {i for r in reports for i in r["removed"]}
    assert removed <= added and len(added) == sum(len(r["added"]) for r in reports)
    expected = (start | added) - removed

    with Index.open(path) as ix:
        assert set(ix._store.ids().tolist()) == expected
        assert set(ix._caches.vi["text"].ids().tolist()) == expected
    # the cache on disk is whole and current; no temporary folder or file is left behind
    vi, _ = VectorIndex.load(path / "text")
    assert set(vi.ids().tolist()) == expected
    leftovers = [p.name for p in (path / "text").iterdir() if p.name not in (CURRENT, ".lock")
                 and p.name != json.loads((path / "text" / CURRENT).read_text())["version"]]
    assert not leftovers
    assert not [p.name for p in path.iterdir() if p.name.endswith(".tmp")]
