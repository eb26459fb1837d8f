"""The per-modality FAISS indexes of an index directory, kept equal to the vectors in SQLite.

Each ``<dir>/<kind>/`` holds a :class:`VectorIndex` saved atomically and stamped with the store version it
reflects. On open, a cache whose stamp is behind is repaired by replaying the ids logged in ``changes`` since
its stamp; a missing, unreadable or unrepairable one is rebuilt from the SQLite vectors. So a crash between a
SQLite commit and a cache save never loses or duplicates anything.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..modality import INPUT_KINDS
from .faiss_index import VectorIndex
from .keys import EXACT_RAW
from .store import FORMAT_VERSION, ItemRow, Store, crash_point, to_f16, write_manifest

#: Caches up to this many vectors are saved after every write; bigger ones once their unsaved changes reach
#: SAVE_FRACTION of their size (and on flush/close), since rewriting gigabytes per add would dominate. Unsaved
#: changes are never lost: they are in SQLite and replayed on open.
SAVE_ALWAYS_BELOW = 200_000
SAVE_FRACTION = 0.05


class Caches:
    """FAISS indexes per input kind (``vi[kind]``), in sync with ``store`` up to version ``synced``."""

    def __init__(self, path: Path, store: Store, dim: int, mmap: bool = False):
        self.path = path
        self.store = store
        self.dim = dim
        self.mmap = mmap
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
        """Load every kind's FAISS file, repairing stale/missing/corrupt ones from SQLite (then saved)."""
        with self.store.snapshot():  # one consistent view of the version, the change log and the vectors
            version, floor = self.store.version(), self.store.log_floor()
            kinds = set(self.store.modality_counts()) | {k for k in INPUT_KINDS if (self.path / k).is_dir()}
            for kind in sorted(kinds):
                try:
                    vi, stamp = VectorIndex.load(self.path / kind, mmap=self.mmap)
                    if vi.dim != self.dim:
                        raise ValueError(f"dim {vi.dim} != {self.dim}")
                except Exception:  # missing or unreadable: SQLite has everything needed to rebuild it
                    vi, stamp = None, None
                if vi is None or stamp > version or stamp < floor:
                    vi = self.rebuild(kind)
                    self.dirty.add(kind)
                else:
                    changed = self.store.changed_since(kind, stamp)
                    if len(changed):
                        if self.mmap:  # a memory-mapped index is read-only: repair an in-memory copy
                            vi, _ = VectorIndex.load(self.path / kind, mmap=False)
                        self._replay(vi, kind, changed)
                        self.dirty.add(kind)
                self.vi[kind] = vi
            self.synced = version
        self.save()

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
        kinds = sorted(self.dirty if kinds is None else set(kinds))
        for n, kind in enumerate(k for k in kinds if k in self.vi):
            if n:
                crash_point("save:between")
            if not self.mmap:
                self.vi[kind].save(self.path / kind, self.synced)
            self.dirty.discard(kind)
            self.unsaved.pop(kind, None)
        self.write_manifest()

    def write_manifest(self) -> None:
        """Write manifest.json: what the index holds, for people and tools (SQLite stays the truth)."""
        counts = self.store.modality_counts()
        indexes = {}
        for kind, vi in sorted(self.vi.items()):
            indexes[kind] = dict(vi.info())
            indexes[kind]["count"] = counts.get(kind, 0)
        write_manifest(self.path, {
            "format_version": FORMAT_VERSION,
            "model": self.store.get_info("model"),
            "dim": self.dim,
            "count": sum(counts.values()),
            "modalities": indexes,
            "version": self.synced,
            "embedded_total": self.store.embedded_total(),
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
