"""Choosing, training and tuning a FAISS index for a collection (in the spirit of autofaiss).

Choice, from the number of vectors ``n``, their dimension ``d`` and a RAM budget for this modality's index:

- ``n < 50,000``                                    -> ``"Flat"`` (exact; fast enough, nothing to tune);
- ``n <= 2,000,000`` and ``4·n·d`` bytes fit         -> ``"IVF<nlist>,Flat"`` (exact scores, few lists scanned);
- otherwise                                         -> ``"IVF<nlist>,PQ<m>"`` in RAM + fp16 vectors on disk
  (memory-mapped) to re-rank the PQ candidates exactly.

IVF rather than HNSW for the middle band: HNSW cannot remove vectors, starves under restrictive filters and costs
far more to build at d = 1024 on a few cores; ``index_key="HNSW32"`` still selects it.
``nlist`` is the power of two nearest ``sqrt(n)`` (about a thousand vectors per list), training uses
``40·nlist`` vectors and 10 k-means iterations.

Tuning: ``n_q`` (<= 500) stored vectors are drawn as held-out queries, slightly perturbed (noise of norm 0.05);
they are excluded from the training sample, and each query's own source row is dropped from both its ground truth
and its results, so a query never scores by finding itself (leave-one-out). Ground truth is exact inner-product
top-10 over all vectors. The search settings (nprobe x re-rank depth, or efSearch) are scanned from cheap to
dear and the cheapest, by an operation-count cost model, reaching ``recall_target`` recall@10 is kept.

Fallback: when no setting reaches the target, or the winner costs more than half of brute force (uniform random
data, where no index beats a scan), an approximate index would return poor results or save nothing. Then

- float32 Flat, if it fits the budget;
- otherwise ``"exact:raw-f16"``: exact search scanning the fp16 vectors on disk block by block (the same file the
  PQ index would re-rank from), so RAM holds only the ids and one block. Results are exact up to fp16 rounding
  (recall@10 measured on the held-out queries, normally 1.0); every query costs a full scan (brute-force speed).

Both come with a RuntimeWarning and ``info()["warning"]``; ``info()["rejected"]`` keeps the approximate index's
best measured setting. With an explicit ``index_key`` the key is kept at its best setting (still warned).
"""

from __future__ import annotations

import math
import time
import warnings
from typing import TypeVar

import faiss
import numpy as np
from bindkit.progress import progress_bar

from bindkit.errors import IndexStoreError
from bindkit.index.vectors.core import VectorIndexBase
from bindkit.index.vectors.faiss_keys import (EXACT_RAW, FLAT, _new_faiss, fast_training, is_lossy, kind_of,
                                              trained_fingerprint)
from bindkit.index.vectors.raw import RawStore
from bindkit.index.vectors.topk import merge_topk

_V = TypeVar("_V", bound=VectorIndexBase)

DEFAULT_MEMORY_BUDGET = 2 * 1024**3  # bytes of RAM one modality's FAISS index may take
FLAT_MAX = 50_000
MEDIUM_MAX = 2_000_000
K = 10
CHUNK = 65536
ADD_CHUNK = 8192  # FAISS IVF-PQ add needs scratch of tens of KiB per vector at d = 1024 (+2.4 GiB at 65536)
_RERANK_FACTORS = (1, 2, 5, 10, 20, 50, 100, 200)
_EF_SEARCH = (16, 32, 64, 128, 256, 512, 1024)


def nlist_for(n: int) -> int:
    return int(min(65536, max(16, 2 ** round(math.log2(max(1.0, math.sqrt(n)))))))


