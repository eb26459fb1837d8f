"""How closely a distilled student follows its teacher: cosine between their vectors of the same items,
top-k agreement of their neighbours, speed of each, and (with an index built by the teacher) agreement of the
ids the index returns (:func:`distillation`, scoring in :func:`distill_scores`)."""

from __future__ import annotations

from typing import Any, Iterable, Sequence, TYPE_CHECKING

import numpy as np

from ..modality import input_kind
from .metrics import normalize_rows

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel


def topk_agreement(reference: Sequence[Sequence[int]], found: Sequence[Sequence[int]], k: int) -> float:
    """Mean over queries of the share of ``reference[q][:k]`` (the teacher's own top-k ids) that ``found[q][:k]``
    (the student's top-k) contains; queries without reference ids are left out (nan when none is left)."""
    shares = [len(set(r[:k]) & set(f[:k])) / len(r[:k]) for r, f in zip(reference, found) if len(r)]
    return float(np.mean(shares)) if shares else float("nan")


def distill_scores(student: np.ndarray, teacher: np.ndarray, candidates: np.ndarray | None = None,
                   ks: Iterable[int] = (10,)) -> dict[str, Any]:
    """How well a student reproduces its teacher on N items: cosine of each item's two vectors, and R@k vs
    teacher: for each item as a query, the share of the teacher's top-k candidates (by the teacher's query
    vector) that the student's query vector also ranks in its top-k.

    Args:
        student, teacher: (N, D) vectors of the same items (normalised here).
        candidates: (M, D) candidate vectors (computed by the teacher), e.g. the other modality's items of an
            index; None: the teacher's vectors of the N items themselves, each query excluding its own item.
        ks: the cut-offs.

    Returns:
        ``n``, ``mean_cosine``, ``median_cosine``, ``p05_cosine`` (5th percentile), ``min_cosine``,
        ``candidates`` (M) and ``recall_vs_teacher`` ``{"R@k": share}``.
    """
    s, t = normalize_rows(student), normalize_rows(teacher)
    if s.shape != t.shape or s.ndim != 2:
        raise ValueError(f"student {s.shape} and teacher {t.shape} vectors must both be (N, D)")
    cos = (s * t).sum(axis=1)
    own = candidates is None
    c = t if own else normalize_rows(candidates)
    ks = sorted({int(k) for k in ks})
    out: dict[str, Any] = {"n": int(len(s)), "candidates": int(len(c) - (1 if own else 0))}
    out.update({name: float(f(cos)) if len(cos) else float("nan") for name, f in (
        ("mean_cosine", np.mean), ("median_cosine", np.median), ("p05_cosine", lambda x: np.percentile(x, 5)),
        ("min_cosine", np.min))})
    recall: dict[str, float] = {}
    if len(s) and out["candidates"] > 0:
        ts, ss = t @ c.T, s @ c.T
        if own:
            np.fill_diagonal(ts, -np.inf)
            np.fill_diagonal(ss, -np.inf)
        top = min(max(ks), out["candidates"])
        t_top = np.argsort(-ts, axis=1, kind="stable")[:, :top]
        s_top = np.argsort(-ss, axis=1, kind="stable")[:, :top]
        recall = {f"R@{k}": topk_agreement(t_top.tolist(), s_top.tolist(), k) for k in ks}
    out["recall_vs_teacher"] = recall
    return out


def _timed_embed(model: "BindModel", kind: str, items: list[Any], batch_size: int, show: bool | None) -> tuple[Any, float]:
    import time

    model.embed(**{kind: items[:2]}, batch_size=batch_size, show_progress_bar=False)  # warm: tokenizer, kernels
    t0 = time.perf_counter()
    emb = model.embed(**{kind: items}, batch_size=batch_size, show_progress_bar=show)
    return emb, len(items) / max(time.perf_counter() - t0, 1e-9)


