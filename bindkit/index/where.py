"""Metadata filters: a small dict grammar (Chroma's) compiled to SQL over ``json_extract``
(``json_each`` for keys a JSON path label cannot name).

Grammar::

    {"color": "red"}                                  # shorthand for {"color": {"$eq": "red"}}
    {"year": {"$gte": 2020}}                          # $eq $ne $gt $gte $lt $lte: str, int, float or bool
    {"tag": {"$in": ["a", "b"]}}                      # $in $nin: a non-empty list of such values
    {"$and": [{...}, {...}]}, {"$or": [{...}, ...]}   # a non-empty list of filters
    {"a": 1, "b": 2}                                  # several keys: all must hold ($and)

Semantics (what the plain-Python oracle in the tests implements): a comparison holds only when the stored value
has the same type family as the filter value (numbers compare with numbers, strings with strings, booleans only
with booleans — ``True`` never equals ``1``); ``$ne`` and ``$nin`` are the negations of ``$eq``/``$in``, so they
also match items that lack the key. ``$gt``… on booleans is an error.

Keys: any string that does not start with ``$`` (those are the operators), including ``""``, non-ASCII keys
(``"café"``, ``"名前"``) and keys with quotes or backslashes: the same keys ``Index.add`` accepts
(:func:`key_problem`), so every stored key can be filtered on.
"""

from __future__ import annotations

import math
import operator
import re
from typing import Any

from ..errors import BindkitError

_COMPARE = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_OPERATORS = tuple(_COMPARE) + ("$in", "$nin")
_ORDER = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


class FilterError(BindkitError, ValueError):
    """A ``where`` filter that does not follow the grammar; the message says what was expected."""


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) < 60 else text[:57] + '...'}"


def _check_scalar(op: str, key: str, value: Any) -> None:
    if isinstance(value, bool):
        if op in ("$gt", "$gte", "$lt", "$lte"):
            raise FilterError(f"Expected a number or string for {op} on {key!r}, got bool {value!r}")
        return
    if not isinstance(value, (str, int, float)):
        raise FilterError(f"Expected a str, int, float or bool for {op} on {key!r}, got {_describe(value)}")


def key_problem(key: Any) -> str | None:
    """Why ``key`` cannot be a metadata key (None when it can): keys are strings not starting with ``$``."""
    if not isinstance(key, str):
        return f"metadata keys are strings, got {_describe(key)}"
    if key.startswith("$"):
        return (f"metadata key {key!r} starts with '$', which marks filter operators ($and, $or, $eq, $gt...); "
                "rename it (e.g. without the '$')")
    return None


def _plain_label(key: str) -> bool:
    """Whether a JSON path label ``$."key"`` finds ``key``: SQLite matches labels against the stored JSON text,
    where ``json.dumps`` escapes non-ASCII and control characters, quotes and backslashes."""
    return key.isascii() and key.isprintable() and '"' not in key and "\\" not in key


def _compare(key: str, op: str, value: Any, params: list[Any]) -> str:
    """SQL for one positive comparison (``$ne`` is compiled as NOT ``$eq``). A missing key never matches."""
    if isinstance(value, bool):
        # JSON booleans come back from json_extract as 1/0; their JSON type tells them apart from numbers.
        test, values = f"= '{'true' if value else 'false'}'", []
    else:
        family = "('text')" if isinstance(value, str) else "('integer', 'real')"
        test, values = f"IN {family} AND {{value}} {_COMPARE[op]} ?", [value]
    if _plain_label(key):
        path = '$."' + key + '"'
        params += [path] + ([path] if values else []) + values
        # COALESCE: a missing key gives NULL, which NOT would keep NULL; it must count as "does not match".
        return f"COALESCE(json_type(metadata, ?) {test.format(value='json_extract(metadata, ?)')}, 0)"
    # Other keys are looked up by their decoded name (json_each unescapes labels; a path label would not).
    params += [key] + values
    return (f"EXISTS (SELECT 1 FROM json_each(items.metadata) AS j WHERE j.key = ? "
            f"AND j.type {test.format(value='j.value')})")


def _field(key: str, cond: Any, params: list[Any]) -> str:
    problem = key_problem(key)
    if problem is not None:
        raise FilterError(f"Expected a metadata key (a string not starting with '$') or one of $and/$or, got "
                          f"{key!r}")
    if not isinstance(cond, dict):
        cond = {"$eq": cond}
    if len(cond) != 1:
        raise FilterError(f"Expected one operator for {key!r} (one of {', '.join(_OPERATORS)}), got {len(cond)}: "
                          f"{list(cond)}; combine several with $and")
    (op, value), = cond.items()
    if op in ("$in", "$nin"):
        if not isinstance(value, (list, tuple)) or not value:
            raise FilterError(f"Expected a non-empty list for {op} on {key!r}, got {_describe(value)}")
        for v in value:
            _check_scalar(op, key, v)
        sql = "(" + " OR ".join(_compare(key, "$eq", v, params) for v in value) + ")"
        return f"NOT {sql}" if op == "$nin" else sql
    if op not in _COMPARE:
        raise FilterError(f"Expected an operator among {', '.join(_OPERATORS)} for {key!r}, got {op!r}")
    _check_scalar(op, key, value)
    if op == "$ne":
        return f"NOT {_compare(key, '$eq', value, params)}"
    return _compare(key, op, value, params)


