"""Read-only indexes: opened read-only (``read_only=True``, ``mmap=True``) or lying where this process cannot
write (a read-only mount, a folder or a ``meta.sqlite`` without write permission), an index searches and
reports stats without writing a byte, repairs stale caches in memory, and refuses writes with a clear error.

Permissions do not stop root, so under root (as CI runs) the folder is made truly read-only with a read-only
bind mount when this machine allows mounts, else the checks run as ``nobody`` through ``setpriv``; only where
neither is possible do those tests skip, saying why. The ``read_only=True`` tests run everywhere."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from bindkit.errors import ReadOnlyIndexError
from bindkit.index import Index

from index_helpers import PYTHON, REPO, env
from tiny_random import save_weights, text_index, text_model

TEXTS = ["a dog barking", "rain on a roof", "a red car", "a violin solo", "waves on a beach"]


def _tree(path: Path) -> dict[str, str]:
    """Every file under ``path`` -> hash of its bytes (what a read must leave alone)."""
    return {str(p.relative_to(path)): hashlib.blake2b(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith("meta.sqlite-")}


def _stale(path: Path) -> None:
    """Leave the text cache behind SQLite (as a crash between commit and cache save does)."""
    with Index.open(path, model=text_model()) as ix:
        ix._commit([], delete=[int(ix._store.ids()[0])], save=False)
        ix._caches.dirty.clear()  # do not let close() save it: the cache on disk keeps the removed item


def test_read_only_flag_reads_without_writing_and_refuses_writes(tmp_path):
    path = text_index(tmp_path / "index", TEXTS)
    _stale(path)
    before = _tree(path)
    model = text_model()
    with pytest.warns(RuntimeWarning, match="read-only"):  # the stale cache is rebuilt in memory only
        ix = Index.open(path, model=model, read_only=True)
    with ix:
        assert len(ix) == len(TEXTS) - 1
        hits = ix.search(text="a red car", k=2)["text"]
        assert hits[0].text == "a red car"
        assert ix.stats()["count"] == len(TEXTS) - 1
        for write in (lambda: ix.add(["new text"], modality="text"), lambda: ix.remove([hits[0].id]),
                      lambda: ix.optimize(index_key="Flat"), lambda: ix.compact()):
            with pytest.raises(ReadOnlyIndexError, match="read-only"):
                write()
    assert _tree(path) == before  # caches, manifest and database untouched
    with Index.open(path) as ix:  # and the index is still writable by others
        assert len(ix) == len(TEXTS) - 1


def test_mmap_open_is_read_only(tmp_path):
    path = text_index(tmp_path / "index", TEXTS)
    before = _tree(path)
    with Index.open(path, mmap=True) as ix:
        assert len(ix.search(vector=np.ones(ix.dim, np.float32), k=3)["text"]) == 3
        with pytest.raises(ReadOnlyIndexError, match="read-only.*mmap"):
            ix.remove([int(ix._store.ids()[0])])
    assert _tree(path) == before


# ---- a folder this process cannot write -------------------------------------------------------------------------
CHECK = textwrap.dedent("""
    import sys, numpy as np
    from bindkit.errors import ReadOnlyIndexError
    from bindkit.index import Index
    path, n = sys.argv[1], int(sys.argv[2])
    for mmap in (False, True):
        with Index.open(path, mmap=mmap) as ix:
            assert len(ix) == n and ix.stats()["count"] == n
            assert len(ix.search(vector=np.ones(ix.dim, np.float32), k=n)["text"]) == n
            try:
                ix.remove([int(ix._store.ids()[0])])
            except ReadOnlyIndexError as exc:
                assert "read-only" in str(exc), exc
            else:
                raise AssertionError("remove() on a read-only index did not fail")
    try:
        Index.open(path, read_only=False)
    except ReadOnlyIndexError as exc:
        assert "read-only" in str(exc)
    else:
        raise AssertionError("read_only=False on a read-only index did not fail")
    print("ok")