def distillation(student: Any, teacher: Any, items: Sequence[Any], modality: str, *, index: Any = None,
                 ks: Iterable[int] = (1, 5, 10), batch_size: int = 64,
                 show_progress: bool | None = None) -> dict[str, Any]:
    """A distilled student against its teacher on held-out items of one modality (``bindkit eval STUDENT
    --distill HELDOUT``).

    Reports the student-teacher cosine of every item and R@k vs teacher (see :func:`distill_scores`) over two
    candidate sets: the held-out items themselves (same modality, each query excluding itself), and, with
    ``index`` (a path to an index built with the teacher), every modality that index holds — searched through
    ``Index.open(index, model=student)`` exactly as a user would, against the teacher's own results. Also the
    end-to-end speed of both models (loading + encoding, same run).

    Returns:
        ``task``, ``modality``, ``rows``, ``skipped`` (+ ``skipped_rows``), :func:`distill_scores`'s cosine
        figures, ``recall_vs_teacher`` ``{candidate set: {"R@k": share}}``, ``candidates`` ``{set: count}`` and
        ``items_per_s`` ``{"student": ..., "teacher": ...}``.
    """
    kind = input_kind(modality)
    items = list(items)
    ks = sorted({int(k) for k in ks})
    emb_t, speed_t = _timed_embed(teacher, kind, items, batch_size, show_progress)
    emb_s, speed_s = _timed_embed(student, kind, items, batch_size, show_progress)
    ok = emb_t.ok(kind) & emb_s.ok(kind)
    skipped = [{"row": e.index + 1, "item": e.item, "reason": e.reason} for e in emb_t.errors + emb_s.errors]
    t_vec, s_vec = emb_t[kind][ok], emb_s[kind][ok]
    scores = distill_scores(s_vec, t_vec, ks=ks)
    own = f"held-out {kind}"
    report: dict[str, Any] = {"task": "distillation", "modality": kind, "rows": len(items),
                              "skipped": int((~ok).sum()), "skipped_rows": skipped,
                              **{k: v for k, v in scores.items() if k not in ("recall_vs_teacher", "candidates")},
                              "recall_vs_teacher": {own: scores["recall_vs_teacher"]},
                              "candidates": {own: scores["candidates"]},
                              "items_per_s": {"student": round(speed_s, 1), "teacher": round(speed_t, 1)}}
    if index is not None and scores["n"]:
        queries = [it for it, good in zip(items, ok) if good]
        report["index"] = str(index)
        for result_kind, (counts, shares) in _index_agreement(index, student, teacher, kind, queries, ks).items():
            report["recall_vs_teacher"][f"index {result_kind}"] = shares
            report["candidates"][f"index {result_kind}"] = counts
    return report


def _index_agreement(path: Any, student: Any, teacher: Any, kind: str, queries: list[Any],
                     ks: list[int]) -> dict[str, tuple[int, dict[str, float]]]:
    """{result kind: (candidates, {"R@k": share})}: the student's top-k hits among the teacher's own top-k, each
    model searching the index (read-only) with the same queries."""
    from ..index import Index

    hits: dict[str, list[dict[str, list[Any]]]] = {}
    counts: dict[str, int] = {}
    for who, model in (("teacher", teacher), ("student", student)):
        with Index.open(path, model=model, read_only=True) as idx:
            if who == "teacher":
                counts = {rk: int(v["count"]) for rk, v in idx.stats()["modalities"].items()}
            hits[who] = [idx.search(**{kind: queries[i:i + 256]}, k=max(ks)) for i in range(0, len(queries), 256)]
    out = {}
    for rk in sorted(counts):
        ref = [[h.id for h in q[rk]] for part in hits["teacher"] for q in part]
        got = [[h.id for h in q[rk]] for part in hits["student"] for q in part]
        out[rk] = (counts[rk], {f"R@{k}": topk_agreement(ref, got, k) for k in ks})
    return out
