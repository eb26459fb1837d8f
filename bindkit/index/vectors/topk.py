"""Exact top-k helpers over small sets of vectors (filtered search, re-ranking, ground truth, disk scans)."""

from __future__ import annotations

import numpy as np


def empty_result(nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores (nq, k) of -inf and ids (nq, k) of -1: "no hit"."""
    return np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)


def topk_of_scores(s: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` of each row of scores ``s`` (q, m) over columns named ``ids`` (m,); -inf columns count as
    absent (their id comes back as -1). Returns scores float32 (q, k), ids int64 (q, k), -inf/-1 padded."""
    scores, out = empty_result(s.shape[0], k)
    kk = min(k, ids.size)
    if kk == 0:
        return scores, out
    if kk < ids.size:
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(ids.size), s.shape)
    ps = np.take_along_axis(s, part, 1)
    order = np.argsort(-ps, axis=1, kind="stable")
    scores[:, :kk] = np.take_along_axis(ps, order, 1)
    out[:, :kk] = np.where(np.isneginf(scores[:, :kk]), -1, ids[np.take_along_axis(part, order, 1)])
    return scores, out


def topk_exact(queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Exact top k of ``queries`` (q, d) over ``vectors`` (m, d) float16/32 with ids (m,); -1/-inf padded."""
    if ids.size == 0:
        return empty_result(queries.shape[0], k)
    return topk_of_scores(queries @ np.asarray(vectors, np.float32).T, ids, k)


def merge_topk(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], k: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Merge two (scores, ids) top-k results row by row."""
    s = np.concatenate([a[0], b[0]], 1)
    i = np.concatenate([a[1], b[1]], 1)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)
