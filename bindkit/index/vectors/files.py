"""Saving, loading and merging :class:`~bindkit.index.vectors.index.VectorIndex` folders.

Layout of a modality folder::

    CURRENT.json          {"format", "version", "stamp", "dim", "key", "params", "recall@10", "count", "raw", ...}
    v<stamp>-<rand>/      index.faiss (+ raw.f16, raw_ids.npy for lossy keys; only those two for "exact:raw-f16")

A save writes a fresh version folder, renames it into place, then swaps ``CURRENT.json`` with ``os.replace``: a
crash at any point leaves the previous version readable. Older version folders are deleted afterwards (a process
still mapping them keeps its open files). Saves of several processes take turns under the folder's lock file
(:mod:`bindkit.index.diskio`), so a clean-up never deletes another writer's folder in progress; readers take no
lock and re-read ``CURRENT.json`` when the version they were opening was replaced meanwhile.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TypeVar

import faiss
import numpy as np

from bindkit.errors import IndexStoreError
from bindkit.fileio import fsync_dir
from bindkit.index.diskio import folder_lock, is_out_of_space, storage_full
from bindkit.index.vectors.core import CURRENT, FORMAT_VERSION, INDEX_FILE, VectorIndexBase
from bindkit.index.vectors.faiss_keys import _set_direct_map, kind_of
from bindkit.index.vectors.raw import IDS_FILE, RAW_FILE, RawStore

_V = TypeVar("_V", bound=VectorIndexBase)

_LOAD_TRIES = 20  # a reader re-reads CURRENT.json this often when writers keep replacing the version under it
_fsync_dir = fsync_dir  # (moved to bindkit.fileio)


def _read_meta(directory: Path) -> dict | None:
    try:
        return json.loads((directory / CURRENT).read_text())
    except (OSError, ValueError):
        return None


def _estimated_bytes(vi: VectorIndexBase) -> int:
    """About how many bytes a save of ``vi`` writes (float32 codes + ids, plus fp16 raw copies): for messages."""
    n = len(vi)
    size = 4096 + (n * (vi.dim * 4 + 16) if vi.faiss_index is not None else 0)
    return size + (n * (vi.dim * 2 + 8) if vi.raw is not None else 0)


def _write_faiss(index: faiss.Index, path: Path) -> None:
    # Through a Python file: a full disk raises OSError at once, where FAISS's own writer may drop its last
    # buffer at fclose without a word.
    with open(path, "wb") as fh:
        faiss.write_index(index, faiss.PyCallbackIOWriter(fh.write))
        fh.flush()
        os.fsync(fh.fileno())


def save_index(vi: VectorIndexBase, directory: Path, stamp: int) -> None:
    """Write ``vi`` as the version of ``directory`` stamped ``stamp`` (atomic; see the module docstring).

    Cache writers of several processes take turns under :func:`folder_lock`; a save older than the saved version
    of the same index type is skipped (that version already holds its changes). Every temporary left by this
    save or by a dead one is removed. Raises StorageFullError when the disk (or a quota/limit) is full."""
    try:
        with folder_lock(directory):
            current = _read_meta(directory)
            if current and int(current.get("stamp", -1)) > stamp and current.get("key") == vi.key:
                return
            _write_version(vi, directory, stamp)
    except OSError as exc:
        if is_out_of_space(exc):
            raise storage_full(directory, _estimated_bytes(vi), exc, "the FAISS cache") from None
        raise


def _write_version(vi: VectorIndexBase, directory: Path, stamp: int) -> None:
    """Under the folder lock: version folder, then CURRENT.json, then clean-up of everything else."""
    name = f"v{stamp}-{uuid.uuid4().hex[:8]}"
    tmp = directory / f".{name}.tmp"
    cur_tmp = directory / f".{CURRENT}.{name}.tmp"
    done = False
    try:
        tmp.mkdir()
        files = [INDEX_FILE] if vi.faiss_index is not None else []
        files += [RAW_FILE, IDS_FILE] if vi.raw is not None else []
        if vi.read_only and vi.source is not None:
            # a mapped index cannot change, so its files are still the truth: link them instead of rewriting
            for f in files:
                try:
                    os.link(vi.source / f, tmp / f)
                except OSError:
                    shutil.copy2(vi.source / f, tmp / f)
        else:
            if vi.faiss_index is not None:
                _write_faiss(vi.faiss_index, tmp / INDEX_FILE)
            if vi.raw is not None:
                vi.raw.save(tmp)  # fsyncs its own files
        os.rename(tmp, directory / name)
        meta = {"format": FORMAT_VERSION, "version": name, "stamp": stamp, "dim": vi.dim, "key": vi.key,
                "params": vi.params, "recall@10": vi.recall, "count": len(vi), "raw": vi.raw is not None,
                "extra": vi.extra}
        with open(cur_tmp, "w") as fh:
            json.dump(meta, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(cur_tmp, directory / CURRENT)
        done = True
        fsync_dir(directory)
    finally:
        if not done:
            cur_tmp.unlink(missing_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(directory / name, ignore_errors=True)
    _clean(directory, keep=name)


def _clean(directory: Path, keep: str) -> None:
    """Delete every version folder but ``keep`` and every temporary: under the lock none is another writer's,
    so they are older versions or leftovers of a crashed save. (A process still mapping an old version keeps its
    open files; a reader that had not opened them yet retries with the new CURRENT.json.)"""
    for p in directory.iterdir():
        if p.name == keep:
            continue
        if p.name.startswith(("v", ".v")) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith(f".{CURRENT}.") and p.name.endswith(".tmp"):
            p.unlink(missing_ok=True)


def load_index(cls: type[_V], directory: Path, mmap: bool) -> tuple[_V, int]:
    """Open the version ``CURRENT.json`` names. A writer in another process may replace that version (and delete
    its folder) between our reading CURRENT.json and opening its files: then read the new one."""
    for _ in range(_LOAD_TRIES - 1):
        before = _read_meta(directory)
        try:
            return _load_current(cls, directory, mmap)
        except (IndexStoreError, OSError):
            after = _read_meta(directory)
            if after is None or before is None or after.get("version") == before.get("version"):
                raise
    return _load_current(cls, directory, mmap)


def _load_current(cls: type[_V], directory: Path, mmap: bool) -> tuple[_V, int]:
    cur = directory / CURRENT
    if not cur.is_file():
        raise IndexStoreError(f"no saved FAISS index in {directory} ({CURRENT} missing); rebuild it from the "
                              "metadata store")
    try:
        meta = json.loads(cur.read_text())
        vdir = directory / meta["version"]
        key, dim, count = meta["key"], int(meta["dim"]), int(meta["count"])
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {meta.get('format')}, this bindkit reads {FORMAT_VERSION}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise IndexStoreError(f"{cur} is unreadable ({e}); rebuild the FAISS index from the metadata store") from None
    index = _read_faiss(vdir, key, dim, count, mmap) if kind_of(key) != "raw" else None
    raw = RawStore.load(vdir, dim) if meta.get("raw") else None
    if raw is None and index is None:
        raise IndexStoreError(f"{cur} names key {key!r} but no raw vectors; rebuild it from the metadata store")
    if raw is not None and len(raw) != count:
        raise IndexStoreError(f"raw vectors in {vdir} hold {len(raw)} rows for {count} indexed; rebuild the index")
    vi = cls(dim, index, key, params=meta.get("params"), recall=meta.get("recall@10"), raw=raw, read_only=mmap,
             extra=meta.get("extra"), source=vdir)
    return vi, int(meta["stamp"])


def _read_faiss(vdir: Path, key: str, dim: int, count: int, mmap: bool) -> faiss.Index:
    # IVF lists map through OnDiskInvertedLists; flat codes (Flat/HNSW storage) through the zero-copy IFC reader.
    # The two flags cannot be combined.
    flags = 0
    if mmap:
        flags = faiss.IO_FLAG_MMAP if kind_of(key) == "ivf" else faiss.IO_FLAG_MMAP_IFC
    try:
        index = faiss.read_index(str(vdir / INDEX_FILE), flags)
    except RuntimeError as e:
        raise IndexStoreError(f"FAISS index {vdir / INDEX_FILE} is unreadable ({str(e).splitlines()[-1][:200]}); "
                              "rebuild it from the metadata store") from None
    if index.d != dim or index.ntotal != count:
        raise IndexStoreError(f"FAISS index {vdir / INDEX_FILE} holds {index.ntotal} x {index.d}, its manifest "
                              f"says {count} x {dim}; rebuild it from the metadata store")
    return index


def writable_copy(vi: VectorIndexBase) -> faiss.Index | None:
    """A writable copy of ``vi``'s FAISS index (read from its files when it is memory-mapped); None for
    ``"exact:raw-f16"``."""
    if vi.faiss_index is None:  # "exact:raw-f16": nothing besides the raw store
        return None
    if vi.read_only and vi.source is not None:
        index = faiss.read_index(str(vi.source / INDEX_FILE))
    else:
        index = faiss.clone_index(vi.faiss_index)
    _set_direct_map(index, vi.key)
    return index


def merge_indexes(cls: type[_V], parts: list[VectorIndexBase]) -> _V:
    """One ``cls`` index holding every part's vectors (see :meth:`VectorIndex.merge`)."""
    if not parts:
        raise IndexStoreError("merge needs at least one part")
    dims = {p.dim for p in parts}
    if len(dims) > 1:
        raise IndexStoreError(f"cannot merge indexes of different dimensions {sorted(dims)}")
    all_ids = np.concatenate([p.ids() for p in parts])
    if np.unique(all_ids).size != all_ids.size:
        raise IndexStoreError(f"cannot merge: {all_ids.size - np.unique(all_ids).size} ids occur in more than one "
                              "part; shards must hold disjoint items")
    first = parts[0]
    index = writable_copy(first)
    raw = None
    if first.raw is not None:
        raw = RawStore(first.dim)
        for ids, vecs in first.raw.iter_chunks():
            raw.add(ids, vecs)
    recalls = [p.recall for p in parts if p.recall is not None]
    merged = cls(first.dim, index, first.key, params=first.params, raw=raw, extra=first.extra,
                 recall=min(recalls) if len(recalls) == len(parts) else None)
    trained = first.params.get("trained")
    for part in parts[1:]:
        if (kind_of(first.key) == "ivf" and part.key == first.key and trained is not None
                and part.params.get("trained") == trained):
            _merge_lists(merged, part)
        else:
            for ids, vecs in part.iter_vectors():
                merged.add(ids, np.asarray(vecs, np.float32))
    merged.ids_changed()
    return merged


