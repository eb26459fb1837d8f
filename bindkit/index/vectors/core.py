"""One modality's FAISS index in memory: stable 64-bit ids, inner product over unit vectors, add/remove/search.

This is the bottom of the vector layer: :class:`VectorIndexBase` knows nothing of files or tuning. Saving,
loading and merging live in :mod:`bindkit.index.vectors.files`, choosing and tuning in
:mod:`bindkit.index.vectors.tuning`; both use this class's public surface, and
:class:`bindkit.index.vectors.index.VectorIndex` (the class everyone uses) joins the three.

Kinds, by FAISS factory key:
- ``"Flat"``: IndexIDMap2 over IndexFlatIP; exact. The default, and the choice for small collections.
- any ``"IVF..."`` key (``"IVF1024,Flat"``, ``"IVF1024,PQ64"``, ``"OPQ64,IVF1024,PQ64"``): the IVF stores the ids
  itself (``add_with_ids``), so removal and on-disk merge work natively. Lossy codecs (PQ, SQ) keep fp16 copies of
  the vectors on disk (:mod:`bindkit.index.vectors.raw`) and re-rank ``rerank x k`` candidates exactly.
- ``"HNSW<M>[,Flat]"`` or other flat-code keys: IndexIDMap2 over the factory index. FAISS cannot remove from HNSW,
  so ``remove()`` rebuilds it.
- ``"exact:raw-f16"`` (not a FAISS key): no FAISS index at all; exact search by scanning the fp16 vectors on disk
  block by block (:meth:`RawStore.scan_topk`). Brute-force speed, but RAM holds only the ids and one block: the
  fallback for data no approximate index handles (uniform random vectors) when float32 Flat exceeds the budget.

Which kind suits a collection, and its search parameters, is decided by :meth:`VectorIndex.optimize`
(:mod:`bindkit.index.vectors.tuning`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, TypeVar

import faiss
import numpy as np

from bindkit.errors import IndexStoreError, InputError
from bindkit.index.vectors.faiss_keys import (EXACT_RAW, FLAT, _new_faiss, fast_training, is_lossy, kind_of,
                                              trained_fingerprint)
from bindkit.index.vectors.raw import RawStore
from bindkit.index.vectors.topk import empty_result, merge_topk, topk_exact

FORMAT_VERSION = 1
CURRENT = "CURRENT.json"
INDEX_FILE = "index.faiss"
EXACT_FILTER_MAX = 4096  # allowed-id sets up to this size are scored exactly from their vectors
_IP = faiss.METRIC_INNER_PRODUCT
_V = TypeVar("_V", bound="VectorIndexBase")


def _as_ids(ids: object, name: str = "ids") -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise InputError(name, "vector", f"expected a 1-D array of int64 ids, got shape {arr.shape} {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _as_vectors(x: object, dim: int, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InputError(name, "vector", f"expected a float32 array of shape (n, {dim}), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(name, "vector", "contains NaN or infinite values (failed embeddings?); drop those rows")
    return np.ascontiguousarray(arr)


class VectorIndexBase:
    """A FAISS index of unit vectors under stable int64 ids (inner product = cosine similarity), in memory.

    Create with :meth:`create` + :meth:`add` (exact Flat, or a FAISS factory key). Files, merging and tuning are
    :class:`~bindkit.index.vectors.index.VectorIndex`'s (a subclass); this class is what they build on.
    """

    def __init__(self, dim: int, index: faiss.Index, key: str, *, params: dict | None = None,
                 recall: float | None = None, raw: RawStore | None = None, read_only: bool = False,
                 extra: dict | None = None, source: Path | None = None):
        self.dim = int(dim)
        self._index = index
        self._key = key
        self._params = dict(params or {})
        self._recall = recall
        self._raw = raw
        self._read_only = read_only
        self._extra = dict(extra or {})
        self._source = source  # version folder this was loaded from (for zero-copy re-save of mmapped indexes)
        self._sorted_ids: np.ndarray | None = None

    # ---------------------------------------------------------------- construction
    @classmethod
    def create(cls: type[_V], dim: int, index_key: str | None = None) -> _V:
        """An empty index of ``dim``-dimensional vectors; exact ``"Flat"`` unless ``index_key`` names a FAISS
        factory string (trainable keys train on the first :meth:`add`)."""
        if int(dim) <= 0:
            raise InputError("dim", "vector", f"dimension must be positive, got {dim}")
        key = (index_key or FLAT).strip()
        if key == EXACT_RAW:
            return cls(int(dim), None, key, recall=1.0, raw=RawStore(int(dim)))
        index = _new_faiss(int(dim), key)
        params: dict = {}
        if kind_of(key) == "ivf":
            nlist = faiss.extract_index_ivf(index).nlist
            params["nprobe"] = max(1, nlist // 16)
        elif key.startswith("HNSW"):
            params["efSearch"] = 64
        if is_lossy(key):
            params["rerank"] = 20
        return cls(int(dim), index, key, params=params, recall=1.0 if key == FLAT else None,
                   raw=RawStore(int(dim)) if is_lossy(key) else None)

    # ---------------------------------------------------------------- properties
    @property
    def key(self) -> str:
        return self._key

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def faiss_index(self) -> faiss.Index | None:
        """The underlying FAISS index (for inspection; mutate through this class); None for ``"exact:raw-f16"``."""
        return self._index

    @property
    def raw(self) -> RawStore | None:
        """The fp16 copies of the vectors (lossy keys and ``"exact:raw-f16"``), else None."""
        return self._raw

    @property
    def params(self) -> dict:
        """The search parameters (``nprobe``, ``efSearch``, ``rerank``) and training digest (``trained``); a copy."""
        return dict(self._params)

    @property
    def recall(self) -> float | None:
        """recall@10 measured when tuned (1.0 for exact kinds), or None when unknown."""
        return self._recall

    @property
    def extra(self) -> dict:
        """What tuning recorded (``reason``, ``warning``, ``ram_bytes`` ...), as :meth:`info` adds it; a copy."""
        return dict(self._extra)

    @property
    def source(self) -> Path | None:
        """The version folder this index was loaded from (None when built in memory)."""
        return self._source

    def __len__(self) -> int:
        return len(self._raw) if self._index is None else int(self._index.ntotal)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, key={self._key!r}, count={len(self)})"

    def info(self) -> dict:
        """``{"key", "params", "recall@10", "count"}`` plus extras (e.g. ``"warning"``, ``"ram_bytes"``)."""
        return {"key": self._key, "params": dict(self._params), "recall@10": self._recall, "count": len(self),
                **self._extra}

    def ids(self) -> np.ndarray:
        """int64 (n,) ids held, sorted ascending."""
        if self._sorted_ids is None:
            if self._index is None:
                return self._raw.ids()
            if kind_of(self._key) == "ivf":
                inv = faiss.extract_index_ivf(self._index).invlists
                parts = [faiss.rev_swig_ptr(inv.get_ids(l), inv.list_size(l)).copy()
                         for l in range(inv.nlist) if inv.list_size(l)]
                ids = np.concatenate(parts) if parts else np.zeros(0, np.int64)
            else:
                ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            self._sorted_ids = np.sort(ids)
        return self._sorted_ids

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """bool mask: which of ``ids`` are held."""
        held = self.ids()
        ids = _as_ids(ids)
        if held.size == 0:
            return np.zeros(ids.shape, bool)
        pos = np.minimum(np.searchsorted(held, ids), held.size - 1)
        return held[pos] == ids

    # ---------------------------------------------------------------- mutation
    def ids_changed(self) -> None:
        """Forget the cached sorted ids: call after changing :attr:`faiss_index` or :attr:`raw` directly (as an
        inverted-list merge does)."""
        self._sorted_ids = None

    def _take_state(self, other: "VectorIndexBase") -> None:
        """Become ``other`` (same dimension): its FAISS index, raw store, key, parameters and state."""
        self.dim = other.dim
        self._index = other._index
        self._key = other._key
        self._params = other._params
        self._recall = other._recall
        self._raw = other._raw
        self._read_only = other._read_only
        self._extra = other._extra
        self._source = other._source
        self._sorted_ids = other._sorted_ids

    def _check_writable(self) -> None:
        if self._read_only:
            raise IndexStoreError("this FAISS index was opened memory-mapped (read-only); open it with mmap=False "
                                  "to add, remove or merge")

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` float32 (n, dim), unit rows, under ``ids`` int64 (n,). Ids already held are replaced."""
        self._check_writable()
        ids = _as_ids(ids)
        vectors = _as_vectors(vectors, self.dim, "vectors")
        if ids.size != vectors.shape[0]:
            raise InputError("ids", "vector", f"{ids.size} ids for {vectors.shape[0]} vectors")
        if np.unique(ids).size != ids.size:
            raise InputError("ids", "vector", "duplicate ids in one add(); each id names one vector")
        if ids.size == 0:
            return
        self.remove(ids[self.contains(ids)])
        if self._index is not None:
            if not self._index.is_trained:
                self._train(vectors)
            self._index.add_with_ids(vectors, ids)
        if self._raw is not None:
            self._raw.add(ids, vectors)
        self._sorted_ids = None

    def _train(self, vectors: np.ndarray) -> None:
        ivf = faiss.extract_index_ivf(self._index) if kind_of(self._key) == "ivf" else None
        need = 39 * ivf.nlist if ivf is not None else 1000
        if vectors.shape[0] < need:
            raise IndexStoreError(f"index key {self._key!r} must be trained on at least {need} vectors, the first "
                                  f"add() gave {vectors.shape[0]}; add them in one call, or build a Flat index and "
                                  "call optimize()")
        fast_training(self._index)
        self._index.train(vectors)
        self._params["trained"] = trained_fingerprint(self._index)

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids`` (absent ones are ignored); returns how many were removed."""
        self._check_writable()
        ids = np.unique(_as_ids(ids))
        ids = ids[self.contains(ids)]
        if ids.size == 0:
            return 0
        if self._key.startswith("HNSW"):
            self._rebuild_without(ids)
        elif self._index is not None:  # (for "exact:raw-f16" the raw store below is the whole index)
            # a hashtable direct map accepts only an IDSelectorArray; the others are faster with a batch selector
            dm = kind_of(self._key) == "ivf" and not is_lossy(self._key)
            sel = faiss.IDSelectorArray(ids) if dm else faiss.IDSelectorBatch(ids)
            self._index.remove_ids(sel)
        if self._raw is not None:
            self._raw.remove(ids)
        self._sorted_ids = None
        return int(ids.size)

    def _rebuild_without(self, ids: np.ndarray) -> None:
        fresh = _new_faiss(self.dim, self._key)
        for chunk_ids, vecs in self.iter_vectors():
            keep = ~np.isin(chunk_ids, ids)
            if keep.any():
                fresh.add_with_ids(np.ascontiguousarray(vecs[keep], np.float32), chunk_ids[keep])
        self._index = fresh

    # ---------------------------------------------------------------- reading vectors back
    def get_vectors(self, ids: np.ndarray) -> np.ndarray:
        """float32 (m, dim) vectors of ``ids`` (all held; from the raw fp16 store for lossy indexes)."""
        ids = _as_ids(ids)
        if self._raw is not None:
            return self._raw.get(ids).astype(np.float32)
        if not self.contains(ids).all():
            raise IndexStoreError(f"ids {ids[~self.contains(ids)][:3].tolist()} are not in this FAISS index")
        if ids.size == 0:
            return np.zeros((0, self.dim), np.float32)
        return self._index.reconstruct_batch(ids)

    def iter_vectors(self, chunk: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids int64 (m,), vectors float32/float16 (m, dim)) over everything held."""
        if self._raw is not None:
            yield from self._raw.iter_chunks(chunk)
            return
        if kind_of(self._key) == "ivf":
            inv = faiss.extract_index_ivf(self._index).invlists
            for l in range(inv.nlist):
                m = inv.list_size(l)
                if m:
                    ids = faiss.rev_swig_ptr(inv.get_ids(l), m).copy()
                    codes = faiss.rev_swig_ptr(inv.get_codes(l), m * inv.code_size)
                    yield ids, codes.view(np.float32).reshape(m, self.dim).copy()
            return
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        storage = faiss.downcast_index(self._index.index)
        if hasattr(storage, "storage"):  # HNSW keeps its vectors in a flat storage index
            storage = faiss.downcast_index(storage.storage)
        for s in range(0, ids.size, chunk):
            n = min(chunk, ids.size - s)
            yield ids[s:s + n], storage.reconstruct_n(s, n)

    # ---------------------------------------------------------------- search
    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` by inner product for ``queries`` float32 (q, dim).

        Returns scores float32 (q, k) and ids int64 (q, k), best first, padded with -inf / -1 when fewer than k
        exist. ``allowed_ids`` restricts results to those ids *before* ranking: k hits come back whenever k of
        them are held (small sets are scored exactly; large ones through a FAISS IDSelector, with the search
        widened for any query that came back short).
        """
        q = _as_vectors(queries, self.dim, "queries")
        k = int(k)
        if k <= 0 or len(self) == 0:
            return empty_result(q.shape[0], max(k, 0))
        if allowed_ids is None:
            return self.search_with(q, k)
        allowed = np.unique(_as_ids(allowed_ids, "allowed_ids"))
        allowed = allowed[self.contains(allowed)]
        if allowed.size == 0:
            return empty_result(q.shape[0], k)
        if allowed.size <= max(EXACT_FILTER_MAX, k):
            return self._exact_over(q, allowed, k)
        if self._index is None:  # a full scan anyway: the filter is a row mask
            return self._raw.scan_topk(q, k, allowed)
        scores, ids = self.search_with(q, k, faiss.IDSelectorBatch(allowed))
        short = np.flatnonzero((ids >= 0).sum(1) < min(k, allowed.size))
        if short.size:  # a selector can starve an IVF probe / HNSW walk: widen, then fall back to exact
            s2, i2 = self.search_with(q[short], k, faiss.IDSelectorBatch(allowed), widest=True)
            still = (i2 >= 0).sum(1) < min(k, allowed.size)
            if still.any():
                s2[still], i2[still] = self._exact_over(q[short[still]], allowed, k)
            scores[short], ids[short] = s2, i2
        return scores, ids

    def _exact_over(self, q: np.ndarray, ids: np.ndarray, k: int, chunk: int = 65536
                    ) -> tuple[np.ndarray, np.ndarray]:
        best = empty_result(q.shape[0], k)
        for s in range(0, ids.size, chunk):
            part = ids[s:s + chunk]
            best = merge_topk(best, topk_exact(q, part, self.get_vectors(part), k), k)
        return best

    def search_params(self, sel: faiss.IDSelector | None = None, widest: bool = False,
                      **override) -> faiss.SearchParameters | None:
        """FAISS search parameters from the tuned ``params`` (``override`` wins; ``widest`` = maximal effort)."""
        kind = kind_of(self._key)
        p = {**self._params, **override}
        if kind == "raw":
            return None
        if kind == "ivf":
            nlist = faiss.extract_index_ivf(self._index).nlist
            return faiss.SearchParametersIVF(sel=sel, nprobe=nlist if widest else int(p.get("nprobe", 1)))
        if self._key.startswith("HNSW"):
            ef = max(int(p.get("efSearch", 64)), 1024 if widest else 0)
            return faiss.SearchParametersHNSW(sel=sel, efSearch=ef)
        return faiss.SearchParameters(sel=sel) if sel is not None else None

    def search_with(self, q: np.ndarray, k: int, sel: faiss.IDSelector | None = None, widest: bool = False,
                    **override) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` of float32 unit queries ``q`` (q, dim) with the tuned search settings, ``override`` winning
        (``nprobe=``, ``efSearch=``, ``rerank=``), optionally through a FAISS ``sel``ector; no input checks and
        no widening (the tuner's probe). Returns scores (q, k), ids (q, k), -inf / -1 padded."""
        if self._index is None:
            return self._raw.scan_topk(q, k)
        rerank = int(override.get("rerank", self._params.get("rerank", 1))) if self._raw is not None else 1
        kk = min(len(self), max(k, rerank * k))
        params = self.search_params(sel, widest, **override)
        if self._key.startswith("HNSW") and params is not None:
            params.efSearch = max(params.efSearch, kk)
        scores, ids = self._index.search(q, kk, params=params)
        if self._raw is not None:
            return self.rerank(q, ids, k)
        scores = scores.astype(np.float32)
        scores[ids < 0] = -np.inf
        out = empty_result(q.shape[0], k)
        out[0][:, :kk], out[1][:, :kk] = scores[:, :k], ids[:, :k]
        return out

    def candidate_scores(self, q: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """Exact scores (q, c) of candidate ids ``cand`` (q, c) from the raw fp16 vectors; -inf where id is -1."""
        out = np.full(cand.shape, -np.inf, np.float32)
        valid = cand >= 0
        rows = np.flatnonzero(valid.any(1))
        # queries per block: ~32 MiB of gathered float32 vectors (deep re-ranking at d = 1024 is 9 MiB a query)
        block = max(1, min(64, 2**25 // max(1, cand.shape[1] * self.dim * 4)))
        for s in range(0, rows.size, block):
            r = rows[s:s + block]
            v = valid[r]
            vec = np.zeros(v.shape + (self.dim,), np.float32)
            vec[v] = self._raw.get(cand[r][v])
            sc = np.einsum("qd,qcd->qc", q[r], vec)
            out[r] = np.where(v, sc, -np.inf)
        return out

    def rerank(self, q: np.ndarray, cand: np.ndarray, k: int, scores: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top ``k`` of candidate ids ``cand`` (q, c) (-1 = none), re-scored with the raw fp16 vectors
        (or with precomputed ``scores`` (q, c))."""
        sc = self.candidate_scores(q, cand) if scores is None else scores
        out_s, out_i = empty_result(q.shape[0], k)
        order = np.argsort(-sc, axis=1, kind="stable")[:, :k]
        m = order.shape[1]
        out_s[:, :m] = np.take_along_axis(sc, order, 1)
        out_i[:, :m] = np.where(np.isfinite(out_s[:, :m]), np.take_along_axis(cand, order, 1), -1)
        return out_s, out_i

    _search = search_with  # the name before the vector layer was split (kept for callers of the private)
