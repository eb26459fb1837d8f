"""Evaluation: zero-shot classification through text prompts and cross-modal retrieval, on manifests.

Scoring is separate from embedding, so it can be checked on constructed vectors::

    zero_shot_scores(embeddings, class_embeddings, labels, class_names)   # accuracy, per-class accuracy
    retrieval_scores(a, b)                                                # R@1/5/10 both ways

and the end-to-end functions take a model and a manifest::

    report = zero_shot(model, "test/audio_material.csv", classes=["metal", "wood", "glass", "rubber"],
                       templates=["a {} object"])
    report = retrieval(model, "test/image_audio.csv")

Manifests are CSV (``.tsv``: tab-separated), JSON Lines (``.jsonl``) or Parquet whose columns are named by
modality (``image``, ``audio``, ``text``...; aliases such as ``vision`` accepted); paths are relative to the
manifest's folder and a ``text`` column holds the text itself. Rows that cannot be used (missing files,
corrupt media, empty text, unknown labels) are skipped and reported, never a crash.

Conventions: class prompts are averaged over templates as CLIP does (embed every template filled with the
class name, L2-normalise each, average, renormalise). Ties go against the model: in retrieval the true match
must score strictly above every other candidate to be ranked first (a collapsed model that maps everything to
one vector gets R@1 ~ 0, not 100%), and in classification ``argmax`` takes the lowest class index.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from . import tables
from .errors import EvalError, ModalityError  # noqa: F401  (EvalError moved to bindkit.errors)
from .modality import input_kind
from .tables import TableError

#: Default prompt template (CLIP's).
DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)
DEFAULT_KS: tuple[int, ...] = (1, 5, 10)


# ----------------------------------------------------------------------------------------------- scoring


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


# ----------------------------------------------------------------------------------------------- manifests


def read_table(path: str | os.PathLike) -> tuple[list[str], list[dict[str, Any]]]:
    """(column names, rows as dicts) of a CSV/TSV, JSON Lines or Parquet file (:func:`bindkit.tables.read_table`;
    EvalError naming the file, and the line where it applies)."""
    p = Path(path)
    if not p.is_file():
        raise EvalError(f"{p}: no such file")
    try:
        table = tables.read_table(p)
    except TableError as exc:
        raise EvalError(f"{p} {exc}" if exc.line is not None else f"{p}: {exc}") from None
    return table.columns, table.rows


def modality_columns(columns: Iterable[str]) -> dict[str, str]:
    """``{input kind: column name}`` for the columns named by a modality (``vision`` -> image); others ignored."""
    found: dict[str, str] = {}
    for col in columns:
        try:
            kind = input_kind(col)
        except ModalityError:
            continue
        if kind in found:
            raise EvalError(f"columns {found[kind]!r} and {col!r} both mean {kind}; keep one")
        found[kind] = col
    return found


def _item(value: Any, kind: str, base: Path) -> tuple[Any, str | None]:
    """(item for model.embed, reason it is unusable or None)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None, "empty cell"
    if kind == "text":
        text = str(value)
        return (text, None) if text.strip() else (None, "empty text")
    s = str(value).strip()
    if not s:
        return None, "empty cell"
    path = Path(s).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        return None, f"no such file: {path}"
    return str(path), None


def parse_label(value: Any, classes: Sequence[str]) -> int | None:
    """Class index of ``value``: a class name (exact, else case-insensitive), else an integer index in range;
    None when it is neither."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value) if 0 <= int(value) < len(classes) else None
    if value is None:
        return None
    s = str(value).strip()
    if s in classes:
        return list(classes).index(s)
    lower = [c.lower() for c in classes]
    if s.lower() in lower:
        return lower.index(s.lower())
    try:
        k = int(s)
    except ValueError:
        return None
    return k if 0 <= k < len(classes) else None


def load_classes(path: str | os.PathLike) -> list[str]:
    """A JSON list of class names (strings), or ``{"classes": [...]}``."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalError(f"{p}: no such class file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise EvalError(f"{p}: not a JSON list of class names ({exc})") from None
    if isinstance(data, dict) and "classes" in data:
        data = data["classes"]
    if not isinstance(data, list) or not data or not all(isinstance(c, str) and c.strip() for c in data):
        raise EvalError(f"{p}: expected a non-empty JSON list of class names, e.g. [\"dog\", \"cat\"]")
    if len(set(data)) != len(data):
        raise EvalError(f"{p}: class names repeat")
    return list(data)


