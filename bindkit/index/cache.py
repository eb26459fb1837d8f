"""The per-modality FAISS indexes of an index directory, kept equal to the vectors in SQLite.

Each ``<dir>/<kind>/`` holds a :class:`VectorIndex` saved atomically and stamped with the store version it
reflects. On open, a cache whose stamp is behind is repaired by replaying the ids logged in ``changes`` since
its stamp; a missing, unreadable or unrepairable one is rebuilt from the SQLite vectors. So a crash between a
SQLite commit and a cache save never loses or duplicates anything.
"""

from __future__ import annotations

import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import IndexStoreError
from ..modality import INPUT_KINDS
from .vectors import VectorIndex
from .vectors import EXACT_RAW
from .diskio import is_out_of_space, storage_full
from .store import FORMAT_VERSION, MANIFEST_NAME, ItemRow, Store, crash_point, read_manifest, to_f16, write_manifest

#: Caches up to this many vectors are saved after every write; bigger ones once their unsaved changes reach
#: SAVE_FRACTION of their size (and on flush/close), since rewriting gigabytes per add would dominate. Unsaved
#: changes are never lost: they are in SQLite and replayed on open.
SAVE_ALWAYS_BELOW = 200_000
SAVE_FRACTION = 0.05


class Caches:
    """FAISS indexes per input kind (``vi[kind]``), in sync with ``store`` up to version ``synced``."""

    def __init__(self, path: Path, store: Store, dim: int, mmap: bool = False, read_only: bool = False):
        self.path = path
        self.store = store
        self.dim = dim
        self.mmap = mmap
        self.read_only = read_only or mmap  # never write the folder: repairs stay in memory
        self.vi: dict[str, VectorIndex] = {}
        self.synced = -1
        self.dirty: set[str] = set()
        self.unsaved: dict[str, int] = defaultdict(int)  # changes per kind since its file was written

    def due(self) -> list[str]:
        """Dirty caches worth writing now (small ones always, big ones after many changes)."""
        return [k for k in sorted(self.dirty) if k in self.vi and (
            len(self.vi[k]) <= SAVE_ALWAYS_BELOW or self.unsaved[k] >= SAVE_FRACTION * len(self.vi[k]))]

    def index_key(self, kind: str) -> str | None:
        return (self.store.get_info("indexes", {}) or {}).get(kind, {}).get("key")

    def rebuild(self, kind: str) -> VectorIndex:
        """A fresh index for ``kind`` from the SQLite vectors, of the type chosen before (retrained)."""
        key = self.index_key(kind)
        # The exact fp16-on-disk mode exists for collections whose float32 copy exceeds the memory budget:
        # fill it directly instead of building a float32 Flat first.
        vi = VectorIndex.create(self.dim, EXACT_RAW if key == EXACT_RAW else None)
        for ids, vecs in self.store.vectors(kind):
            vi.add(ids, vecs)
        if key and key not in ("Flat", EXACT_RAW) and len(vi):
            vi.optimize(index_key=key, progress=False)
        return vi

    def _replay(self, vi: VectorIndex, kind: str, changed: np.ndarray) -> None:
        if len(changed):
            vi.remove(changed)
            for ids, vecs in self.store.vectors(kind, ids=changed):
                vi.add(ids, vecs)

    def load(self) -> None:
        """Load every kind's FAISS file, repairing stale/missing/corrupt ones from SQLite (then saved, unless the
        index is read-only: then the repair lives in memory, with a warning)."""
        with self.store.snapshot():  # one consistent view of the version, the change log and the vectors
            version, floor = self.store.version(), self.store.log_floor()
            kinds = set(self.store.modality_counts()) | {k for k in INPUT_KINDS if (self.path / k).is_dir()}
            for kind in sorted(kinds):
                self.vi[kind] = self._load_kind(kind, version, floor, self.mmap)
            self.synced = version
        if self.read_only:
            if self.dirty and not self.mmap:
                warnings.warn(f"{self.path}: the FAISS cache of {', '.join(sorted(self.dirty))} is behind "
                              f"{self.store.path.name} and the index is read-only, so it was rebuilt in memory for "
                              "this session only; open the index writable once to save the repair", RuntimeWarning)
            return
        manifest = read_manifest(self.path)
        if self.dirty or manifest is None or manifest.get("version") != self.synced:
            self.save_quietly()

    def _load_kind(self, kind: str, version: int, floor: int, mmap: bool) -> VectorIndex:
        """``kind``'s saved index brought up to ``version`` (replaying the change log), or rebuilt from SQLite
        when missing, unreadable or too old; marks it dirty when it differs from its file."""
        try:
            vi, stamp = VectorIndex.load(self.path / kind, mmap=mmap)
            if vi.dim != self.dim:
                raise ValueError(f"dim {vi.dim} != {self.dim}")
        except Exception:  # missing or unreadable: SQLite has everything needed to rebuild it
            vi, stamp = None, None
        if vi is None or stamp > version or stamp < floor:
            self.dirty.add(kind)
            return self.rebuild(kind)
        changed = self.store.changed_since(kind, stamp)
        if len(changed):
            if vi.read_only:  # a memory-mapped index is read-only: repair an in-memory copy
                return self._load_kind(kind, version, floor, mmap=False)
            self._replay(vi, kind, changed)
            self.dirty.add(kind)
        return vi

    def catch_up(self) -> None:
        """Replay writes committed by other processes since this one last looked."""
        version = self.store.version()
        if version == self.synced:
            return
        if self.synced < self.store.log_floor():  # another process compacted past us: rebuild from SQLite
            self.vi = {kind: self.rebuild(kind) for kind in self.store.modality_counts()}
            self.dirty = set(self.vi)
            self.synced = version
            return
        for kind in self.store.changed_modalities(self.synced):
            if kind not in self.vi:
                self.vi[kind] = VectorIndex.create(self.dim)
            elif self.vi[kind].read_only:  # memory-mapped: replay into an in-memory copy of the newest file
                self.vi[kind] = self._load_kind(kind, version, self.store.log_floor(), mmap=False)
                continue
            self._replay(self.vi[kind], kind, self.store.changed_since(kind, self.synced))
            self.dirty.add(kind)
        self.synced = version

    def mirror(self, rows: Sequence[ItemRow], ids: Sequence[int], stale: Iterable[tuple[int, str]], version: int) -> None:
        """Apply a committed transaction in memory: drop ``stale`` (id, kind) pairs, add ``rows`` under ``ids``."""
        by_kind: dict[str, list[int]] = defaultdict(list)
        for item_id, kind in stale:
            by_kind[kind].append(item_id)
        for kind, old in by_kind.items():
            if kind in self.vi:
                self.vi[kind].remove(np.asarray(old, dtype=np.int64))
            self.dirty.add(kind)
            self.unsaved[kind] += len(old)
        fresh: dict[str, list[int]] = defaultdict(list)
        for pos, row in enumerate(rows):
            fresh[row.modality].append(pos)
        for kind, positions in fresh.items():
            if kind not in self.vi:
                self.vi[kind] = VectorIndex.create(self.dim)
            vecs = np.stack([rows[p].vector for p in positions])
            # Index exactly what SQLite holds (fp16), so a cache rebuilt from SQLite is identical.
            self.vi[kind].add(np.asarray([ids[p] for p in positions], dtype=np.int64), to_f16(vecs).astype(np.float32))
            self.dirty.add(kind)
            self.unsaved[kind] += len(positions)
        self.synced = version

    def save(self, kinds: Iterable[str] | None = None) -> None:
        """Write the changed caches (atomically, stamped with ``synced``) and the manifest."""
        if self.read_only:
            return
        kinds = sorted(self.dirty if kinds is None else set(kinds))
        for n, kind in enumerate(k for k in kinds if k in self.vi):
            if n:
                crash_point("save:between")
            self.vi[kind].save(self.path / kind, self.synced)
            self.dirty.discard(kind)
            self.unsaved.pop(kind, None)
        self.write_manifest()

    def save_quietly(self, kinds: Iterable[str] | None = None) -> None:
        """:meth:`save` where a failure loses nothing (after a commit, on open, on close): the caches stay
        right in memory and are repaired from SQLite on a later open, so a full disk only warns."""
        try:
            self.save(kinds)
        except (OSError, IndexStoreError) as exc:
            warnings.warn(f"could not write the FAISS caches of {self.path} ({exc}); nothing is lost: SQLite holds "
                          "every committed item and the caches are repaired from it when next opened",
                          RuntimeWarning, stacklevel=3)

    def write_manifest(self) -> None:
        """Write manifest.json: what the index holds, for people and tools (SQLite stays the truth)."""
        if self.read_only:
            return
        counts = self.store.modality_counts()
        indexes = {}
        for kind, vi in sorted(self.vi.items()):
            indexes[kind] = dict(vi.info())
            indexes[kind]["count"] = counts.get(kind, 0)
        manifest = {
            "format_version": FORMAT_VERSION,
            "model": self.store.get_info("model"),
            "dim": self.dim,
            "count": sum(counts.values()),
            "modalities": indexes,
            "version": self.synced,
            "embedded_total": self.store.embedded_total(),
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        try:
            write_manifest(self.path, manifest)
        except OSError as exc:
            if is_out_of_space(exc):
                raise storage_full(self.path / MANIFEST_NAME, 4096, exc, "the manifest") from None
            raise
