"""Metadata filters: SQL compiled by bindkit.index.where against a plain-Python oracle, on a real SQLite store."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from bindkit.index.store import ItemRow, Store
from bindkit.index.where import FilterError, compile_where, matches, parse_cli_filters

COLORS = ["red", "green", "blue", "Red"]


def _fill(st: Store, metas: list[dict]) -> None:
    """One text item per metadata dict; ``st.metas`` maps each stored id to its metadata."""
    rows = [ItemRow(key=f"k{i}", modality="text", content_hash=str(i), vector=np.ones(4, np.float32) / 2,
                    metadata=m) for i, m in enumerate(metas)]
    with st.transaction():
        st.upsert(rows, 1)
    st.metas = {st.lookup([f"k{i}"])[f"k{i}"][0]: m for i, m in enumerate(metas)}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = random.Random(0)
    st = Store(tmp_path_factory.mktemp("where"), create=True)
    metas = []
    for i in range(300):
        m = {}
        if rng.random() < 0.8:
            m["color"] = rng.choice(COLORS)
        if rng.random() < 0.8:
            m["year"] = rng.choice([2018, 2019, 2020, 2021, 2020.5])
        if rng.random() < 0.5:
            m["flag"] = rng.choice([True, False, 1, 0])  # 1/0 must not match True/False
        if rng.random() < 0.3:
            m["year"] = str(m.get("year", "2020"))  # a string that looks like a number
        if rng.random() < 0.1:
            m["dotted.key"] = "x"
        metas.append(m)
    _fill(st, metas)
    yield st
    st.close()


FILTERS = [
    {"color": "red"},
    {"color": {"$eq": "Red"}},
    {"color": {"$ne": "red"}},
    {"year": {"$gt": 2019}},
    {"year": {"$gte": 2020}},
    {"year": {"$lt": 2020.5}},
    {"year": {"$lte": 2019}},
    {"year": {"$gt": "2019"}},
    {"year": 2020},
    {"year": "2020"},
    {"flag": True},
    {"flag": False},
    {"flag": 1},
    {"flag": {"$ne": True}},
    {"color": {"$in": ["red", "blue"]}},
    {"color": {"$nin": ["red", "blue"]}},
    {"year": {"$in": [2018, "2021"]}},
    {"$and": [{"color": "green"}, {"year": {"$gte": 2020}}]},
    {"$or": [{"color": "green"}, {"flag": True}]},
    {"$or": [{"$and": [{"color": "blue"}, {"year": {"$lt": 2020}}]}, {"dotted.key": "x"}]},
    {"color": "blue", "year": 2021},
    {"missing": {"$ne": 3}},
    {"missing": 3},
]


@pytest.mark.parametrize("where", FILTERS, ids=[str(f) for f in FILTERS])
def test_sql_filter_matches_python_oracle(store, where):
    got = set(store.ids(where=compile_where(where)).tolist())
    want = {i for i, m in store.metas.items() if matches(where, m)}
    assert got == want


def test_filters_select_something_and_not_everything(store):
    # Guard against a degenerate oracle/SQL pair that agrees by matching nothing or everything.
    sizes = [len(store.ids(where=compile_where(w))) for w in FILTERS[:-1]]
    assert all(0 < s < len(store.metas) for s in sizes[:10])


@pytest.mark.parametrize(
    "where, expected",
    [
        ({"year": {"$gt": True}}, "Expected a number or string for $gt on 'year', got bool True"),
        ({"year": {"$in": []}}, "Expected a non-empty list for $in on 'year', got list []"),
        ({"year": {"$in": 3}}, "Expected a non-empty list for $in on 'year', got int 3"),
        ({"year": {"$like": 3}}, "Expected an operator among"),
        ({"year": {"$gt": 1, "$lt": 3}}, "Expected one operator for 'year'"),
        ({"year": [1, 2]}, "Expected a str, int, float or bool for $eq on 'year', got list"),
        ({"$and": {"a": 1}}, "Expected a non-empty list of filters for $and, got dict"),
        ({"$xor": []}, "Expected a metadata key"),
        ({}, "Expected a non-empty filter dict"),
        ("color=red", "Expected a filter dict"),
    ],
)
def test_invalid_filters_say_what_was_expected(where, expected):
    with pytest.raises(FilterError) as info:
        compile_where(where)
    assert expected in str(info.value)


def test_cli_filter_parsing():
    assert parse_cli_filters(["color=red"]) == {"color": {"$eq": "red"}}
    assert parse_cli_filters(["year>=2020", "flag=true", "name='42'"]) == {
        "$and": [{"year": {"$gte": 2020}}, {"flag": {"$eq": True}}, {"name": {"$eq": "42"}}]
    }
    assert parse_cli_filters(["score<0.5"]) == {"score": {"$lt": 0.5}}
    assert parse_cli_filters(["x!=1"]) == {"x": {"$ne": 1}}
    assert parse_cli_filters([]) is None
    with pytest.raises(FilterError, match="Expected --where KEY=VALUE"):
        parse_cli_filters(["nonsense"])


# ---- keys: every key Index.add accepts can be filtered on (issue 7, item 8) ----------------------------------
ODD_KEYS = ["café", "名前", 'say "hi"', "", "back\\slash", "tab\tkey", "😀", "a.b", "it's"]


@pytest.fixture(scope="module")
def odd_store(tmp_path_factory):
    """Items whose metadata use keys that need escaping in JSON or in a JSON path."""
    st = Store(tmp_path_factory.mktemp("odd"), create=True)
    metas = [{key: i // len(ODD_KEYS), "other": i} for i, key in enumerate(ODD_KEYS * 3)] + [{"plain": 1}]
    _fill(st, metas)
    yield st
    st.close()


@pytest.mark.parametrize("key", ODD_KEYS, ids=repr)
@pytest.mark.parametrize("op", ["$eq", "$ne", "$gte", "$in"])
def test_every_storable_key_is_filterable(odd_store, key, op):
    value = [1, 2] if op == "$in" else 1
    where = {key: {op: value}}
    got = set(odd_store.ids(where=compile_where(where)).tolist())
    want = {i for i, m in odd_store.metas.items() if matches(where, m)}
    assert got == want
    if op in ("$eq", "$gte"):
        assert got  # the oracle agrees with something, not with an empty answer


def test_keys_starting_with_dollar_are_refused_when_added():
    from bindkit.errors import InputError
    from bindkit.index.items import check_metadata

    with pytest.raises(InputError, match=r"starts with '\$'"):
        check_metadata({"$price": 3})
    for key in ODD_KEYS:  # everything else a filter can name is accepted
        assert check_metadata({key: 1}) == {key: 1}
    with pytest.raises(FilterError, match="Expected a metadata key"):
        compile_where({"$price": 3})


@pytest.mark.parametrize("expr, wanted", [
    ("year==2020", "Expected one comparison operator"),
    ("year=>2020", "Expected one comparison operator"),
    ("year>>2020", "Expected one comparison operator"),
    ("year<>2020", "Expected one comparison operator"),
    ("year>=abc", "Expected a number after >="),
    ("year<true", "Expected a number after <"),
    ("year>nan", "Expected a number after >"),
    ("year=", "Expected a value after year="),
    ("=2020", "Expected --where KEY=VALUE"),
])
def test_cli_filters_that_used_to_match_nothing_are_errors(expr, wanted):
    with pytest.raises(FilterError, match=wanted) as info:
        parse_cli_filters([expr])
    assert "KEY>=VALUE" in str(info.value)  # the accepted syntax is shown


def test_cli_filters_accept_quoted_text_and_any_key():
    assert parse_cli_filters(["name>='abc'"]) == {"name": {"$gte": "abc"}}
    assert parse_cli_filters(["name=''"]) == {"name": {"$eq": ""}}
    assert parse_cli_filters(["café=1", "名前=値"]) == {"$and": [{"café": {"$eq": 1}}, {"名前": {"$eq": "値"}}]}
    assert parse_cli_filters(['say "hi"=yes']) == {'say "hi"': {"$eq": "yes"}}


# ---- limits: refused before SQL, always as FilterError ------------------------------------------------------------
def _nested(depth: int, op: str = "$and", last: bool = False) -> dict:
    """A filter with ``depth`` levels of ``op``, the nested one first (or last) in each list."""
    w: dict = {"color": "red"}
    for _ in range(depth):
        w = {op: ([{"year": 2020}, w] if last else [w, {"year": 2020}])}
    return w


@pytest.mark.parametrize("where, words", [
    ({"color": {"$in": [f"c{i}" for i in range(257)]}}, "at most 256 values in one $in"),
    ({"color": {"$nin": list(range(600))}}, "at most 256 values in one $nin"),
    ({"$or": [{"color": f"c{i}"} for i in range(500)]}, "at most 256 filters in one $or"),
    ({f"k{i}": 1 for i in range(300)}, "at most 256 keys"),
    (_nested(33), "at most 32 levels"),
    (_nested(100), "at most 32 levels"),
    ({"$and": [{f"k{j}": {"$in": list(range(256))}} for j in range(5)]}, "at most 1024 comparisons"),
    ({"year": 2**63}, "between -9223372036854775808 and 9223372036854775807"),
    ({"year": {"$in": [1, -(2**63) - 1]}}, "integer SQLite can store"),
    ({"color": "caf\udce9"}, "valid Unicode"),
    ({"caf\udce9": "x"}, "valid Unicode"),
])
def test_filters_over_a_limit_are_filter_errors_before_sql(store, where, words):
    with pytest.raises(FilterError, match=re.escape(words)):
        compile_where(where)
    with pytest.raises(FilterError):
        matches(where, {})


def test_a_filter_nested_100000_deep_is_a_filter_error_not_a_recursion_error():
    w: dict = {"color": "red"}
    for _ in range(100_000):
        w = {"$and": [w]}
    with pytest.raises(FilterError, match="at most 32 levels"):
        compile_where(w)


@pytest.mark.parametrize("where", [
    _nested(32), _nested(32, "$or", last=True), _nested(32, "$and", last=True),
    {"color": {"$in": COLORS * 64}},
    {"$or": [{"color": c} for c in COLORS * 64]},
    {"$and": [{"$or": [{"year": {"$nin": [2018, 2019, 2020, 2021] * 8}}] * 8}] * 2},
    {"year": {"$gte": -(2**63)}}, {"year": {"$lte": 2**63 - 1}},
])
def test_filters_at_the_limits_run_in_sqlite_and_agree_with_the_oracle(store, where):
    got = set(store.ids(where=compile_where(where)).tolist())
    assert got == {i for i, m in store.metas.items() if matches(where, m)}


def test_a_deeply_nested_chain_stays_within_sqlites_parser_stack(store):
    """32 levels with the nested filter last in each list and several keys per dict (the parser's worst case)."""
    w: dict = {"color": {"$nin": [str(i) for i in range(20)]}}
    for _ in range(32):
        w = {"year": {"$ne": 1}, "$and": [{"flag": {"$in": [True, 5]}}, w], "café": {"$nin": ["x"]}}
    got = set(store.ids(where=compile_where(w)).tolist())
    assert got == {i for i, m in store.metas.items() if matches(w, m)}


def test_a_non_utf8_cli_filter_is_a_filter_error():
    import os

    expr = os.fsdecode(b"color=caf\xe9")  # what argv holds for a Latin-1 argument on a UTF-8 system
    with pytest.raises(FilterError, match="valid Unicode"):
        parse_cli_filters([expr])
