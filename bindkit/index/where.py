"""Metadata filters: a small dict grammar (Chroma's) compiled to SQL over ``json_extract``.

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
"""

from __future__ import annotations

import operator
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


def _path(key: str) -> str:
    return '$."' + key + '"'


def _compare(key: str, op: str, value: Any, params: list[Any]) -> str:
    """SQL for one positive comparison (``$ne`` is compiled as NOT ``$eq``)."""
    path = _path(key)
    if isinstance(value, bool):
        # JSON booleans come back from json_extract as 1/0; json_type tells them apart from numbers.
        params.append(path)
        return f"COALESCE(json_type(metadata, ?) = '{'true' if value else 'false'}', 0)"
    family = "('text')" if isinstance(value, str) else "('integer', 'real')"
    params += [path, path, value]
    # COALESCE: a missing key gives NULL, which NOT would keep NULL; it must count as "does not match".
    return f"COALESCE(json_type(metadata, ?) IN {family} AND json_extract(metadata, ?) {_COMPARE[op]} ?, 0)"


def _field(key: str, cond: Any, params: list[Any]) -> str:
    if not isinstance(key, str) or not key or key.startswith("$") or '"' in key:
        raise FilterError(
            f"Expected a metadata key (a non-empty string not starting with '$' and without '\"') or one of "
            f"$and/$or, got {key!r}"
        )
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


def parse_cli_filters(exprs: list[str]) -> dict[str, Any] | None:
    """Turn CLI ``--where`` expressions (``key=value``, ``key!=v``, ``key>=v``, ``key<v``…) into a filter dict;
    values are parsed as bool/int/float when they look like one (quote them to force a string)."""
    if not exprs:
        return None
    clauses = []
    for expr in exprs:
        for sym, op in (("!=", "$ne"), (">=", "$gte"), ("<=", "$lte"), ("=", "$eq"), (">", "$gt"), ("<", "$lt")):
            key, found, value = expr.partition(sym)
            if found and key.strip():
                clauses.append({key.strip(): {op: parse_value(value.strip())}})
                break
        else:
            raise FilterError(f"Expected --where KEY=VALUE (or KEY!=, >, >=, <, <= VALUE), got {expr!r}")
    compile_where({"$and": clauses})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
