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

Limits, checked before any SQL is built (a :class:`FilterError` naming the limit; HTTP 422): at most
:data:`MAX_LIST` (256) values in one ``$in``/``$nin``, filters in one ``$and``/``$or`` or keys in one dict; at most
:data:`MAX_DEPTH` (32) levels of nested ``$and``/``$or``; at most :data:`MAX_TERMS` (1024) comparisons in all (each value
of an ``$in`` counts one). Within them SQLite's own limits (an expression tree 1000 deep, its parser stack) are
never reached: long ``$and``/``$or``/``$in`` chains are compiled as groups of 16. Integers must fit SQLite's 64-bit
integers (``-2**63 .. 2**63-1``) and text must be valid Unicode (encodable as UTF-8: no lone surrogates, which a
non-UTF-8 command-line argument decodes to). Every problem with a filter is a :class:`FilterError`.
"""

from __future__ import annotations

import math
import operator
import re
from typing import Any, Sequence

from ..errors import FilterError  # noqa: F401  (moved to bindkit.errors)

_COMPARE = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_OPERATORS = tuple(_COMPARE) + ("$in", "$nin")
_ORDER = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


#: Most values in one $in/$nin, filters in one $and/$or list, or keys in one filter dict.
MAX_LIST = 256
#: Most levels of nested $and/$or ({"$and": [{"$or": [{"a": 1}]}]} is 2 deep).
MAX_DEPTH = 32
#: Most comparisons in one filter (each value of an $in/$nin counts one).
MAX_TERMS = 1024
_INT64 = (-(2**63), 2**63 - 1)
_GROUP = 16  # long AND/OR chains are compiled as groups of this many, keeping SQLite's expression tree shallow


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
    if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
        raise FilterError(f"Expected an integer SQLite can store for {op} on {key!r} (between {_INT64[0]} and "
                          f"{_INT64[1]}), got {_describe(value)}; compare with a float or a string instead")
    if isinstance(value, str):
        _check_text(value, f"the value for {op} on {key!r}")


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise FilterError(f"Expected valid Unicode text for {what}, got {ascii(text)[:80]} (not UTF-8 at "
                          f"character {exc.start}: was it typed in another encoding?)") from None


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


def _nesting(sql: str) -> int:
    """How deeply parentheses nest in ``sql`` (values are bound parameters, so no literal holds one)."""
    depth = deepest = 0
    for ch in sql:
        if ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
    return deepest


Part = tuple[str, list, int]  # SQL, its parameters in order, and how deeply its parentheses nest


def _join(parts: list[Part], op: str) -> Part:
    """``parts`` joined with ``op`` (" AND "/" OR "), in parenthesised groups of :data:`_GROUP` when there are more:
    SQLite nests a chain ``a OR b OR c`` one level per term, and caps its expression tree at 1000 levels. The most
    deeply nested part comes first: ``(… (x) …) OR a`` is reduced as it is read, whereas ``a OR (…)`` keeps ``a OR``
    on SQLite's parser stack (100 entries) for every level below it."""
    if len(parts) > 1:
        parts = sorted(parts, key=lambda part: part[2], reverse=True)  # AND and OR commute: the same filter
    while len(parts) > _GROUP:
        parts = [_join(parts[i:i + _GROUP], op) for i in range(0, len(parts), _GROUP)]
    return ("(" + op.join(sql for sql, _, _ in parts) + ")", [p for _, params, _ in parts for p in params],
            1 + max(depth for _, _, depth in parts))