def _compile(where: Any, params: list[Any]) -> str:
    if not isinstance(where, dict):
        raise FilterError(f"Expected a filter dict such as {{'key': value}}, got {_describe(where)}")
    if not where:
        raise FilterError("Expected a non-empty filter dict, got {}; pass where=None for no filter")
    parts = []
    for key, cond in where.items():
        if key in ("$and", "$or"):
            if not isinstance(cond, (list, tuple)) or not cond:
                raise FilterError(f"Expected a non-empty list of filters for {key}, got {_describe(cond)}")
            joined = (" AND " if key == "$and" else " OR ").join(_compile(c, params) for c in cond)
            parts.append(f"({joined})")
        else:
            parts.append(_field(key, cond, params))
    return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"


def compile_where(where: dict[str, Any]) -> tuple[str, list[Any]]:
    """Validate a filter and compile it to ``(sql, params)`` over the ``metadata`` JSON column.

    Raises:
        FilterError: the filter does not follow the grammar (message "Expected …, got …").
    """
    params: list[Any] = []
    sql = _compile(where, params)
    return sql, params


def matches(where: dict[str, Any], metadata: dict[str, Any]) -> bool:
    """Evaluate a filter on one metadata dict in plain Python (same semantics as the SQL; for tests and
    small in-memory checks). The filter is validated first."""
    compile_where(where)

    def same_family(a: Any, b: Any) -> bool:
        if isinstance(a, bool) or isinstance(b, bool):
            return isinstance(a, bool) and isinstance(b, bool)
        if isinstance(a, str) or isinstance(b, str):
            return isinstance(a, str) and isinstance(b, str)
        return isinstance(a, (int, float)) and isinstance(b, (int, float))

    def eq(key: str, value: Any) -> bool:
        return key in metadata and same_family(metadata[key], value) and metadata[key] == value

    def holds(w: dict[str, Any]) -> bool:
        for key, cond in w.items():
            if key == "$and":
                ok = all(holds(c) for c in cond)
            elif key == "$or":
                ok = any(holds(c) for c in cond)
            else:
                (op, value), = (cond.items() if isinstance(cond, dict) else [("$eq", cond)])
                if op == "$eq":
                    ok = eq(key, value)
                elif op == "$ne":
                    ok = not eq(key, value)
                elif op == "$in":
                    ok = any(eq(key, v) for v in value)
                elif op == "$nin":
                    ok = not any(eq(key, v) for v in value)
                else:
                    have = metadata.get(key)
                    ok = key in metadata and same_family(have, value) and _ORDER[op](have, value)
            if not ok:
                return False
        return True

    return holds(where)


def parse_value(text: str) -> Any:
    """A CLI/CSV string as bool, int or float when it reads as one; quoted text stays a string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]  # quoted: always a string ("'2020'")
    return text


CLI_SYNTAX = ("KEY=VALUE, KEY!=VALUE, KEY>VALUE, KEY>=VALUE, KEY<VALUE or KEY<=VALUE (quote the whole "
              "expression for the shell: --where 'year>=2020'; quote a value to compare text: name='42')")
_CLI_EXPR = re.compile(r"\s*(?P<key>[^=<>!]*?)\s*(?P<op>!=|>=|<=|=|>|<)\s*(?P<value>.*?)\s*", re.S)
_CLI_OPS = {"=": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}


def _is_quoted(text: str) -> bool:
    return len(text) >= 2 and text[0] == text[-1] and text[0] in "'\""


def parse_cli_filter(expr: str) -> dict[str, Any]:
    """One CLI ``--where`` expression (``year>=2020``) as a filter dict (``{"year": {"$gte": 2020}}``).

    Raises:
        FilterError: not one of the accepted forms (``year==2020``, ``year=>2020``, ``year>>2020``), an empty
            key or value, or an order comparison with a value that is not a number (``year>=abc``; quote it to
            compare text: ``name>='abc'``). The message shows the accepted syntax.
    """
    m = _CLI_EXPR.fullmatch(expr)
    if m is None or not m["key"]:
        raise FilterError(f"Expected --where {CLI_SYNTAX}, got {expr!r}")
    key, sym, raw = m["key"], m["op"], m["value"]
    if not raw:
        raise FilterError(f"Expected a value after {key}{sym} in {expr!r} (write {key}{sym}'' to compare with an "
                          f"empty string); accepted: {CLI_SYNTAX}")
    if raw[0] in "=<>!":
        raise FilterError(f"Expected one comparison operator in {expr!r} (got {sym!r} followed by {raw[0]!r}); "
                          f"accepted: {CLI_SYNTAX}")
    value = parse_value(raw)
    if isinstance(value, float) and not math.isfinite(value):
        value = raw  # "nan", "inf": text, not numbers (JSON metadata never holds them)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if sym in (">", ">=", "<", "<=") and not number and not _is_quoted(raw):
        raise FilterError(f"Expected a number after {sym} in {expr!r}: >, >=, <, <= compare numbers, or text when "
                          f"the value is quoted ({key}{sym}'{raw}'); accepted: {CLI_SYNTAX}")
    return {key: {_CLI_OPS[sym]: value}}


def parse_cli_filters(exprs: list[str]) -> dict[str, Any] | None:
    """Turn CLI ``--where`` expressions (``key=value``, ``key!=v``, ``key>=v``, ``key<v``…; all must hold)
    into a filter dict, or None for none. Values are parsed as bool/int/float when they look like one (quote
    them to force a string). Raises FilterError for anything else (see :func:`parse_cli_filter`)."""
    if not exprs:
        return None
    clauses = [parse_cli_filter(expr) for expr in exprs]
    compile_where({"$and": clauses})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
