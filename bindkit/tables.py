"""One reader for the tables bindkit reads (train and eval manifests, distillation sources, index build
manifests): CSV/TSV, JSON Lines and Parquet, behaving alike for every caller.

- **Encodings.** Text tables are UTF-8; a byte-order mark at the start is skipped. A CSV that is not UTF-8 is
  refused naming the line and byte offset of the first bad byte and the ``iconv`` command that re-encodes it
  (a guessed fallback would silently turn ``café`` into another string). In JSON Lines each line stands alone,
  so a line that is not UTF-8 is a bad line, like one that is not a JSON object.
- **Bad rows.** CSV parsing is strict (:mod:`bindkit.csvrows`): a row the csv module cannot parse refuses the
  file, naming the line the row starts on. JSON Lines yields each bad line with its line number and the reason
  (:func:`jsonl_records`); :func:`read_table` refuses the file at the first one, a caller that can skip lines
  (index build) reads :func:`jsonl_records` itself.
- **Column names.** CSV header names are stripped of surrounding spaces; JSON Lines columns are the keys in
  order of first appearance; Parquet columns are the schema's.
- **Line numbers.** Every row carries the line it starts on (CSV, JSON Lines) or its 1-based row number
  (Parquet), for callers to name bad rows by.

Errors are :class:`TableError` (a ValueError) carrying ``line`` (or None) and ``reason``; each caller wraps it in
its own error class with its own prefix (``manifest PATH line 3: ...``).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .csvrows import CsvRowError, dict_rows
from .errors import TableError, describe_exc

#: File suffix -> table format.
TABLE_FORMATS: dict[str, str] = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                                 ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class Table:
    """A table read whole: ``columns`` in order, ``rows`` as ``{column: value}`` dicts and, per row, the line it
    starts on (``lines``; the 1-based row number for Parquet)."""

    columns: list[str]
    rows: list[dict[str, Any]]
    lines: list[int] = field(default_factory=list)


def table_format(path: str | os.PathLike) -> str | None:
    """``"csv"``, ``"jsonl"`` or ``"parquet"`` by the file's suffix; None for another suffix."""
    return TABLE_FORMATS.get(Path(path).suffix.lower())


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TableError(f"cannot read it ({exc.strerror or exc})") from None


def decode_utf8(data: bytes, name: str) -> str:
    """``data`` decoded as UTF-8 (a leading byte-order mark dropped); TableError naming the line and byte offset
    of the first byte that is not UTF-8, and the ``iconv`` command that re-encodes the file ``name``."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        stem, suffix = os.path.splitext(name)
        raise TableError(
            f"is not UTF-8: byte 0x{data[exc.start]:02x} at line {line} (byte offset {exc.start}), perhaps Latin-1 "
            f"or Windows-1252. Re-encode it as UTF-8, e.g. `iconv -f latin1 -t utf-8 '{name}' > "
            f"'{stem}.utf8{suffix}'`") from None


def csv_records(path: str | os.PathLike, delimiter: str | None = None) -> tuple[list[str], list[tuple[int, dict]]]:
    """(header, [(line the row starts on, {column: value})]) of a CSV file (``.tsv``: tab-separated unless
    ``delimiter`` is given). Header names are stripped of spaces; extra values of a row are a list under the key
    None, missing ones None (as csv.DictReader). TableError for a file that is not UTF-8 or a row that is not
    valid CSV (naming its line)."""
    p = Path(path)
    if delimiter is None:
        delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
    text = decode_utf8(_read_bytes(p), p.name)
    try:
        header, parsed = dict_rows(io.StringIO(text, newline=""), delimiter=delimiter)
        names = [c.strip() for c in header]
        rows = [(line, {(k.strip() if k is not None else None): v for k, v in row.items()}) for line, row in parsed]
    except CsvRowError as exc:
        raise TableError(exc.reason, exc.line) from None
    return names, rows


def jsonl_records(path: str | os.PathLike) -> Iterator[tuple[int, dict | None, str | None]]:
    """``(line, object, None)`` per non-blank line of a JSON Lines file, or ``(line, None, reason)`` for a line
    that is not UTF-8, not JSON or not a JSON object. TableError when the file cannot be read at all."""
    data = _read_bytes(Path(path))
    for lineno, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            yield lineno, None, (f"line is not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                                 "save the file as UTF-8")
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield lineno, None, f"not valid JSON ({exc.msg} at column {exc.colno})"
            continue
        if not isinstance(obj, dict):
            yield lineno, None, f"expected a JSON object per line, got {type(obj).__name__}"
            continue
        yield lineno, obj, None


def parquet_records(path: str | os.PathLike) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) of a Parquet file; TableError for a file Arrow cannot read (corrupt, truncated, not
    Parquet)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise TableError(f"not a readable Parquet file ({describe_exc(exc)})") from None
    return list(table.column_names), table.to_pylist()


def read_table(path: str | os.PathLike) -> Table:
    """The whole table at ``path`` (CSV/TSV, JSON Lines or Parquet, by suffix; see the module docstring).
    TableError for an unknown suffix, an unreadable file or the first bad row."""
    p = Path(path)
    fmt = table_format(p)
    if fmt is None:
        raise TableError(f"unknown format {p.suffix!r}; use .csv, .tsv, .jsonl or .parquet")
    if fmt == "csv":
        columns, records = csv_records(p)
        return Table(columns, [r for _, r in records], [n for n, _ in records])
    if fmt == "parquet":
        columns, rows = parquet_records(p)
        return Table(columns, rows, list(range(1, len(rows) + 1)))
    cols: dict[str, None] = {}
    rows, lines = [], []
    for lineno, obj, problem in jsonl_records(p):
        if obj is None:
            raise TableError(str(problem), lineno)
        cols.update(dict.fromkeys(obj))
        rows.append(obj)
        lines.append(lineno)
    return Table(list(cols), rows, lines)