def _merge_lists(dst: VectorIndexBase, part: VectorIndexBase) -> None:
    """FAISS on-disk-style merge: same quantizer and codebooks, so the part's inverted lists are appended to ours
    as they are, without re-encoding. (``IndexIVF.merge_from`` would empty the part, and crashes on mapped lists.)"""
    dst_index, dst_raw = dst.faiss_index, dst.raw
    dst_ivf = faiss.extract_index_ivf(dst_index)
    src_inv = faiss.extract_index_ivf(part.faiss_index).invlists
    dst_ivf.set_direct_map_type(faiss.DirectMap.NoMap)
    dst_inv = dst_ivf.invlists
    for l in range(src_inv.nlist):
        m = src_inv.list_size(l)
        if m:
            ids, codes = src_inv.get_ids(l), src_inv.get_codes(l)
            dst_inv.add_entries(l, m, ids, codes)
            src_inv.release_ids(l, ids)
            src_inv.release_codes(l, codes)
    dst_ivf.ntotal += part.faiss_index.ntotal
    if dst_index is not dst_ivf:
        dst_index.ntotal = dst_ivf.ntotal  # a wrapping IndexPreTransform (OPQ) keeps its own count
    _set_direct_map(dst_index, dst.key)
    if dst_raw is not None:
        for ids, vecs in part.raw.iter_chunks():
            dst_raw.add(ids, vecs)
    dst.ids_changed()
