"""Misusing the Python API gets bindkit errors that are also the natural builtins (issue 7, items 6, 8, 10):
closed indexes, bad ``k``/``modalities``/``weights``/ids, huge ``k``, and metadata keys that need escaping.

Runs without ../shared: a randomly initialised imagebind_tiny text encoder is enough (no test depends on
which of two near-equal scores ranks first)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import bindkit
from bindkit.errors import ArgumentError, ArgumentTypeError, BindkitError, IndexClosedError, InputError
from bindkit.index import Index

from index_helpers import cli

TEXTS = ["a dog barking", "a car engine", "birds singing"]


@pytest.fixture(scope="module")
def model():
    return bindkit.build_model("imagebind_tiny", modalities=["text"])


@pytest.fixture
def index(tmp_path, model):
    with Index.create(tmp_path / "idx", model=model) as ix:
        ix.add(TEXTS, modality="text", metadata=[{"n": i, "café": i, "名前": f"値{i}", 'say "hi"': i}
                                                  for i in range(len(TEXTS))])
        yield ix


# ---- item 10: closed index, bad arguments ---------------------------------------------------------------------
def test_closed_index_says_so_and_repr_still_works(index):
    index.close()
    assert "(closed)" in repr(index) and str(index.path) in repr(index)
    calls = [len, lambda ix: ix.modalities, lambda ix: ix.search(vector=np.ones(ix.dim), k=1),
             lambda ix: ix.add(["x"], modality="text"), lambda ix: ix.remove(1), lambda ix: ix.get(1),
             lambda ix: ix.stats(), lambda ix: ix.vectors("text"), lambda ix: ix.compact(),
             lambda ix: ix.optimize(), lambda ix: ix.flush(), lambda ix: ix.__enter__()]
    for call in calls:
        with pytest.raises(IndexClosedError, match="is closed"):
            call(index)
    index.close()  # closing twice is fine
    assert index.closed


@pytest.mark.parametrize("bad", [None, "imagebind_tiny", object()])
def test_create_without_a_model_is_a_type_error(tmp_path, bad):
    with pytest.raises(ArgumentTypeError, match="needs model="):
        Index.create(tmp_path / "idx", model=bad)
    assert not (tmp_path / "idx").exists()  # refused before anything was written


@pytest.mark.parametrize("k, error", [("5", TypeError), (None, TypeError), (2.7, TypeError), (True, TypeError),
                                      (-1, ValueError), (0, ValueError)])
def test_bad_k_is_refused(index, k, error):
    with pytest.raises(error, match="k must be") as info:
        index.search(text="a dog", k=k)
    assert isinstance(info.value, BindkitError)


@pytest.mark.parametrize("modalities", [5, [5], {"text": 1}])
def test_bad_modalities_are_a_type_error(index, modalities):
    with pytest.raises(ArgumentTypeError, match="modalities must be"):
        index.search(text="a dog", modalities=modalities)


@pytest.mark.parametrize("ids, error", [(2**70, ArgumentError), (-1, ArgumentError), ([1, 2**64], ArgumentError),
                                        ("12", ArgumentTypeError), ([1.5], ArgumentTypeError),
                                        (np.array([1.0]), ArgumentTypeError)])
def test_bad_ids_are_refused(index, ids, error):
    for call in (index.remove, index.get, index.select):
        with pytest.raises(error, match="ids"):
            call(ids)
    assert len(index) == len(TEXTS)


@pytest.mark.parametrize("weights, error", [({"image": 2.0}, ArgumentError), ([1.0, 2.0], ArgumentError),
                                            ({"text": "x"}, ArgumentTypeError), ({"text": float("nan")}, ArgumentError),
                                            (3.0, ArgumentTypeError)])
def test_weights_must_fit_the_inputs_given(index, weights, error):
    with pytest.raises(error, match="weight"):
        index.search(text="a dog", weights=weights)


def test_weights_of_given_inputs_are_applied(index):
    q = index.vectors("text")[1][0]
    plain = index.search(vector=q, k=1)["text"][0]
    flipped = index.search(vector=q, weights={"vector": -1.0}, k=len(TEXTS))["text"]
    # the negated query ranks everything in reverse: scores compared, not the order of near-tied ids
    ids, vecs = index.vectors("text")
    own = vecs @ (q / np.linalg.norm(q))
    assert np.allclose([h.score for h in flipped], np.sort(-own)[::-1], atol=1e-3)
    assert flipped[-1].score == pytest.approx(-plain.score, abs=1e-3)


def test_other_value_errors_are_bindkit_errors(index):
    with pytest.raises(ArgumentError, match="needs a query"):
        index.search(k=3)
    with pytest.raises(ArgumentError, match="refusing to remove everything"):
        index.remove()
    with pytest.raises(ArgumentError, match="3 items but 2 modalities"):
        index.add(["a", "b", "c"], modality=["text", "text"])


# ---- item 6: k is clamped to the candidates -------------------------------------------------------------------
def test_huge_k_is_clamped_to_the_candidates(index):
    hits = index.search(text="a dog", k=99999999999999999999)
    assert sorted(h.id for h in hits["text"]) == sorted(index.select(where={"n": {"$gte": 0}}))
    filtered = index.search(text="a dog", k=10**18, where={"n": {"$lt": 2}})
    assert len(filtered["text"]) == 2
    tracemalloc.start()
    try:
        batch = index.search(vector=np.ones((4, index.dim)), k=10**7)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [len(r["text"]) for r in batch] == [len(TEXTS)] * 4
    assert peak < 8 * 2**20  # never sized by k: 4 x 10**7 scores and ids alone would be 480 MB


# ---- item 8: every stored key is filterable; '$' keys are refused at add time -------------------------------
@pytest.mark.parametrize("where", [{"café": 1}, {"名前": "値1"}, {'say "hi"': 1}, {"café": {"$in": [1, 7]}}])
def test_non_ascii_and_quoted_keys_match(index, where):
    hits = index.search(text="a dog", k=5, where=where)["text"]
    assert [h.text for h in hits] == [TEXTS[1]]
    assert index.select(where=where) == [hits[0].id]


def test_dollar_keys_are_refused_at_add_time(index):
    with pytest.raises(InputError, match=r"starts with '\$'"):
        index.add(["x"], modality="text", metadata={"$price": 1})
    assert len(index) == len(TEXTS)


def test_cli_remove_dry_run_lists_and_keeps(index):
    path = index.path
    index.close()
    proc = cli("index", "remove", path, "--where", "café>=1", "--dry-run")
    assert "would remove 2 items" in proc.stdout
    assert TEXTS[1] in proc.stdout and TEXTS[2] in proc.stdout and TEXTS[0] not in proc.stdout
    with Index.open(path) as ix:
        assert len(ix) == len(TEXTS)
    bad = cli("index", "remove", path, "--where", "year==2020", check=False)
    assert bad.returncode != 0 and "Expected one comparison operator" in bad.stderr
    assert "Traceback" not in bad.stderr
    proc = cli("index", "remove", path, "--where", "名前=値0")
    assert "removed 1 items" in proc.stdout
    with Index.open(path) as ix:
        assert sorted(h.text for h in ix.get(ix.select(where={"n": {"$gte": 0}}))) == TEXTS[1:]


def test_cli_k_is_checked_and_clamped(tmp_path, tiny_model, fixture_dir):
    from index_helpers import model_args

    with Index.create(tmp_path / "idx", model=tiny_model) as ix:
        ix.add(TEXTS, modality="text")
    for bad, said in (("0", "must be at least 1"), ("-1", "must be at least 1"), ("2.5", "whole number"),
                      ("abc", "whole number")):
        proc = cli("search", tmp_path / "idx", "--text", "a dog", f"-k={bad}", check=False)
        assert proc.returncode == 2 and said in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("search", tmp_path / "idx", "--text", "a dog", "-k", "99999999999999999999", *model_args(fixture_dir))
    assert f"== text ({len(TEXTS)} hits)" in proc.stdout
