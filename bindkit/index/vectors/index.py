"""``VectorIndex``: the in-memory index of :mod:`~bindkit.index.vectors.core` plus building, tuning, files and merge.

The layer depends one way: ``core`` (search, add, remove) <- ``tuning`` (choose, train, tune) and ``files``
(save, load, merge) <- this module, which only forwards to them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bindkit.index.vectors import files, tuning
from bindkit.index.vectors.core import VectorIndexBase, _as_ids
from bindkit.index.vectors.faiss_keys import EXACT_RAW, FLAT, _new_faiss
from bindkit.index.vectors.raw import RawStore


class VectorIndex(VectorIndexBase):
    """A FAISS index of unit vectors under stable int64 ids (inner product = cosine similarity).

    Build with :meth:`create` + :meth:`add` (exact Flat), then :meth:`optimize` to pick and tune an approximate
    index for the collection's size and a memory budget. Persist with :meth:`save` / :meth:`load` (atomic;
    ``mmap=True`` opens read-only and memory-mapped).
    """

    # ---------------------------------------------------------------- construction
    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, **optimize_kwargs) -> "VectorIndex":
        """Choose, train, fill and tune an index straight from ``vectors`` (n, dim) float32/float16 (a memmap is
        read in chunks; an fp16 one is used as the raw store without a copy). Keywords as :meth:`optimize`."""
        return tuning.build_tuned(_as_ids(ids), vectors, cls=cls, **optimize_kwargs)

    def empty_like(self) -> "VectorIndex":
        """An empty index with this one's key, training (quantizer, codebooks) and tuned parameters: fill one per
        shard, and :meth:`merge` joins them by concatenating inverted lists."""
        index = files.writable_copy(self)
        if index is not None:
            index.reset()
        return VectorIndex(self.dim, index, self.key, params=self.params, recall=self.recall,
                           raw=RawStore(self.dim) if self.raw is not None else None, extra=self.extra)

    # ---------------------------------------------------------------- optimize
    def optimize(self, *, memory_budget_bytes: int | None = None, index_key: str | None = None,
                 recall_target: float = 0.95, progress: bool = True) -> dict:
        """Rebuild as the index kind that suits the collection and tune its search parameters.

        Exact Flat under ~50k vectors; IVF-Flat while the float32 vectors fit ``memory_budget_bytes`` (default
        :data:`bindkit.index.vectors.tuning.DEFAULT_MEMORY_BUDGET`); IVF-PQ with exact fp16 re-ranking beyond.
        nprobe and re-rank depth are tuned to reach ``recall_target`` recall@10 against exact search on held-out
        queries (see :mod:`bindkit.index.vectors.tuning`); if no setting gets there the index falls back to Flat
        (when it fits) or to its best setting, with a ``RuntimeWarning`` and ``info()["warning"]``. ``index_key``
        forces the kind. The index is rebuilt in place; returns :meth:`info`.
        """
        self._check_writable()
        if index_key is not None and index_key not in (FLAT, EXACT_RAW):
            _new_faiss(self.dim, index_key)  # a key FAISS cannot parse is an error even where Flat would be kept
        ids = self.ids()
        new = tuning.build_tuned(ids, tuning.VectorsOf(self), cls=type(self), memory_budget_bytes=memory_budget_bytes,
                                 index_key=index_key, recall_target=recall_target, progress=progress)
        self._take_state(new)
        return self.info()

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | Path, stamp: int) -> None:
        """Write to ``directory`` atomically: files go to a fresh version folder, then ``CURRENT.json`` (holding
        ``stamp``, key, params, recall) is swapped in with ``os.replace``; older versions are then deleted."""
        files.save_index(self, Path(directory), int(stamp))

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = False) -> "tuple[VectorIndex, int]":
        """Open the index saved in ``directory``; returns (index, stamp). ``mmap=True`` maps the vectors/lists
        read-only instead of reading them (for big indexes). Raises IndexStoreError when missing or corrupt."""
        return files.load_index(cls, Path(directory), mmap)

    @classmethod
    def merge(cls, parts: "list[VectorIndex]") -> "VectorIndex":
        """One index holding every part's vectors (ids must be disjoint). IVF parts trained together (same
        quantizer and codebooks) merge their inverted lists without re-encoding; others are re-added."""
        return files.merge_indexes(cls, list(parts))
