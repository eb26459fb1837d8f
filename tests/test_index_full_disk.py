"""A full disk: writes fail with a bindkit error naming the path and the space needed, leave no temporaries,
and lose nothing committed; reads need no free space; once space is freed the same command resumes.

Two ways to run out of space: a file-size limit (``RLIMIT_FSIZE``: writes fail with EFBIG, which SQLite reports
as "database or disk is full"), which works for any user on any Linux, and, where this process may mount
(root in CI), a real 300 KB tmpfs (ENOSPC)."""

from __future__ import annotations

import json
import subprocess
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bindkit.index import Index

from index_helpers import PYTHON, REPO, cli, env
from tiny_random import save_weights, text_index, text_model

LIMITED = textwrap.dedent("""
    import json, resource, signal, sys, warnings
    import numpy as np
    from bindkit.errors import StorageFullError
    from bindkit.index import Index
    sys.path.insert(0, sys.argv[3])
    from tiny_random import text_model
    path, limit = sys.argv[1], int(sys.argv[2])
    model = text_model()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    warnings.simplefilter("ignore")  # post-commit cache saves may fail too: they only warn
    ids, error = [], None
    with Index.open(path, model=model) as ix:
        for batch in range(200):
            try:
                ids += [int(i) for i in ix.add([f"text {batch} {i} " + "x" * 200 for i in range(20)],
                                               modality="text", metadata={"batch": batch})]
            except StorageFullError as exc:
                error = str(exc)
                break
        # reads need no space
        n = len(ix.search(vector=np.ones(ix.dim, np.float32), k=3)["text"])
        count = ix.stats()["count"]
    with Index.open(path) as ix:  # opening again, still under the limit
        reopened = len(ix)
    print(json.dumps({"ids": ids, "error": error, "hits": n, "count": count, "reopened": reopened}))
""")


def _temporaries(path: Path) -> list[str]:
    return [str(p) for p in path.rglob("*") if p.name.endswith(".tmp")]


def test_file_size_limit_fails_clearly_keeps_commits_and_resumes(tmp_path):
    path = text_index(tmp_path / "index", ["seed one", "seed two"])
    proc = subprocess.run([PYTHON, "-c", LIMITED, str(path), str(96 * 1024), str(Path(__file__).parent)],
                          capture_output=True, text=True, env=env(), cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["error"], "the file-size limit was never reached"
    assert "no space to write" in out["error"] and str(path) in out["error"] and "needs about" in out["error"]
    assert out["ids"], "nothing fitted before the limit"
    assert out["hits"] == 3 and out["count"] == 2 + len(out["ids"]) == out["reopened"]
    assert not _temporaries(path)
    with Index.open(path, model=text_model()) as ix:  # space is back: everything committed is there, and more fits
        assert set(ix._store.ids().tolist()) >= set(out["ids"]) and len(ix) == 2 + len(out["ids"])
        assert np.array_equal(np.sort(ix._caches.vi["text"].ids()), ix._store.ids("text"))
        ix.add(["after the limit"], modality="text")
        assert len(ix) == 3 + len(out["ids"])


def _mount_tmpfs(where: Path, size: str) -> bool:
    try:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.mark.slow
def test_full_tmpfs_build_then_search_stats_and_resume(tmp_path):
    mnt = Path(tempfile.mkdtemp(dir=tmp_path))
    if not _mount_tmpfs(mnt, "300k"):
        pytest.skip("cannot mount a small tmpfs here (needs root with mount rights); the file-size-limit test "
                    "covers a full disk instead")
    try:
        texts = tmp_path / "texts.jsonl"
        texts.write_text("".join(json.dumps({"text": f"caption {i} of a small thing", "n": i}) + "\n"
                                 for i in range(2000)))
        weights = save_weights(tmp_path / "tiny.pt", ["vision", "text", "audio", "depth", "thermal", "imu"])
        index = mnt / "index"
        build = ["index", "build", str(texts), "--out", str(index), "--model", "imagebind_tiny", "--weights",
                 str(weights), "--no-optimize", "--quiet"]
        first = cli(*build, check=False)
        assert first.returncode != 0
        assert "error: no space to write" in first.stderr and "needs about" in first.stderr, first.stderr[-3000:]
        assert "Traceback" not in first.stderr
        assert not _temporaries(mnt)
        # reads need no free space
        stats = cli("index", "stats", str(index), "--json")
        stored = json.loads(stats.stdout)["count"]
        assert 0 < stored < 2000
        hits = cli("search", str(index), "--text", "caption 7 of a small thing", "-k", "1", "--json")
        assert len(json.loads(hits.stdout)["text"]) == 1
        for _ in range(2):  # failing again leaves nothing behind either
            assert cli(*build, check=False).returncode != 0
            assert not _temporaries(mnt)
        # free space: the same build resumes, embedding only what is missing
        subprocess.run(["mount", "-o", "remount,size=20m", str(mnt)], check=True)
        report = json.loads(cli(*build, "--json").stdout)
        assert report["items_in_index"] == 2000 and report["counts"]["unchanged"] >= stored
        assert not _temporaries(mnt)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
