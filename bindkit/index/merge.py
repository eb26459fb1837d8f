"""Join partial indexes (``bindkit index build --shard I/N`` outputs) into one index.

The SQLite stores are concatenated with ``ATTACH`` (ids are deterministic, so parts of one sharded build never
collide; a collision with a different key is re-probed, a duplicate key keeps the first part's row) and the
FAISS indexes with :meth:`VectorIndex.merge`. The result is assembled in a temporary folder beside OUT (made by
``tempfile.mkdtemp``: a fresh name no one can plant a symlink at) and renamed into place, so an interrupted merge
leaves no half-written index; the folder of a merge that was killed is removed by the next merge into OUT.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import IndexStoreError
from .api import Index, writer
from .cache import Caches
from .vectors import VectorIndex
from .store import DB_NAME, FORMAT_VERSION, ItemRow, Store, from_db

_PART = re.compile(r"^part-(\d+)-of-(\d+)$")
_COLUMNS = "id, key, modality, uri, content_hash, metadata, text, added_at, file_size, file_mtime_ns, vector"


def expand_parts(parts: Sequence[str | os.PathLike]) -> list[Path]:
    """Part index folders: each argument is a part, or a folder holding ``part-I-of-N`` parts. When parts are
    named ``part-I-of-N``, all N must be present."""
    found: list[Path] = []
    for p in map(Path, parts):
        if (p / DB_NAME).is_file():
            found.append(p)
        elif p.is_dir():
            subs = sorted(d for d in p.iterdir() if _PART.match(d.name) and (d / DB_NAME).is_file())
            if not subs:
                raise IndexStoreError(f"{p} is neither an index nor a folder of part-I-of-N indexes")
            found += subs
        else:
            raise IndexStoreError(f"{p} does not exist; pass partial index folders (or their parent folder)")
    named = [(_PART.match(d.name), d) for d in found]
    totals = {int(m.group(2)) for m, _ in named if m}
    if len(totals) == 1 and all(m for m, _ in named):
        n = totals.pop()
        have = {int(m.group(1)) for m, _ in named}
        missing = sorted(set(range(n)) - have)
        if missing:
            raise IndexStoreError(f"merge: part(s) {missing} of {n} are missing (found {sorted(have)}); finish those "
                                  "shards first")
    return sorted(set(found), key=lambda d: str(d))


def _model_of(part: Path) -> dict[str, Any]:
    store = Store(part)
    try:
        model = store.get_info("model")
        if model is None:
            raise IndexStoreError(f"{part} holds an unfinished index")
        return model
    finally:
        store.close()


def _check_same_model(parts: list[Path]) -> dict[str, Any]:
    first = _model_of(parts[0])
    merged = dict(first, fingerprints=dict(first["fingerprints"]))
    for part in parts[1:]:
        other = _model_of(part)
        if (other["card"], other["dim"]) != (first["card"], first["dim"]):
            raise IndexStoreError(f"cannot merge {parts[0]} (model {first['card']!r}, dim {first['dim']}) with {part} "
                                  f"(model {other['card']!r}, dim {other['dim']}): vectors of different models never mix")
        for enc, fp in other["fingerprints"].items():
            if merged["fingerprints"].setdefault(enc, fp) != fp:
                raise IndexStoreError(f"cannot merge {parts[0]} with {part}: their {enc} encoders have different "
                                      f"weights ({merged['fingerprints'][enc][:16]} vs {fp[:16]})")
    return merged


def _copy_part(store: Store, part: Path) -> bool:
    """Append one part's rows to ``store``; returns True when some row needed a new id (a collision)."""
    conn = store.conn
    conn.execute("ATTACH DATABASE ? AS part", (str(part / DB_NAME),))
    try:
        with store.transaction():
            clash = conn.execute(
                f"SELECT {_COLUMNS} FROM part.items p WHERE EXISTS "
                "(SELECT 1 FROM main.items m WHERE m.id = p.id OR m.key = p.key)").fetchall()
            conn.execute(
                f"INSERT INTO main.items({_COLUMNS}) SELECT {_COLUMNS} FROM part.items p WHERE NOT EXISTS "
                "(SELECT 1 FROM main.items m WHERE m.id = p.id OR m.key = p.key)")
            conn.execute("INSERT OR REPLACE INTO main.failures SELECT * FROM part.failures")
            row = conn.execute("SELECT value FROM part.state WHERE name='embedded'").fetchone()
            store.bump_counter("embedded", int(row[0]) if row else 0)
            known = store.lookup([from_db(r[1]) for r in clash])
            rows = [ItemRow(key=from_db(r[1]), modality=r[2], uri=from_db(r[3]), content_hash=r[4],
                            metadata=json.loads(r[5]), text=r[6], file_size=r[8], file_mtime_ns=r[9],
                            vector=np.frombuffer(r[10], "<f2").astype(np.float32))
                    for r in clash if from_db(r[1]) not in known]  # a key already merged keeps the first part's row
            if rows:
                store.upsert(rows, store.version())
    finally:
        conn.execute("DETACH DATABASE part")
    return bool(clash)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid < 2**31  # another user's process: alive
    return True


