"""Reading build manifests (``.jsonl``, ``.parquet``, ``.csv`` with a ``path`` or ``text`` column) row by row,
through the table reader train, eval and distill use (:mod:`bindkit.tables`: the same encodings, line numbers and
column names, stripped of spaces in a CSV header).

What a broken manifest does, per format:

- ``.jsonl``: each line stands alone, so a line that is not UTF-8, not JSON, or not a JSON object is a bad row:
  it is reported (``file:line``) and skipped, and the other lines are indexed.
- ``.csv``: a file that is not UTF-8 (Latin-1, Windows-1252...) is refused before anything is embedded, with
  the line and byte offset of the first bad byte. Decoding it with a guessed fallback would turn names such as
  ``café`` into other strings: paths that then name no file, and metadata that silently differs. Re-encoding
  the file is one command (``iconv``), and the message says which. A row the csv module cannot parse (an
  unterminated quote, a NUL byte, a field over 64 Mi characters) also refuses the file, naming the line that
  row starts on, as its later rows cannot be trusted (see :mod:`bindkit.csvrows`).
- ``.parquet``: a file Arrow cannot read (corrupt, truncated, not Parquet) is refused before anything is
  embedded, as is one with neither a ``path`` nor a ``text`` column.

Rows are yielded as ``(where, row, problem)``: ``where`` is ``file:line`` (``file:row`` for Parquet), ``row`` the
column -> value dict (None for a bad row) and ``problem`` why a bad row was skipped (None otherwise).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterator

from .. import tables
from ..errors import InputError
from ..tables import TableError
from .where import parse_value

MANIFEST_EXTENSIONS = (".jsonl", ".parquet", ".csv")
Row = tuple[str, "dict[str, Any] | None", "str | None"]
_SNIFF_BYTES = 1 << 16  # enough for any header line; a large IMU CSV is not read whole just to be told apart


def manifest_rows(path: Path) -> Iterator[Row] | None:
    """The rows of a manifest file, or None when ``path`` is not a manifest (e.g. a CSV of IMU samples).
    Raises InputError (naming the file, and the line where it applies) for a manifest that must be refused;
    for CSV and Parquet that happens here, before any row is yielded."""
    ext = path.suffix.lower()
    try:
        if ext == ".jsonl":
            return _jsonl_rows(path, list(tables.jsonl_records(path)))
        if ext == ".parquet":
            return _parquet_rows(path)
        if ext == ".csv":
            return _csv_rows(path)
    except TableError as exc:
        raise _refuse(path, f"{exc}; nothing was indexed") from None
    return None


def _refuse(path: Path, reason: str) -> InputError:
    return InputError(str(path), "manifest", reason)


def _jsonl_rows(path: Path, records: list[tuple[int, dict | None, str | None]]) -> Iterator[Row]:
    for lineno, row, problem in records:
        yield f"{path}:{lineno}", row, (None if problem is None else f"{problem}; the line was skipped")


def _parquet_rows(path: Path) -> Iterator[Row]:
    try:
        _, rows = tables.parquet_records(path)
    except TableError as exc:
        raise _refuse(path, f"{exc}; nothing was indexed: rewrite it, or list the items in a .csv or .jsonl "
                      "manifest") from None
    columns = set(rows[0]) if rows else set()
    if rows and not {"path", "text"} & columns:
        raise _refuse(path, f"has neither a 'path' nor a 'text' column (columns: {', '.join(sorted(columns))})")
    return ((f"{path}:{n}", row, None) for n, row in enumerate(rows, 1))


def _csv_rows(path: Path) -> Iterator[Row] | None:
    try:
        with open(path, "rb") as f:
            head = f.readline(_SNIFF_BYTES)
    except OSError as exc:
        raise _refuse(path, f"cannot read it ({exc.strerror or exc})") from None
    header = [c.strip() for c in next(csv.reader([head.decode("utf-8-sig", errors="replace")]), [])]
    if "path" not in header and "text" not in header:
        return None  # not a manifest (an IMU recording, say)
    _, records = tables.csv_records(path, delimiter=",")  # TableError: refused by manifest_rows
    # CSV has no types: numbers and booleans are parsed so that filters like year>=2020 work.
    return iter([(f"{path}:{line}", {k: parse_value(v) if isinstance(v, str) and v != "" else v
                                     for k, v in row.items()}, None) for line, row in records])
