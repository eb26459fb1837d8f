"""Unpaired items of one modality for distillation: texts from a ``.txt`` file (one per line) or a manifest
column, media files from folders or a manifest column, or a Python list.

Sources are read in order and de-duplicated (the first occurrence of a text or a file is kept), so every item
appears once in the teacher-vector cache and in-batch negatives are never the positive itself. Unusable entries
(empty lines or cells, missing files) are skipped and counted; files of other kinds found in a folder are
ignored and counted.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .. import tables
from ..errors import DistillError  # noqa: F401  (moved to bindkit.errors; re-exported here)
from ..modality import input_kind
from ..tables import TableError

_TABLES = (".csv", ".tsv", ".jsonl", ".ndjson", ".parquet")
_SHOW = 3


@dataclass
class Items:
    """The items to distil on: ``kind`` (input kind), ``items`` (texts, or absolute file paths), a description of
    the ``sources``, ``skipped`` [(where, reason)] entries, ``ignored`` files of other kinds and ``duplicates``."""

    kind: str
    items: list[Any]
    sources: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: int = 0
    duplicates: int = 0

    def __len__(self) -> int:
        return len(self.items)

    def digest(self) -> str:
        """sha256 identifying the item list in order: the texts, or each file's path, size and mtime (the
        teacher-vector cache is valid only for the same list)."""
        h = hashlib.sha256(self.kind.encode() + b"\0")
        for item in self.items:
            if self.kind == "text":
                h.update(str(item).encode("utf-8", "surrogatepass") + b"\0")
            else:
                st = os.stat(item)
                h.update(f"{item}\0{st.st_size}\0{st.st_mtime_ns}\0".encode("utf-8", "surrogateescape"))
        return h.hexdigest()

    def summary(self) -> str:
        """One line: how many items from where, and what was left out."""
        parts = [f"{len(self.items)} {self.kind} item(s) from {', '.join(self.sources)}"]
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate(s) dropped")
        if self.skipped:
            first = "; ".join(f"{w}: {r}" for w, r in self.skipped[:_SHOW])
            parts.append(f"{len(self.skipped)} unusable entr(y/ies) skipped (first: {first})")
        if self.ignored:
            parts.append(f"{self.ignored} file(s) of other kinds ignored")
        return "; ".join(parts)


def _table_column(path: Path, columns: list[str], kind: str, column: str | None) -> str:
    from ..eval import EvalError, modality_columns

    try:
        found = modality_columns(columns)
    except EvalError as exc:
        raise DistillError(str(exc)) from None
    if column is not None:
        if column not in columns:
            raise DistillError(f"{path}: no column {column!r} (columns: {', '.join(map(str, columns))})")
        return column
    if kind in found:
        return found[kind]
    raise DistillError(f"{path}: no {kind} column (columns: {', '.join(map(str, columns)) or 'none'}); name the "
                       f"column holding the {kind} items {kind!r}, or pick it with --column")


def _from_table(path: Path, kind: str, column: str | None, out: Items, add: Any) -> None:
    try:
        table = tables.read_table(path)
    except TableError as exc:
        raise DistillError(f"{path} {exc}" if exc.line is not None else f"{path}: {exc}") from None
    col = _table_column(path, table.columns, kind, column)
    unit = "row" if tables.table_format(path) == "parquet" else "line"
    for n, row in zip(table.lines, table.rows):
        value = row.get(col)
        where = f"{path.name} {unit} {n}"
        if value is None or (isinstance(value, float) and value != value) or not str(value).strip():
            out.skipped.append((where, "empty cell"))
        elif kind == "text":
            add(str(value), where)
        else:
            p = Path(str(value).strip()).expanduser()
            p = p if p.is_absolute() else path.parent / p
            if p.is_file():
                add(os.path.abspath(p), where)
            else:
                out.skipped.append((where, f"no such file: {p}"))


def _from_folder(path: Path, kind: str, out: Items, add: Any) -> None:
    from ..inputs.sources import EXTENSIONS

    wanted = EXTENSIONS[kind]
    for root, dirs, files in os.walk(path, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            full = os.path.abspath(os.path.join(root, name))
            if os.path.splitext(name)[1].lower() in wanted:
                add(full, full)
            else:
                out.ignored += 1


def read_items(sources: "str | os.PathLike | Sequence[Any]", modality: str, column: str | None = None) -> Items:
    """The de-duplicated items of ``modality`` in ``sources``.

    Args:
        sources: a path (``str`` or ``Path``) or a list of ``Path``: a ``.txt`` file (texts, one per line), a
            manifest (``.csv``, ``.tsv``, ``.jsonl``, ``.parquet``: the column named by the modality, or
            ``column``; media paths relative to the manifest), or a folder (media files of that kind, walked
            recursively, sorted). Or a list of the items themselves as ``str`` (texts, or media file paths).
        modality: the input kind (``text``, ``image``, ``audio``...).
        column: the manifest column to read (default: the one named by the modality).

    Raises:
        DistillError: a missing source, a manifest without that column, a text folder, or no usable item.
    """
    kind = input_kind(modality)
    if isinstance(sources, (str, os.PathLike)):
        sources = [Path(sources)]
    out = Items(kind=kind, items=[], sources=[])
    seen: set[Any] = set()

    def add(item: Any, where: str) -> None:
        if item in seen:
            out.duplicates += 1
        else:
            seen.add(item)
            out.items.append(item)

    paths = [s for s in sources if isinstance(s, os.PathLike)]
    if paths and len(paths) != len(sources):
        raise DistillError("pass either sources (a path, or a list of pathlib.Path) or the items themselves (a list "
                           "of texts or of media paths as str), not a mix")
    if paths:
        for src in paths:
            _from_path(Path(src).expanduser(), kind, column, out, add)
    else:
        _from_list(list(sources), kind, out, add)
    if len(out.items) < 2:
        raise DistillError(f"fewer than 2 usable {kind} items in {', '.join(out.sources) or 'the data'} "
                           f"({out.summary()}); distillation needs many (thousands) unpaired {kind} items")
    return out


def _from_list(items: list[Any], kind: str, out: Items, add: Any) -> None:
    out.sources.append(f"a list of {len(items)}")
    for i, item in enumerate(items):
        if kind == "text":
            if not isinstance(item, str):
                raise DistillError(f"text item #{i} is a {type(item).__name__}, not a string")
            if item.strip():
                add(item, f"#{i}")
            else:
                out.skipped.append((f"#{i}", "empty text"))
        elif isinstance(item, (str, os.PathLike)) and Path(item).expanduser().is_file():
            add(os.path.abspath(Path(item).expanduser()), f"#{i}")
        else:
            out.skipped.append((f"#{i}", f"not a file: {item!r}"[:200]))


def _from_path(p: Path, kind: str, column: str | None, out: Items, add: Any) -> None:
    if not p.exists():
        raise DistillError(f"data source {p} does not exist; pass a .txt file (texts, one per line), a manifest "
                           "(.csv/.jsonl/.parquet) or a folder of media files")
    out.sources.append(str(p))
    suffix = p.suffix.lower()
    if p.is_dir():
        if kind == "text":
            raise DistillError(f"{p} is a folder; texts come from a .txt file (one text per line) or a manifest "
                               "column named text")
        _from_folder(p, kind, out, add)
    elif suffix in _TABLES:
        _from_table(p, kind, column, out, add)
    elif kind == "text":
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DistillError(f"{p}: cannot read it as UTF-8 text, one text per line ({exc})") from None
        for i, line in enumerate(lines, 1):
            if line.strip():
                add(line.strip(), f"{p.name} line {i}")
            else:
                out.skipped.append((f"{p.name} line {i}", "empty line"))
    else:
        from ..inputs.sources import EXTENSIONS

        if suffix not in EXTENSIONS[kind]:
            raise DistillError(f"{p}: not a {kind} file, a folder or a manifest (.csv/.jsonl/.parquet)")
        add(os.path.abspath(p), str(p))


def split_rows(usable: Iterable[int], val_split: float, seed: int) -> tuple[list[int], list[int]]:
    """(train rows, held-out rows): a seeded shuffle of ``usable``, the first ``ceil(val_split * n)`` held out
    (at most half)."""
    import math

    import numpy as np

    rows = np.asarray(sorted(usable), dtype=np.int64)
    order = np.random.default_rng(int(seed)).permutation(len(rows))
    n_val = min(len(rows) // 2, math.ceil(val_split * len(rows))) if val_split > 0 else 0
    return sorted(rows[order[n_val:]].tolist()), sorted(rows[order[:n_val]].tolist())