def _check_size(where: Any) -> None:
    """Refuse a filter over :data:`MAX_LIST`, :data:`MAX_DEPTH` or :data:`MAX_TERMS` before it is compiled
    (iteratively: a filter nested 100,000 deep is refused, not a RecursionError)."""
    terms = 0
    stack = [(where, 0)]  # (filter dict, how many $and/$or lists enclose it)
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, dict):
            continue  # the grammar check says what is wrong with it
        if len(node) > MAX_LIST:
            raise FilterError(f"Expected at most {MAX_LIST} keys in one filter dict, got {len(node)}")
        for key, cond in node.items():
            if key in ("$and", "$or") and isinstance(cond, (list, tuple)):
                if depth + 1 > MAX_DEPTH:
                    raise FilterError(f"Expected at most {MAX_DEPTH} levels of nested $and/$or, got more; flatten "
                                      "the filter (an $and of $ands is one $and)")
                if len(cond) > MAX_LIST:
                    raise FilterError(f"Expected at most {MAX_LIST} filters in one {key}, got {len(cond)}; use $in "
                                      "for many values of one key")
                stack.extend((c, depth + 1) for c in cond)
                continue
            values = cond.get("$in", cond.get("$nin")) if isinstance(cond, dict) and len(cond) == 1 else None
            if isinstance(values, (list, tuple)):
                if len(values) > MAX_LIST:
                    op = "$in" if "$in" in cond else "$nin"
                    raise FilterError(f"Expected at most {MAX_LIST} values in one {op} (on {key!r}), got "
                                      f"{len(values)}; filter on a coarser key, or split the search")
                terms += len(values)
            else:
                terms += 1
            if terms > MAX_TERMS:
                raise FilterError(f"Expected at most {MAX_TERMS} comparisons in one filter (each $in value counts "
                                  "one), got more; simplify the filter")


def _field(key: str, cond: Any) -> Part:
    problem = key_problem(key)
    if problem is not None:
        raise FilterError(f"Expected a metadata key (a string not starting with '$') or one of $and/$or, got "
                          f"{key!r}")
    _check_text(key, "a metadata key")
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
        sql, params, depth = _join([_comparison(key, "$eq", v) for v in value], " OR ")
        return (f"NOT {sql}" if op == "$nin" else sql), params, depth
    if op not in _COMPARE:
        raise FilterError(f"Expected an operator among {', '.join(_OPERATORS)} for {key!r}, got {op!r}")
    _check_scalar(op, key, value)
    if op == "$ne":
        sql, params, depth = _comparison(key, "$eq", value)
        return f"NOT {sql}", params, depth
    return _comparison(key, op, value)


def _comparison(key: str, op: str, value: Any) -> Part:
    params: list[Any] = []
    sql = _compare(key, op, value, params)
    return sql, params, _nesting(sql)


def _compile(where: Any) -> Part:
    if not isinstance(where, dict):
        raise FilterError(f"Expected a filter dict such as {{'key': value}}, got {_describe(where)}")
    if not where:
        raise FilterError("Expected a non-empty filter dict, got {}; pass where=None for no filter")
    parts = []
    for key, cond in where.items():
        if key in ("$and", "$or"):
            if not isinstance(cond, (list, tuple)) or not cond:
                raise FilterError(f"Expected a non-empty list of filters for {key}, got {_describe(cond)}")
            parts.append(_join([_compile(c) for c in cond], " AND " if key == "$and" else " OR "))
        else:
            parts.append(_field(key, cond))
    return parts[0] if len(parts) == 1 else _join(parts, " AND ")


def compile_where(where: dict[str, Any]) -> tuple[str, list[Any]]:
    """Validate a filter and compile it to ``(sql, params)`` over the ``metadata`` JSON column.

    Raises:
        FilterError: the filter does not follow the grammar, or is over a limit (:data:`MAX_LIST`,
            :data:`MAX_DEPTH`, :data:`MAX_TERMS`); message "Expected …, got …".
    """
    _check_size(where)
    sql, params, _ = _compile(where)
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


def parse_where(text: str | Sequence[str] | None) -> dict[str, Any] | None:
    """A filter dict from CLI-style expressions (``year>=2020``, ``split=test``; see :func:`parse_cli_filter`),
    all of which must hold; None when there are none.

    ``text`` is one string of expressions separated by commas or new lines (a filter box), or a list of
    expressions, one each (repeated ``--where`` options: a comma there belongs to the value).

    Raises:
        FilterError: an expression it cannot read (the message names it and shows the accepted syntax).
    """
    if text is None:
        return None
    if isinstance(text, str):
        text = [part.strip() for part in re.split(r"[,\n]", text) if part.strip()]
    return parse_cli_filters(list(text))