def load_templates(specs: Sequence[str] | None) -> list[str]:
    """Templates from strings containing ``{}`` and/or ``.json`` files holding a list of them; default
    :data:`DEFAULT_TEMPLATES`."""
    if not specs:
        return list(DEFAULT_TEMPLATES)
    out: list[str] = []
    for spec in specs:
        if "{}" not in spec and spec.lower().endswith(".json"):
            try:
                data = json.loads(Path(spec).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise EvalError(f"template file {spec}: cannot read a JSON list of templates ({exc})") from None
            if not isinstance(data, list) or not all(isinstance(t, str) for t in data):
                raise EvalError(f"template file {spec}: expected a JSON list of strings")
            out.extend(data)
        else:
            out.append(spec)
    bad = [t for t in out if "{}" not in t]
    if bad:
        raise EvalError(f"template {bad[0]!r} has no {{}} for the class name (e.g. \"a photo of a {{}}\")")
    if not out:
        raise EvalError("no templates")
    return out


# ----------------------------------------------------------------------------------------------- end to end


def class_embeddings(model: Any, classes: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES,
                     batch_size: int = 64) -> np.ndarray:
    """(C, D) class embeddings: every template filled with every class name, embedded as text, averaged per
    class (see :func:`average_prompts`)."""
    prompts = [t.replace("{}", c) for c in classes for t in templates]
    emb = model.embed(text=prompts, batch_size=batch_size, strict=True, show_progress_bar=False)["text"]
    return average_prompts(emb.reshape(len(classes), len(templates), -1))


def _skip(skipped: list[dict[str, Any]], row: int, item: Any, reason: str) -> None:
    skipped.append({"row": row, "item": str(item), "reason": reason})


def zero_shot(
    model: Any,
    test: str | os.PathLike,
    classes: Sequence[str],
    templates: Sequence[str] | None = None,
    *,
    modality: str | None = None,
    batch_size: int = 32,
    show_progress: bool | None = None,
) -> dict[str, Any]:
    """Zero-shot classification of the items of ``test`` (one modality column plus ``label``) against text
    prompts of ``classes``.

    Returns :func:`zero_shot_scores`'s dict plus ``task``, ``modality``, ``file``, ``classes``,
    ``templates``, ``rows`` (in the file), ``skipped`` (count) and ``skipped_rows`` (row number 1-based,
    item, reason).
    """
    templates = load_templates(templates)
    classes = list(classes)
    path = Path(test)
    columns, rows = read_table(path)
    kinds = modality_columns(columns)
    if "label" not in columns:
        raise EvalError(f"{path}: no 'label' column (columns: {', '.join(columns)}); a zero-shot test file has "
                        "one modality column and a label column (class name or index)")
    if modality is not None:
        kind = input_kind(modality)
        if kind not in kinds:
            raise EvalError(f"{path}: no {kind} column (columns: {', '.join(columns)})")
    elif len(kinds) == 1:
        kind = next(iter(kinds))
    elif not kinds:
        raise EvalError(f"{path}: no column named by a modality (image, video, text, audio, depth, thermal, imu); "
                        f"columns: {', '.join(columns)}")
    else:
        raise EvalError(f"{path}: several modality columns ({', '.join(kinds.values())}); choose one with "
                        "--modality (modality=...)")
    col = kinds[kind]
    items, labels, row_of, skipped = [], [], [], []
    for i, r in enumerate(rows, 1):
        item, why = _item(r.get(col), kind, path.parent)
        label = parse_label(r.get("label"), classes)
        if label is None:
            why = why or f"label {r.get('label')!r} is neither a class name nor an index 0..{len(classes) - 1}"
        if why:
            _skip(skipped, i, r.get(col), why)
            continue
        items.append(item)
        labels.append(label)
        row_of.append(i)
    class_emb = class_embeddings(model, classes, templates)
    if items:
        emb = model.embed(**{kind: items}, batch_size=batch_size, show_progress_bar=show_progress)
        ok = emb.ok(kind)
        for err in emb.errors:
            _skip(skipped, row_of[err.index], err.item, err.reason)
        x, y = emb[kind][ok], np.asarray(labels)[ok]
    else:
        x, y = np.zeros((0, class_emb.shape[1])), np.zeros(0, dtype=np.int64)
    skipped.sort(key=lambda s: s["row"])
    scores = zero_shot_scores(x, class_emb, y, classes)
    return {"task": "zero-shot", "file": str(path), "modality": kind, "classes": classes, "templates": templates,
            "rows": len(rows), "skipped": len(skipped), **scores, "skipped_rows": skipped}


def retrieval(
    model: Any,
    pairs: str | os.PathLike,
    ks: Iterable[int] = DEFAULT_KS,
    *,
    columns: Sequence[str] | None = None,
    batch_size: int = 32,
    show_progress: bool | None = None,
) -> dict[str, Any]:
    """Cross-modal retrieval on a pair manifest (two modality columns; row i of one matches row i of the
    other): every item of one side queries all items of the other, both ways.

    ``columns`` picks the two columns when the file has more. Returns :func:`retrieval_scores`'s dict plus
    ``task``, ``file``, ``modalities``, ``rows``, ``skipped`` and ``skipped_rows``; rows where either side
    cannot be embedded are left out on both sides.
    """
    path = Path(pairs)
    cols, rows = read_table(path)
    kinds = modality_columns(cols)
    if columns is not None:
        chosen = [input_kind(c) for c in columns]
        missing = [c for c in chosen if c not in kinds]
        if len(chosen) != 2 or missing or chosen[0] == chosen[1]:
            raise EvalError(f"{path}: pick two different modality columns among {', '.join(kinds.values())}")
    elif len(kinds) == 2:
        chosen = list(kinds)
    else:
        raise EvalError(f"{path}: a pair manifest needs exactly two modality columns, found "
                        f"{', '.join(kinds.values()) or 'none'} (columns: {', '.join(cols)}); choose with --columns")
    ka, kb = chosen
    items: dict[str, list[Any]] = {ka: [], kb: []}
    row_of, skipped = [], []
    for i, r in enumerate(rows, 1):
        a, why_a = _item(r.get(kinds[ka]), ka, path.parent)
        b, why_b = _item(r.get(kinds[kb]), kb, path.parent)
        if why_a or why_b:
            _skip(skipped, i, r.get(kinds[ka]) if why_a else r.get(kinds[kb]), why_a or why_b)
            continue
        items[ka].append(a)
        items[kb].append(b)
        row_of.append(i)
    if row_of:
        emb = model.embed(**items, batch_size=batch_size, show_progress_bar=show_progress)
        ok = emb.ok(ka) & emb.ok(kb)
        for err in emb.errors:
            _skip(skipped, row_of[err.index], err.item, err.reason)
        a_emb, b_emb = emb[ka][ok], emb[kb][ok]
    else:
        a_emb = b_emb = np.zeros((0, 1))
    skipped.sort(key=lambda s: s["row"])
    scores = retrieval_scores(a_emb, b_emb, ks, names=(ka, kb))
    return {"task": "retrieval", "file": str(path), "modalities": [ka, kb], "rows": len(rows),
            "skipped": len(skipped), **scores, "skipped_rows": skipped}


# ----------------------------------------------------------------------------------------------- distillation


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


def _timed_embed(model: Any, kind: str, items: list[Any], batch_size: int, show: bool | None) -> tuple[Any, float]:
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
    from .index import Index

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
