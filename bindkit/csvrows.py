"""CSV/TSV rows with the line each one starts on, and JSON Lines values with their line number, for the manifest
readers (index build, train, eval).

Python's csv module, left to itself, silently merges every row after an unterminated quote into one field and
refuses any field over 128 KiB, naming the line where it gave up rather than the row at fault. Here:

- parsing is strict, so an unterminated quote (or a quote in the middle of an unquoted field) is an error that
  names the line where the bad row *starts*;
- fields may hold up to :data:`FIELD_SIZE_LIMIT` characters (a long caption is a legitimate text cell); a larger
  one is an error naming its row's line and the limit.
"""

from __future__ import annotations

import csv
import json
from typing import Any, Iterable, Iterator

from .errors import CsvRowError

#: Largest field accepted (characters): 64 Mi, far above any caption, far below what would exhaust memory.
FIELD_SIZE_LIMIT = 64 << 20


def _explain(exc: csv.Error, start: int, end: int) -> str:
    text = str(exc)
    if "unexpected end of data" in text or ("expected" in text and end > start):
        return (f"a quoted field opened on this row is never closed (unterminated \"; the file ends at line {end}); "
                "close the quote, or double a quote inside a quoted field (\"\")")
    if "field larger than field limit" in text:
        return (f"a field is longer than {FIELD_SIZE_LIMIT} characters (is a quote missing, so that the field runs "
                "on over many lines?)")
    return f"not valid CSV ({text}); quote fields that hold the delimiter, quotes or line breaks"


def dict_rows(lines: Iterable[str], delimiter: str = ",") -> tuple[list[str], Iterator[tuple[int, dict]]]:
    """(header, rows) of a CSV read from ``lines`` (a text file opened with ``newline=""``, or a StringIO): each
    row is ``(line it starts on, {column: value})``. Rows are parsed as they are iterated; a bad one raises
    :class:`CsvRowError`."""
    if csv.field_size_limit() < FIELD_SIZE_LIMIT:
        csv.field_size_limit(FIELD_SIZE_LIMIT)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        header = next(reader, [])
    except csv.Error as exc:
        raise CsvRowError(1, _explain(exc, 1, reader.line_num)) from None

    def rows() -> Iterator[tuple[int, dict]]:
        while True:
            start = reader.line_num + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise CsvRowError(start, _explain(exc, start, reader.line_num)) from None
            if not values:
                continue  # a blank line
            row = dict(zip(header, values))
            if len(values) < len(header):
                row.update(dict.fromkeys(header[len(values):]))
            elif len(values) > len(header):
                row[None] = values[len(header):]  # what csv.DictReader does with extra values
            yield start, row

    return header, rows()


def json_line(line: str, lineno: int) -> Any:
    """The JSON value of line ``lineno`` of a JSON Lines file; CsvRowError naming that line (json's own message
    would say "line 1", the line within the one-line string it was given)."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise CsvRowError(lineno, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
