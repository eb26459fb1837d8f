"""Reading build manifests (``.jsonl``, ``.parquet``, ``.csv`` with a ``path`` or ``text`` column) row by row.

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
import io
import json
from pathlib import Path
from typing import Any, Iterator

from ..csvrows import CsvRowError, dict_rows
from ..errors import InputError, describe_exc
from .where import parse_value

MANIFEST_EXTENSIONS = (".jsonl", ".parquet", ".csv")
Row = tuple[str, "dict[str, Any] | None", "str | None"]
_SNIFF_BYTES = 1 << 16  # enough for any header line; a large IMU CSV is not read whole just to be told apart


def manifest_rows(path: Path) -> Iterator[Row] | None:
    """The rows of a manifest file, or None when ``path`` is not a manifest (e.g. a CSV of IMU samples).
    Raises InputError (naming the file, and the line where it applies) for a manifest that must be refused;
    for CSV and Parquet that happens here, before any row is yielded."""
    ext = path.suffix.lower()
    if ext == ".jsonl":
        return _jsonl_rows(path, _read(path))
    if ext == ".parquet":
        return _parquet_rows(path)
    if ext == ".csv":
        return _csv_rows(path)
    return None


def _refuse(path: Path, reason: str) -> InputError:
    return InputError(str(path), "manifest", reason)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _refuse(path, f"cannot read it ({exc.strerror or exc})") from None


def _jsonl_rows(path: Path, data: bytes) -> Iterator[Row]:
    for lineno, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            yield where, None, (f"line is not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                                "save the manifest as UTF-8")
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield where, None, f"not valid JSON ({exc.msg} at column {exc.colno}); the line was skipped"
            continue
        if not isinstance(row, dict):
            yield where, None, (f'expected a JSON object such as {{"path": "a.jpg"}}, got {type(row).__name__}; '
                                "the line was skipped")
            continue
        yield where, row, None


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _refuse(path, f"not a readable Parquet file ({describe_exc(exc)}); nothing was indexed: rewrite "
                      "it, or list the items in a .csv or .jsonl manifest") from None
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
    header = next(csv.reader([head.decode("utf-8-sig", errors="replace")]), [])
    if "path" not in header and "text" not in header:
        return None  # not a manifest (an IMU recording, say)
    data = _read(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _refuse(path, f"is not UTF-8: byte 0x{data[exc.start]:02x} at line {line} (byte offset {exc.start}), "
                      "perhaps Latin-1 or Windows-1252; nothing was indexed. Re-encode it as UTF-8, e.g. "
                      f"`iconv -f latin1 -t utf-8 '{path.name}' > '{path.stem}.utf8.csv'`, and build again") from None
    rows: list[Row] = []
    try:
        _, parsed = dict_rows(io.StringIO(text, newline=""))
        for line, row in parsed:
            # CSV has no types: numbers and booleans are parsed so that filters like year>=2020 work.
            rows.append((f"{path}:{line}",
                         {k: parse_value(v) if isinstance(v, str) and v != "" else v for k, v in row.items()}, None))
    except CsvRowError as exc:
        raise _refuse(path, f"line {exc.line}: {exc.reason}; nothing was indexed") from None
    return iter(rows)
