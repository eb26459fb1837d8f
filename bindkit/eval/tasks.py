"""The end-to-end evaluations on a test file: :func:`zero_shot` (classes through text prompts) and
:func:`retrieval` (pairs), and what they read: the test table (:func:`read_table`, on :mod:`bindkit.tables`),
its modality columns, labels, class lists and prompt templates. Unusable rows are skipped and reported."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence, TYPE_CHECKING

import numpy as np

from .. import tables
from ..errors import EvalError, ModalityError
from ..modality import input_kind
from ..tables import TableError
from .metrics import DEFAULT_KS, average_prompts, retrieval_scores, zero_shot_scores

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel

#: Default prompt template (CLIP's).
DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)


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


def class_embeddings(model: "BindModel", classes: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES,
                     batch_size: int = 64) -> np.ndarray:
    """(C, D) class embeddings: every template filled with every class name, embedded as text, averaged per
    class (see :func:`average_prompts`)."""
    prompts = [t.replace("{}", c) for c in classes for t in templates]
    emb = model.embed(text=prompts, batch_size=batch_size, strict=True, show_progress_bar=False)["text"]
    return average_prompts(emb.reshape(len(classes), len(templates), -1))


def _skip(skipped: list[dict[str, Any]], row: int, item: Any, reason: str) -> None:
    skipped.append({"row": row, "item": str(item), "reason": reason})


def zero_shot(
    model: "BindModel",
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
    model: "BindModel",
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