def pq_m_for(n: int, dim: int, budget: int) -> int:
    """PQ sub-quantizers: about 16 dims each (at most 64 bytes a vector), fewer while codes overflow the budget."""
    divisors = [m for m in (128, 96, 64, 48, 32, 24, 16, 12, 8, 4, 2, 1) if dim % m == 0]
    fitting = [m for m in divisors if m <= max(1, min(64, dim // 8)) and n * (m + 24) <= budget]
    return fitting[0] if fitting else divisors[-1]


def choose_key(n: int, dim: int, memory_budget_bytes: int | None = None) -> tuple[str, str]:
    """(factory key, reason in words) for ``n`` vectors of ``dim`` under a RAM budget (bytes)."""
    budget = DEFAULT_MEMORY_BUDGET if memory_budget_bytes is None else int(memory_budget_bytes)
    flat_bytes = 4 * n * dim + 16 * n
    if n < FLAT_MAX and flat_bytes <= budget:
        return FLAT, f"{n} < {FLAT_MAX} vectors: exact search is fast enough"
    if n <= MEDIUM_MAX and flat_bytes <= budget:
        return f"IVF{nlist_for(n)},Flat", f"{n} vectors, float32 ({flat_bytes / 2**20:.0f} MiB) fit the budget"
    m = pq_m_for(n, dim, budget)
    return (f"IVF{nlist_for(n)},PQ{m}",
            f"{n} vectors, float32 ({flat_bytes / 2**20:.0f} MiB) exceed the budget ({budget / 2**20:.0f} MiB) "
            "or the medium range: PQ codes in RAM, fp16 vectors on disk for exact re-ranking")


def _bar(progress: bool, **kw):
    """``progress=True`` means: when stderr is a terminal (the shared rule); False: never."""
    return progress_bar(None if progress else False, **kw)


def _rows_f32(vectors, rows: np.ndarray) -> np.ndarray:
    order = np.argsort(rows)
    out = np.empty((rows.size, vectors.shape[1]), np.float32)
    out[order] = np.asarray(vectors[rows[order]], np.float32)
    return out


def exact_topk(queries: np.ndarray, ids: np.ndarray, vectors, k: int, progress: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top k of ``queries`` over ``vectors`` (n, d), read in chunks (ground truth)."""
    best = (np.full((queries.shape[0], k), -np.inf, np.float32), np.full((queries.shape[0], k), -1, np.int64))
    for s in _bar(progress, iterable=range(0, ids.size, CHUNK), desc="exact ground truth", unit="chunk"):
        x = np.ascontiguousarray(vectors[s:s + CHUNK], np.float32)
        kk = min(k, x.shape[0])
        d, i = faiss.knn(queries, x, kk, metric=_IP)
        part = (np.pad(d, ((0, 0), (0, k - kk)), constant_values=-np.inf),
                np.pad(ids[s:s + CHUNK][i], ((0, 0), (0, k - kk)), constant_values=-1))
        best = merge_topk(best, part, k)
    return best


_IP = faiss.METRIC_INNER_PRODUCT


def held_out(ids: np.ndarray, vectors, n_q: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(query rows, perturbed unit queries float32 (n_q, d)) drawn from the stored vectors."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(ids.size, size=n_q, replace=False))
    q = _rows_f32(vectors, rows)
    noise = rng.standard_normal(q.shape).astype(np.float32)
    q += 0.05 * noise / np.linalg.norm(noise, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return rows, q


def _drop_self(found: np.ndarray, self_ids: np.ndarray, k: int) -> np.ndarray:
    """First k ids of each row of ``found`` other than that row's own source id (-1 padded)."""
    out = np.full((found.shape[0], k), -1, np.int64)
    for r in range(found.shape[0]):
        row = found[r][(found[r] != self_ids[r]) & (found[r] >= 0)][:k]
        out[r, :row.size] = row
    return out


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row's true ids (-1 ignored) present in ``found``."""
    hits = sum(np.isin(t[t >= 0], f).sum() for f, t in zip(found, truth))
    total = int((truth >= 0).sum())
    return float(hits / total) if total else 1.0


def build_tuned(ids: np.ndarray, vectors, *, cls: type[_V], memory_budget_bytes: int | None = None,
                index_key: str | None = None, recall_target: float = 0.95, progress: bool = True) -> _V:
    """See :meth:`VectorIndex.optimize`. ``vectors``: (n, d) array-like in ``ids`` order, row-sliceable; ``cls``:
    the class of the index returned (:class:`~bindkit.index.vectors.index.VectorIndex`)."""
    n, dim = int(ids.size), int(vectors.shape[1])
    budget = DEFAULT_MEMORY_BUDGET if memory_budget_bytes is None else int(memory_budget_bytes)
    if index_key:
        key, reason = index_key.strip(), "index_key given"
    else:
        key, reason = choose_key(n, dim, budget)
    n_q = min(500, max(50, n // 20))
    if key == EXACT_RAW:
        return _raw_exact(cls, ids, vectors, dim, None, {"reason": reason})
    if key == FLAT or n < 4 * n_q:
        return _flat(cls, ids, vectors, dim, {"reason": reason if key == FLAT else f"only {n} vectors: exact"})
    q_rows, queries = held_out(ids, vectors, n_q)
    index = _new_faiss(dim, key)
    t0 = time.perf_counter()
    trained = _train(index, key, ids, vectors, q_rows, progress)
    params = {} if trained is None else {"trained": trained}
    t1 = time.perf_counter()
    raw = _fill(index, key, dim, ids, vectors, progress)
    vi = cls(dim, index, key, params=params, raw=raw)
    t2 = time.perf_counter()
    truth = exact_topk(queries, ids, vectors, K + 1, progress)[1]
    truth = _drop_self(truth, ids[q_rows], K)
    table = _tune(vi, queries, ids[q_rows], truth, n, recall_target, progress)
    seconds = {"train": round(t1 - t0, 2), "add": round(t2 - t1, 2), "tune": round(time.perf_counter() - t2, 2)}
    ok = [t for t in table if t["recall"] >= recall_target]
    flat_cost = float(n * dim)
    best = min(ok, key=lambda t: t["cost"]) if ok else max(table, key=lambda t: (t["recall"], -t["cost"]))
    extra = {"reason": reason, "seconds": seconds, "tuning": {"queries": n_q, "target": recall_target,
                                          "table": [{k: v for k, v in t.items()} for t in table]}}
    if not ok or best["cost"] > 0.5 * flat_cost:
        fallback = _fall_back(cls, ids, vectors, key, index_key, raw, budget, best, ok, recall_target, extra)
        if fallback is not None:
            if fallback.key == EXACT_RAW:
                m = min(n_q, 100)  # one scan of the whole store: recall is exact by construction, this checks it
                found = fallback.search_with(queries[:m], K + 1)[1]
                return _raw_exact(cls, ids, vectors, dim, fallback.raw, extra,
                                  recall=round(recall_at(_drop_self(found, ids[q_rows[:m]], K), truth[:m]), 4))
            return fallback
    params.update({p: best[p] for p in ("nprobe", "rerank", "efSearch") if p in best})
    extra["ram_bytes"] = int(faiss.serialize_index(index).nbytes)
    return cls(dim, index, key, params=params, recall=round(best["recall"], 4), raw=raw, extra=extra)


def _fall_back(cls: type[_V], ids: np.ndarray, vectors, key: str, index_key: str | None, raw: RawStore | None,
               budget: int, best: dict, ok: list, recall_target: float, extra: dict) -> _V | None:
    """When tuning found no good setting: warn, and return exact Flat (fits the budget) or the exact disk scan
    (no ``index_key`` given); None keeps ``key`` at its best setting. Updates ``extra`` (warning, rejected)."""
    n, dim = int(ids.size), int(vectors.shape[1])
    flat_cost = float(n * dim)
    why = (f"best recall@10 {best['recall']:.3f} < target {recall_target}" if not ok else
           f"reaching recall@10 {recall_target} costs {best['cost'] / flat_cost:.0%} of brute force")
    flat_bytes = 4 * n * dim + 16 * n
    over = f"float32 Flat ({flat_bytes / 2**20:.0f} MiB) exceeds the memory budget ({budget / 2**20:.0f} MiB)"
    extra["rejected"] = {"key": key, **best}
    if flat_bytes <= budget:
        warning = f"{key}: {why} (data look unstructured); fell back to exact Flat"
    elif not index_key:
        warning = (f"{key}: {why} (data look unstructured) and {over}; fell back to {EXACT_RAW}, exact search "
                   f"over the fp16 vectors on disk: results are exact but every query scans all {n} vectors "
                   f"({2 * n * dim / 2**20:.0f} MiB) at brute-force speed")
    else:
        warning = (f"{key}: {why} (data look unstructured) and {over}; kept the highest-recall setting of the "
                   f"given index_key -- use index_key={EXACT_RAW!r} for exact search from disk, or raise "
                   "memory_budget_bytes for Flat")
    warnings.warn(warning, RuntimeWarning, stacklevel=4)
    extra.update(warning=warning, reason=f"{extra['reason']}; {warning}")
    if flat_bytes <= budget:
        return _flat(cls, ids, vectors, dim, extra)
    if not index_key:
        return _raw_exact(cls, ids, vectors, dim, raw, extra)
    return None


def _flat(cls: type[_V], ids: np.ndarray, vectors, dim: int, extra: dict) -> _V:
    index = _new_faiss(dim, FLAT)
    for s in range(0, ids.size, CHUNK):
        index.add_with_ids(np.ascontiguousarray(vectors[s:s + CHUNK], np.float32), ids[s:s + CHUNK])
    return cls(dim, index, FLAT, recall=1.0, extra={**extra, "ram_bytes": 4 * ids.size * dim + 16 * ids.size})


def _raw_exact(cls: type[_V], ids: np.ndarray, vectors, dim: int, raw: RawStore | None, extra: dict,
               recall: float = 1.0) -> _V:
    """An ``"exact:raw-f16"`` index over ``raw`` (the fp16 store a PQ index was given), or over ``vectors``."""
    if raw is None:
        raw = RawStore.from_array(ids, vectors)
    # RAM once opened from disk: ids (row order + sorted lookup) and the scan's block buffers
    return cls(dim, None, EXACT_RAW, recall=recall, raw=raw,
               extra={**extra, "ram_bytes": 24 * ids.size + raw.scan_buffer_bytes})


def _train(index: faiss.Index, key: str, ids: np.ndarray, vectors, q_rows: np.ndarray, progress: bool
           ) -> str | None:
    """Train the empty ``index`` on stored vectors other than the held-out queries; its digest (None: nothing
    to train)."""
    ivf = faiss.extract_index_ivf(index) if kind_of(key) == "ivf" else None
    if ivf is None and index.is_trained:
        return None
    # 40 points per coarse centroid, and per PQ/SQ codebook entry (256) when the codec trains one
    wanted = max(40 * ivf.nlist if ivf is not None else 0, 40 * 256 if is_lossy(key) else 0, 1000)
    n_train = min(ids.size - q_rows.size, wanted)
    need = 39 * ivf.nlist if ivf is not None else 256
    if ids.size - q_rows.size < min(need, 1000):
        raise IndexStoreError(f"{ids.size} vectors are too few to train {key!r}; use 'Flat' or a smaller nlist")
    rng = np.random.default_rng(1)
    pool = np.setdiff1d(np.arange(ids.size), q_rows)
    rows = np.sort(rng.choice(pool, size=n_train, replace=False))
    fast_training(index)
    with _bar(progress, total=1, desc=f"train {key}"):
        index.train(_rows_f32(vectors, rows))
    return trained_fingerprint(index)


def _fill(index: faiss.Index, key: str, dim: int, ids: np.ndarray, vectors, progress: bool) -> RawStore | None:
    """Add every vector to the trained ``index``; returns the fp16 raw store a lossy key re-ranks from."""
    lossy = is_lossy(key)
    raw = None
    if lossy:
        raw = RawStore.from_array(ids, vectors) if getattr(vectors, "dtype", None) == np.float16 \
            else RawStore(dim)
    with _bar(progress, total=ids.size, desc=f"add {key}", unit="vec") as bar:
        for s in range(0, ids.size, ADD_CHUNK):
            x = np.ascontiguousarray(vectors[s:s + ADD_CHUNK], np.float32)
            index.add_with_ids(x, ids[s:s + ADD_CHUNK])
            if lossy and vectors.dtype != np.float16:
                raw.add(ids[s:s + ADD_CHUNK], x)
            bar.update(x.shape[0])
    return raw


def _tune(vi: VectorIndexBase, queries: np.ndarray, self_ids: np.ndarray, truth: np.ndarray, n: int,
          target: float, progress: bool) -> list[dict]:
    """Measured settings: [{"nprobe"/"efSearch", "rerank"?, "recall", "cost"}] (cost = operations per query)."""
    d = vi.dim
    table: list[dict] = []
    if vi.key.startswith("HNSW"):
        for ef in _bar(progress, iterable=_EF_SEARCH, desc="tune efSearch"):
            found = vi.search_with(queries, K + 1, efSearch=ef)[1]
            table.append({"efSearch": ef, "recall": recall_at(_drop_self(found, self_ids, K), truth),
                          "cost": float(ef * 32 * d)})
            if table[-1]["recall"] >= target:
                break
        return table
    ivf = faiss.try_extract_index_ivf(vi.faiss_index)
    if ivf is None:  # a flat-code index (e.g. "PQ16", "SQ8"): only the re-rank depth to choose
        if vi.raw is None:
            found = vi.search_with(queries, K + 1)[1]
            return [{"recall": recall_at(_drop_self(found, self_ids, K), truth), "cost": float(n * d)}]
        nlist, code = 1, vi.faiss_index.sa_code_size()
    else:
        nlist = ivf.nlist
        code = ivf.code_size if vi.raw is not None else 4 * d
    per_list = n / nlist
    nprobes = [p for p in (2 ** i for i in range(17)) if p < nlist] + [nlist]
    best_cost = math.inf
    bar = _bar(progress, total=len(nprobes), desc="tune nprobe")
    for p in nprobes:
        scan = nlist * d + p * per_list * (code if vi.raw is not None else d)
        if scan >= best_cost:
            break
        if vi.raw is None:
            found = vi.search_with(queries, K + 1, nprobe=p)[1]
            table.append({"nprobe": p, "recall": recall_at(_drop_self(found, self_ids, K), truth), "cost": scan})
        else:
            depth = min(n, _RERANK_FACTORS[-1] * (K + 1))
            params = vi.search_params(nprobe=p) if ivf is not None else None
            cand = vi.faiss_index.search(queries, depth, params=params)[1]
            exact = vi.candidate_scores(queries, cand)  # once; each depth re-ranks a prefix of it
            for f in _RERANK_FACTORS:
                r = min(n, f * (K + 1))
                found = vi.rerank(queries, cand[:, :r], K + 1, scores=exact[:, :r])[1]
                rec = recall_at(_drop_self(found, self_ids, K), truth)
                table.append({**({"nprobe": p} if ivf is not None else {}), "rerank": f, "recall": rec,
                              "cost": scan + 2 * r * d})
                if rec >= target:
                    break
        hit = [t["cost"] for t in table if t["recall"] >= target]
        best_cost = min(best_cost, min(hit) if hit else math.inf)
        bar.update(1)
    bar.close()
    return table


class VectorsOf:
    """Array-like view (n, dim) of an index's vectors in ``ids()`` order, read in row slices (for optimize)."""

    def __init__(self, vi: VectorIndexBase):
        self._vi = vi
        self.shape = (len(vi), vi.dim)
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray:
        ids = self._vi.ids()[rows]
        return self._vi.get_vectors(np.atleast_1d(ids))
