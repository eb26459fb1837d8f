"""Scoring on vectors, separate from embedding so that it can be checked on constructed vectors: zero-shot
classification (:func:`zero_shot_scores`, CLIP's prompt averaging in :func:`average_prompts`) and cross-modal
retrieval recall (:func:`retrieval_scores`). Ties go against the model (see :mod:`bindkit.eval`)."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def average_prompts(prompt_embeddings: np.ndarray) -> np.ndarray:
    """(classes, templates, dim) prompt embeddings -> (classes, dim) class embeddings: normalise each prompt,
    average over templates, renormalise (CLIP's prompt ensembling)."""
    e = np.asarray(prompt_embeddings, dtype=np.float64)
    if e.ndim != 3:
        raise ValueError(f"expected (classes, templates, dim), got shape {e.shape}")
    return normalize_rows(normalize_rows(e).mean(axis=1))


def zero_shot_scores(
    embeddings: np.ndarray,
    class_embeddings: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Zero-shot classification scores: each item gets the class whose embedding has the highest cosine.

    Args:
        embeddings: (N, D) item embeddings (normalised here).
        class_embeddings: (C, D) class embeddings (normalised here).
        labels: N true class indices in 0..C-1.
        class_names: C names for ``per_class`` (default ``"0"``..``"C-1"``).

    Returns:
        ``n``; ``accuracy`` (top-1, fraction in [0, 1]); ``top5`` (when C > 5); ``balanced_accuracy`` (mean of
        the per-class accuracies over classes with items); ``chance`` (1/C); ``per_class`` ({name: accuracy,
        None when the class has no items}); ``per_class_n`` ({name: items}); ``predictions`` (N indices);
        ``confusion`` (C x C counts, rows = true class).
    """
    x = normalize_rows(embeddings)
    c = normalize_rows(class_embeddings)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if x.ndim != 2 or c.ndim != 2 or x.shape[1] != c.shape[1]:
        raise ValueError(f"embeddings {x.shape} and class_embeddings {c.shape} must be (N, D) and (C, D)")
    if len(y) != len(x):
        raise ValueError(f"{len(x)} embeddings but {len(y)} labels")
    n_cls = c.shape[0]
    if n_cls == 0:
        raise ValueError("no classes")
    if len(y) and (y.min() < 0 or y.max() >= n_cls):
        raise ValueError(f"labels must be in 0..{n_cls - 1}")
    names = [str(i) for i in range(n_cls)] if class_names is None else [str(s) for s in class_names]
    if len(names) != n_cls:
        raise ValueError(f"{len(names)} class names for {n_cls} classes")
    sims = x @ c.T
    pred = sims.argmax(axis=1) if len(y) else np.zeros(0, dtype=np.int64)
    correct = pred == y
    confusion = np.zeros((n_cls, n_cls), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    per_n = confusion.sum(axis=1)
    per_acc = [float(confusion[k, k] / per_n[k]) if per_n[k] else None for k in range(n_cls)]
    present = [a for a in per_acc if a is not None]
    out: dict[str, Any] = {
        "n": int(len(y)),
        "accuracy": float(correct.mean()) if len(y) else float("nan"),
        "balanced_accuracy": float(np.mean(present)) if present else float("nan"),
        "chance": 1.0 / n_cls,
        "per_class": dict(zip(names, per_acc)),
        "per_class_n": {name: int(k) for name, k in zip(names, per_n)},
        "predictions": pred.astype(int).tolist(),
        "confusion": confusion.tolist(),
    }
    if n_cls > 5 and len(y):
        true = sims[np.arange(len(y)), y]
        out["top5"] = float(((sims > true[:, None]).sum(axis=1) < 5).mean())
    return out


def ranks(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """0-based rank of the true match (candidate i for query i) among all candidates, by cosine; candidates
    scoring equal to the true one count as ranked above it (ties go against the model)."""
    q, c = normalize_rows(queries), normalize_rows(candidates)
    if q.shape != c.shape:
        raise ValueError(f"queries {q.shape} and candidates {c.shape} must have the same shape (pairs)")
    sims = q @ c.T
    true = np.diag(sims)
    above = (sims >= true[:, None]).sum(axis=1) - 1  # minus the true match itself
    return above.astype(np.int64)


def retrieval_scores(a: np.ndarray, b: np.ndarray, ks: Iterable[int] = DEFAULT_KS,
                     names: tuple[str, str] = ("a", "b")) -> dict[str, Any]:
    """Recall@k both ways for N aligned pairs (row i of ``a`` matches row i of ``b``).

    Returns ``n``, and for each direction ``"<a>_to_<b>"`` / ``"<b>_to_<a>"`` a dict ``{"R@1": ..., "R@5": ...,
    "median_rank": ...}`` (fractions in [0, 1]; median rank 1-based), plus ``chance`` ``{"R@k": k / n}``.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError("ks must be positive integers")
    n = int(np.asarray(a).shape[0])
    out: dict[str, Any] = {"n": n}
    for (qa, qn), (ca, cn) in (((a, names[0]), (b, names[1])), ((b, names[1]), (a, names[0]))):
        r = ranks(qa, ca) if n else np.zeros(0, dtype=np.int64)
        d = {f"R@{k}": float((r < k).mean()) if n else float("nan") for k in ks}
        d["median_rank"] = float(np.median(r) + 1) if n else float("nan")
        out[f"{qn}_to_{cn}"] = d
    out["chance"] = {f"R@{k}": min(1.0, k / n) if n else float("nan") for k in ks}
    return out