""")


def _can_mount() -> bool:
    probe = Path(tempfile.mkdtemp())
    try:
        ok = subprocess.run(["mount", "--bind", str(probe), str(probe)], capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", str(probe)], capture_output=True)
        return ok
    except OSError:
        return False
    finally:
        probe.rmdir()


def _nobody_can_run() -> bool:
    if not shutil.which("setpriv"):
        return False
    try:
        return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", PYTHON, "-c",
                               "import bindkit.index"], env=env(HOME="/tmp"), cwd="/",
                              capture_output=True).returncode == 0
    except OSError:
        return False


@contextmanager
def _read_only_view(path: Path, what: str) -> Iterator[list[str]]:
    """Make ``path`` (``what``: the whole "folder" or only its "db") unwritable for the commands run with the
    prefix this yields; restore it afterwards."""
    target = path if what == "folder" else path / "meta.sqlite"
    if os.geteuid() != 0:
        mode = target.stat().st_mode
        targets = [target] + (sorted(target.rglob("*")) if target.is_dir() else [])
        for p in targets:
            p.chmod(p.stat().st_mode & ~0o222)
        try:
            yield []
        finally:
            for p in targets:
                p.chmod(p.stat().st_mode | 0o200)
            target.chmod(mode)
    elif _can_mount():  # root ignores permissions, not a read-only mount
        subprocess.run(["mount", "--bind", str(target), str(target)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], check=True)
            yield []
        finally:
            subprocess.run(["umount", str(target)], check=True)
    elif _nobody_can_run():  # root without mounts: run the checks as nobody on an unwritable copy
        for p in [path] + sorted(path.rglob("*")):
            p.chmod(0o755 if p.is_dir() else 0o644)
        if what == "db":
            (path / "meta.sqlite").chmod(0o444)
        else:
            for p in [path] + sorted(path.rglob("*")):
                p.chmod(p.stat().st_mode & ~0o222)
        try:
            yield ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        finally:
            for p in [path] + sorted(path.rglob("*")):
                p.chmod(p.stat().st_mode | 0o200)
    else:
        pytest.skip("running as root on a machine that allows neither mounts nor setpriv to nobody, so no "
                    "folder can be made read-only here (the read_only=True tests still ran)")


@pytest.mark.parametrize("what", ["folder", "db"])
def test_unwritable_index_searches_and_refuses_writes(what):
    # a world-readable place, so that `nobody` can reach it when that is how the folder is made read-only
    base = Path(tempfile.mkdtemp(prefix="bindkit-ro-"))
    base.chmod(0o755)
    try:
        path = text_index(base / "index", TEXTS)
        _stale(path)  # the cache must be repaired, in memory, without writing
        weights = save_weights(base / "tiny.pt")
        before = _tree(path)
        with _read_only_view(path, what) as prefix:
            run = lambda *args: subprocess.run(prefix + [PYTHON, *args], capture_output=True, text=True,  # noqa: E731
                                               env=env(HOME=str(base)), cwd=REPO, timeout=300)
            check = run("-c", CHECK, str(path), str(len(TEXTS) - 1))
            assert check.returncode == 0 and "ok" in check.stdout, check.stderr[-3000:]
            stats = run("-m", "bindkit", "index", "stats", str(path))
            assert stats.returncode == 0, stats.stderr[-3000:]
            assert f"items    {len(TEXTS) - 1}" in stats.stdout
            search = run("-m", "bindkit", "search", str(path), "--text", "a red car", "-k", "1",
                         "--weights", str(weights))
            assert search.returncode == 0, search.stderr[-3000:]
            assert "'a red car'" in search.stdout
            remove = run("-m", "bindkit", "index", "remove", str(path), "--id", "1")
            assert remove.returncode == 1 and "error:" in remove.stderr and "read-only" in remove.stderr
            assert "Traceback" not in remove.stderr
        assert _tree(path) == before
    finally:
        shutil.rmtree(base, ignore_errors=True)