def clean_stale_merges(out: str | os.PathLike) -> list[Path]:
    """Remove the temporary folders (``.OUT.merging-<pid>-*`` beside ``out``) of merges whose process is gone (a
    merge killed with -9 leaves its folder behind). Only real folders owned by this user are removed, never a
    symlink or what it points to; a live merge's folder is kept. Returns the folders removed."""
    out = Path(out)
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.merging-(\d+)(-.*)?$")
    removed = []
    try:
        names = os.listdir(out.parent)
    except OSError:
        return removed
    for name in names:
        m = pattern.match(name)
        if not m or _alive(int(m.group(1))):
            continue
        path = out.parent / name
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
            continue  # a symlink, a file, or someone else's: not ours to delete
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def merge(parts: Sequence[str | os.PathLike], out: str | os.PathLike, *, optimize: bool = True,
          index_key: str | None = None, memory_budget_bytes: int | None = None, recall_target: float = 0.95,
          progress: bool = False) -> dict[str, Any]:
    """Merge partial indexes into a new index at ``out``; returns its :meth:`Index.stats`.

    Raises:
        IndexStoreError: ``out`` already exists (and is not empty), a part is missing, or parts were built
            with different models.
    """
    dirs = expand_parts(parts)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise IndexStoreError(f"{out} already exists; merge into a new folder (or delete it first)")
    model = _check_same_model(dirs)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_merges(out)
    # a fresh folder of an unpredictable name (mkdtemp: created, never an existing path or a planted symlink)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.merging-{os.getpid()}-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the index is an ordinary folder
    try:
        store = Store(tmp, create=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        with store.transaction():
            store.set_info("format_version", FORMAT_VERSION)
            store.set_info("dim", int(model["dim"]))
            store.set_info("model", model)
            store.set_info("indexes", {})
        clashed = False
        for part in dirs:
            clashed |= _copy_part(store, part)
        with store.transaction():
            version = store.bump_counter("version")
        caches = Caches(tmp, store, int(model["dim"]))
        kinds = store.modality_counts()
        pieces: dict[str, list[VectorIndex]] = {kind: [] for kind in kinds}
        if not clashed:
            for part in dirs:
                with Index.open(part) as p_index:  # repairs a stale part cache from its SQLite first
                    for kind, vi in writer(p_index).caches.vi.items():
                        if len(vi) and kind in pieces:
                            pieces[kind].append(vi)
        for kind, n in kinds.items():
            ok = not clashed and sum(len(v) for v in pieces[kind]) == n
            caches.vi[kind] = VectorIndex.merge(pieces[kind]) if ok else caches.rebuild(kind)
        caches.synced = version
        caches.save(kinds)
    except BaseException:
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    store.close()
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    with Index.open(out) as index:
        if optimize:
            index.optimize(memory_budget_bytes=memory_budget_bytes, index_key=index_key, recall_target=recall_target,
                           progress=progress)
        return index.stats()
