"""bindkit.Index with the fixture model over ../shared/samples: cross-modal search, filters, composition,
stable ids, model checks, cache repair."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import bindkit
from bindkit.errors import IndexStoreError, InputError
from bindkit.index import Hit, Index
from bindkit.index.where import matches

from index_helpers import (SAMPLE_KINDS, assert_consistent, assert_exact_topk, assert_scores_as_high_as_best,
                           samples_index)

TEXTS = ["a dog barking", "a car engine", "birds singing", "wind noise", "a cold infrared scene"]


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model, samples_dir) -> Path:
    """Samples (six file kinds) built offline, plus texts added through the API: every input kind."""
    out = tmp_path_factory.mktemp("idx") / "samples"
    shutil.copytree(samples_index(tmp_path_factory, tiny_model, samples_dir), out)
    with Index.open(out, model=tiny_model) as index:
        index.add(TEXTS, modality="text", metadata=[{"caption": i} for i in range(len(TEXTS))])
    return out


@pytest.fixture
def index(built, tmp_path, tiny_model):
    """A private copy of the built index (tests may change it)."""
    shutil.copytree(built, tmp_path / "copy")
    with Index.open(tmp_path / "copy", model=tiny_model) as ix:
        yield ix


def _sample(samples_dir: Path, kind: str) -> Path:
    return sorted((samples_dir / kind).iterdir())[0]


def test_every_input_kind_is_indexed(index, samples_dir):
    counts = index._store.modality_counts()
    assert set(counts) == set(SAMPLE_KINDS) | {"text"}
    for kind in SAMPLE_KINDS:
        assert counts[kind] == len(list((samples_dir / kind).iterdir()))
    assert_consistent(index)
    manifest = json.loads((index.path / "manifest.json").read_text())
    assert manifest["model"]["card"] == "imagebind_tiny" and manifest["dim"] == index.dim
    assert manifest["count"] == len(index)
    assert {k: v["count"] for k, v in manifest["modalities"].items()} == counts
    assert all(v["key"] for v in manifest["modalities"].values())


@pytest.mark.parametrize("query_kind", SAMPLE_KINDS + ("text",))
def test_search_from_every_modality_into_every_other(index, samples_dir, tiny_model, query_kind):
    query = TEXTS[0] if query_kind == "text" else str(_sample(samples_dir, query_kind))
    results = index.search(**{query_kind: query}, k=3)
    assert set(results) == set(index.modalities)
    q = tiny_model.embed(**{query_kind: [query]}, show_progress_bar=False)[query_kind][0]
    for kind, hits in results.items():
        ids, vecs = index.vectors(kind)
        want = np.sort(vecs @ q)[::-1][: min(3, len(ids))]
        assert len(hits) == min(3, len(ids))
        assert all(h.modality == kind and isinstance(h, Hit) for h in hits)
        assert np.allclose([h.score for h in hits], want, atol=1e-5)  # exact top-k, best first
    # the query item itself is stored: it scores ~1, as high as the best hit of its modality
    own_key = query if query_kind == "text" else str(Path(query).resolve())
    own = [h for h in index.get(index.vectors(query_kind)[0]) if (h.text or h.uri) == own_key]
    own_vec = index.vectors(query_kind)[1][index.vectors(query_kind)[0] == own[0].id][0]
    assert float(own_vec @ q) > 0.999 and float(own_vec @ q) >= results[query_kind][0].score - 1e-3


def test_modality_filter_returns_exactly_k_hits_of_that_modality(index):
    for kinds in (["depth"], "thermal,imu", ["image", "video"]):
        res = index.search(text="a dog", k=2, modalities=kinds)
        wanted = kinds.split(",") if isinstance(kinds, str) else kinds
        assert sorted(res) == sorted(wanted)
        for kind, hits in res.items():
            assert len(hits) == min(2, index._store.count(kind))
            assert {h.modality for h in hits} == {kind}


def test_where_returns_k_matching_hits_even_when_rare(index):
    rng = np.random.default_rng(0)
    texts = [f"note number {i} about {w}" for i, w in enumerate(rng.choice(["dogs", "cars", "rain"], 300))]
    meta = [{"tag": "rare" if i % 60 == 7 else "common", "n": i} for i in range(300)]
    index.add(texts, modality="text", metadata=meta)
    for where in ({"tag": "rare"}, {"$and": [{"tag": "common"}, {"n": {"$lt": 40}}]}, {"n": {"$in": [3, 250]}}):
        res = index.search(text="a note about dogs", k=5, modalities=["text"], where=where)["text"]
        ids, vecs = index.vectors("text")
        rows = index._store.rows(ids.tolist())
        ok = np.array([matches(where, rows[int(i)]["metadata"]) for i in ids])
        q = index.model.embed(text=["a note about dogs"], show_progress_bar=False)["text"][0]
        assert len(res) == min(5, ok.sum())
        assert all(matches(where, h.metadata) for h in res)
        assert_exact_topk(res, ids[ok], vecs[ok], q, 5)  # the best matching items (ties in any order)


def test_embedding_arithmetic_with_two_inputs(index, samples_dir, tiny_model):
    img, aud = str(samples_dir / "image" / "dog.jpg"), str(samples_dir / "audio" / "car.wav")
    e = tiny_model.embed(image=[img], audio=[aud], show_progress_bar=False)
    for weights, (wi, wa) in ((None, (1.0, 1.0)), ({"audio": 3.0}, (1.0, 3.0)), ([0.2, 1.0], (0.2, 1.0))):
        q = wi * e["image"][0] + wa * e["audio"][0]
        q /= np.linalg.norm(q)
        hits = index.search(image=img, audio=aud, weights=weights, k=4, modalities=["thermal"])["thermal"]
        ids, vecs = index.vectors("thermal")
        assert_exact_topk(hits, ids, vecs, q, 4, atol=1e-5)
    # the composition differs from either input alone
    alone = index.search(image=img, k=6, modalities=["thermal"])["thermal"]
    both = index.search(image=img, audio=aud, weights={"audio": 3.0}, k=6, modalities=["thermal"])["thermal"]
    assert [h.score for h in alone] != [h.score for h in both]


def test_batch_queries_equal_single_queries(index):
    batch = index.search(text=["a dog barking", "wind noise"], k=2, modalities=["audio", "text"])
    assert isinstance(batch, list) and len(batch) == 2
    for query, res in zip(["a dog barking", "wind noise"], batch):
        single = index.search(text=query, k=2, modalities=["audio", "text"])
        assert res.keys() == single.keys()
        for kind in res:  # same hits; near-tied items may swap places between a batched and a single product
            assert np.allclose([h.score for h in res[kind]], [h.score for h in single[kind]], atol=1e-5)
            ids, vecs = index.vectors(kind)
            q = index.model.embed(text=[query], show_progress_bar=False)["text"][0]
            assert_exact_topk(res[kind], ids, vecs, q, 2)
    with pytest.raises(ValueError, match="one length"):
        index.search(text=["a", "b"], image=["x.jpg"], k=1)


def test_vector_search_and_open_without_model(built, samples_dir):
    with Index.open(built) as ix:
        ids, vecs = ix.vectors("image")
        hits = ix.search(vector=vecs[1], k=1, modalities="image")["image"]
        assert_scores_as_high_as_best(hits, int(ids[1]), ids, vecs, vecs[1])
        batch = ix.search(vector=vecs, k=len(ids), modalities="image")
        for row, r in enumerate(batch):
            assert_exact_topk(r["image"], ids, vecs, vecs[row], len(ids))
        # A text query loads the model the index records: imagebind_tiny, whose weights were given in memory
        # (nothing recorded) and which has no download, so the error says what was tried and the ways out.
        with pytest.raises(bindkit.WeightsNotFoundError, match="opened without a model.*'imagebind_tiny'.*"
                           "model=bindkit.load_model.*vector="):
            ix.search(text="a dog")
        with pytest.raises(IndexStoreError, match="without a model"):
            ix.add(["a dog"], modality="text")
        with pytest.raises(InputError, match=r"shape \(32,\)"):
            ix.search(vector=np.ones(7))


def test_open_without_model_loads_the_recorded_one_when_a_query_needs_it(tmp_path, tiny_state_dict, samples_dir):
    """Index.open(path) with no model, then a text or media query: the model the index records (card + the
    weights given at build time, here a model directory) is loaded then, once, with the encoders the queries
    need, and ranks exactly as the model given explicitly. Other weights at that path are refused."""
    from bindkit.index.build import build

    mdir = bindkit.convert(tiny_state_dict, tmp_path / "tiny_model", card=bindkit.load_card("imagebind_tiny"),
                           progress=False)
    model = bindkit.load_model(mdir)
    build([samples_dir / "image", samples_dir / "audio"], tmp_path / "idx", model, progress=False, weights=str(mdir))
    image = str(_sample(samples_dir, "image"))
    with Index.open(tmp_path / "idx", model=model) as ref:
        want_text, want_image = ref.search(text="a dog barking", k=3), ref.search(image=image, k=3)
    with Index.open(tmp_path / "idx") as ix:
        assert ix.model is None and ix._recorded_model is None  # opening loads nothing
        got = ix.search(text="a dog barking", k=3)
        first = ix._recorded_model
        assert list(first.modalities) == ["text"]  # the encoder the query needs, not all six
        ix.search(text=["a car", "a bird"], k=1)
        assert ix._recorded_model is first  # loaded once
        got_image = ix.search(image=image, k=3)  # another kind: its encoder is added
        assert sorted(ix._recorded_model.modalities) == ["text", "vision"]
        for a, b in ((got, want_text), (got_image, want_image)):
            assert {k: [h.id for h in v] for k, v in a.items()} == {k: [h.id for h in v] for k, v in b.items()}
            assert all(np.allclose([h.score for h in a[k]], [h.score for h in b[k]], atol=1e-6) for k in a)
        with pytest.raises(IndexStoreError, match="without a model"):  # adding still takes an explicit model
            ix.add(["a dog"], modality="text")
    # Other weights where the index recorded its own: refused (the fingerprints differ), naming both.
    other = {k: v + 0.01 if k.endswith(".weight") else v for k, v in tiny_state_dict.items()}
    shutil.rmtree(mdir)
    bindkit.convert(other, mdir, card=bindkit.load_card("imagebind_tiny"), progress=False)
    with Index.open(tmp_path / "idx") as ix, pytest.raises(IndexStoreError, match="fingerprint"):
        ix.search(text="a dog", k=1)


def test_ids_stay_stable_across_add_remove_compact(index, samples_dir):
    before = {k: index.vectors(k)[0].tolist() for k in index.modalities}
    uri_to_id = {h.uri or h.text: h.id for h in index.get(sum(before.values(), []))}
    readd = index.add([str(_sample(samples_dir, "image"))])
    assert readd.embedded == 0 and readd.unchanged == 1 and readd[0] == uri_to_id[str(_sample(samples_dir, "image"))]
    gone = before["depth"][:2] + before["text"][:1]
    assert index.remove(gone) == 3
    assert index.remove(gone) == 0
    new = index.add(["an added caption"], modality="text")
    assert index.get(gone) == [None, None, None]
    stats = index.compact()
    assert stats["count"] == sum(map(len, before.values())) - 3 + 1
    survivors = {h.uri or h.text: h.id for h in index.get([i for ids in before.values() for i in ids if i not in gone])}
    assert all(uri_to_id[k] == v for k, v in survivors.items())
    assert index.get(new)[0].text == "an added caption"
    assert_consistent(index)
    # after compact + reopen, the same ids come back for the same sources, and re-adding gives back the old id
    path, model = index.path, index.model
    index.close()
    with Index.open(path, model=model) as again:
        assert {h.uri or h.text: h.id for h in again.get(list(survivors.values()))} == survivors
        assert_consistent(again)


def test_readding_a_removed_item_gives_back_its_id(index, samples_dir):
    path = str(_sample(samples_dir, "thermal"))
    (old,) = index.add([path])
    index.remove(old)
    (again,) = index.add([path])
    assert again == old


def test_reopening_with_another_model_fails_clearly(built, tiny_model):
    other_weights = bindkit.build_model("imagebind_tiny")  # same card, random weights
    with pytest.raises(IndexStoreError) as info:
        Index.open(built, model=other_weights)
    msg = str(info.value)
    assert "imagebind_tiny" in msg and "fingerprint" in msg
    assert any(tiny_model.fingerprint(e)[:16] in msg and other_weights.fingerprint(e)[:16] in msg
               for e in tiny_model.modalities)  # both fingerprints named
    huge = bindkit.build_model("imagebind_huge", modalities=["text"], device="meta")
    with pytest.raises(IndexStoreError) as info:
        Index.open(built, model=huge)
    assert "'imagebind_tiny'" in str(info.value) and "'imagebind_huge'" in str(info.value)


def test_create_refuses_existing_index(built, tiny_model, tmp_path):
    with pytest.raises(IndexStoreError, match="already holds an index"):
        Index.create(built, model=tiny_model)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(IndexStoreError, match="non-empty directory"):
        Index.create(tmp_path / "junk", model=tiny_model)
    with pytest.raises(IndexStoreError, match="not a bindkit index"):
        Index.open(tmp_path / "junk")


def test_add_strict_and_lenient(index, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    n = len(index)
    with pytest.raises(InputError) as info:
        index.add(["new caption one", "new caption two"], modality="text")
        index.add([str(bad)])
    assert str(bad) in str(info.value) and "nothing was added" in str(info.value)
    assert len(index) == n + 2
    res = index.add([str(bad), "x.unknownext", np.zeros(3)], strict=False)
    assert res == [None, None, None] and len(res.errors) == 3 and len(index) == n + 2
    assert "modality" in res.errors[2].reason
    with pytest.raises(InputError, match="metadata"):
        index.add(["a"], modality="text", metadata={"x": float("nan")})


def test_metadata_update_without_reembedding(index):
    (i,) = index.add(["a metadata test"], modality="text", metadata={"v": 1})
    total = index._store.embedded_total()
    again = index.add(["a metadata test"], modality="text", metadata={"v": 2})
    assert again[0] == i and again.embedded == 0 and index._store.embedded_total() == total
    assert index.get(i)[0].metadata == {"v": 2}
    assert index.search(text="a metadata test", k=1, modalities="text", where={"v": 2})["text"][0].id == i


def test_stale_or_missing_caches_are_repaired_on_open(index, tiny_model):
    path = index.path
    ids_before = {k: index.vectors(k)[0] for k in index.modalities}
    index.add(["only in sqlite"], modality="text", metadata={"late": True})
    index.close()
    shutil.rmtree(path / "image")  # a lost cache
    (path / "audio" / "CURRENT.json").write_text("{garbage")  # a corrupt one
    with Index.open(path, model=tiny_model) as ix:
        assert_consistent(ix)
        assert np.array_equal(ix.vectors("image")[0], ids_before["image"])
        assert ix.search(text="only in sqlite", k=1, modalities="text", where={"late": True})["text"]


def test_mmap_open_is_read_only_but_searches(built):
    with Index.open(built, mmap=True) as ix:
        ids, vecs = ix.vectors("depth")
        hits = ix.search(vector=vecs[0], k=len(ids), modalities="depth")["depth"]
        assert_exact_topk(hits, ids, vecs, vecs[0], len(ids))  # every item, each with its own exact score
        assert_scores_as_high_as_best(hits, int(ids[0]), ids, vecs, vecs[0])
        with pytest.raises(IndexStoreError, match="mmap"):
            ix.remove(ids[:1])


def test_stats(index):
    s = index.stats()
    assert s["count"] == len(index) and s["dim"] == 32 and s["disk_bytes"] > 0
    assert sum(v["count"] for v in s["modalities"].values()) == len(index)
    assert s["embedded_total"] >= len(index)


def test_chosen_index_type_survives_writes_compact_and_repair(index, tiny_model):
    rng = np.random.default_rng(0)
    words = "dog cat car bird rain wind engine music river street forest beach night snow city child".split()
    index.add([" ".join(rng.choice(words, 5)) + f" {i}" for i in range(2000)], modality="text", batch_size=256)
    infos = index.optimize(["text"], index_key="HNSW16", progress=False)
    # HNSW is approximate: its measured recall is recorded, but its value depends on the data, not on bindkit
    assert infos["text"]["key"] == "HNSW16" and 0.0 <= infos["text"]["recall@10"] <= 1.0
    (new,) = index.add(["one more caption"], modality="text")
    index.remove(index.vectors("text")[0][:3])
    assert_consistent(index)
    index.compact()
    manifest = json.loads((index.path / "manifest.json").read_text())
    assert manifest["modalities"]["text"]["key"] == "HNSW16" and manifest["modalities"]["imu"]["key"] == "Flat"
    path = index.path
    index.close()
    shutil.rmtree(path / "text")  # a lost cache is rebuilt from SQLite with the chosen type
    with Index.open(path, model=tiny_model) as ix:
        assert ix._caches.vi["text"].key == "HNSW16" and new in ix.vectors("text")[0]
        # the rebuilt HNSW holds the new item (assert_consistent: its ids are SQLite's) and answers with stored
        # items and their true scores; whether its walk reaches the very best one is HNSW's business, not ours
        q = ix.model.embed(text=["one more caption"], show_progress_bar=False)["text"][0]
        ids, vecs = ix.vectors("text")
        (hit,) = ix.search(text="one more caption", k=1, modalities="text")["text"]
        assert np.isclose(hit.score, float(vecs[list(ids).index(hit.id)] @ q), atol=1e-4)
        assert_consistent(ix)


def test_big_caches_are_written_lazily_and_replayed(index, tiny_model, monkeypatch):
    from bindkit.index import cache
    from bindkit.index.faiss_index import VectorIndex

    monkeypatch.setattr(cache, "SAVE_ALWAYS_BELOW", 0)  # treat every cache as big
    monkeypatch.setattr(cache, "SAVE_FRACTION", 10.0)
    _, stamp = VectorIndex.load(index.path / "text")
    (new,) = index.add(["written lazily"], modality="text")
    assert VectorIndex.load(index.path / "text")[1] == stamp  # the file was not rewritten ...
    with Index.open(index.path, model=tiny_model) as other:  # ... yet another process sees the item
        ids, vecs = other.vectors("text")
        q = tiny_model.embed(text=["written lazily"], show_progress_bar=False)["text"][0]
        assert new in other._caches.vi["text"].ids()
        assert_scores_as_high_as_best(other.search(text="written lazily", k=1, modalities="text")["text"],
                                      new, ids, vecs, q)
        assert_consistent(other)
    index.flush()
    assert VectorIndex.load(index.path / "text")[1] == index._store.version()


def test_exact_disk_mode_is_rebuilt_without_a_float32_copy(index, tiny_model, monkeypatch):
    """The fp16-on-disk exact mode (the fallback for big unstructured collections) survives a lost cache, and
    the rebuild fills it directly rather than building a float32 Flat first."""
    from bindkit.index.faiss_index import VectorIndex

    index.add([f"caption number {i}" for i in range(300)], modality="text", batch_size=128)
    infos = index.optimize(["text"], index_key="exact:raw-f16", progress=False)
    assert infos["text"]["key"] == "exact:raw-f16"
    path = index.path
    index.close()
    shutil.rmtree(path / "text")
    created = []
    real_create = VectorIndex.create.__func__
    monkeypatch.setattr(VectorIndex, "create",
                        classmethod(lambda cls, dim, key=None: created.append(key) or real_create(cls, dim, key)))
    with Index.open(path, model=tiny_model) as ix:
        assert ix._caches.vi["text"].key == "exact:raw-f16"
        assert "exact:raw-f16" in created and None not in created
        hits = ix.search(text="caption number 7", k=5, modalities="text")["text"]
        ids, vecs = ix.vectors("text")
        q = tiny_model.embed(text=["caption number 7"], show_progress_bar=False)["text"][0]
        assert_exact_topk(hits, ids, vecs, q, 5)
        (own,) = [h.id for h in ix.get(ids) if h.text == "caption number 7"]
        assert_scores_as_high_as_best(hits, own, ids, vecs, q)
        assert_consistent(ix)
