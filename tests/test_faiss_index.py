"""VectorIndex: exact search, stable ids, pre-filtering, persistence, automatic choice and tuning, merge."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from bindkit.errors import IndexStoreError, InputError
from bindkit.index.vectors import core as faiss_index
from bindkit.index.faiss_index import VectorIndex

DIM = 64


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def uniform(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((n, dim)))


def structured(n: int, dim: int = DIM, clusters: int = 100, sub: int = 6, seed: int = 0) -> np.ndarray:
    """Clusters with low-dimensional variation inside each plus small noise (like real embeddings)."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((clusters, dim)))
    bases = rng.standard_normal((clusters, dim, sub)) / np.sqrt(dim)
    labels = rng.integers(0, clusters, n)
    z = rng.standard_normal((n, sub)) * 0.5
    x = centres[labels] + np.einsum("nds,ns->nd", bases[labels], z) + rng.standard_normal((n, dim)) * 0.2 / np.sqrt(dim)
    return unit(x)


def ids_for(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).choice(2**62, size=n, replace=False).astype(np.int64)


def brute(queries: np.ndarray, ids: np.ndarray, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = queries @ x.T
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, 1), ids[order]


def assert_exact_topk(scores: np.ndarray, found: np.ndarray, q: np.ndarray, ids: np.ndarray, x: np.ndarray,
                      k: int, atol: float = 1e-5) -> None:
    """(scores, found) is an exact top-k of ``q @ x.T`` up to ties: each returned id's true score is its returned
    score, and the scores are the k best. Two items whose scores differ by float rounding may come back in either
    order (BLAS and thread count decide), so the id order of near-ties is never compared."""
    ref_scores, _ = brute(q, ids, x, k)
    np.testing.assert_allclose(scores, ref_scores, atol=atol)
    pos = {int(i): j for j, i in enumerate(ids)}
    assert (found >= 0).all() and all(len(set(row)) == len(row) for row in found.tolist())
    own = np.array([[q[r] @ x[pos[int(i)]] for i in row] for r, row in enumerate(found)])
    np.testing.assert_allclose(scores, own, atol=atol)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([np.isin(t, f).mean() for f, t in zip(found, truth)]))


@pytest.fixture(scope="module")
def data():
    x = uniform(3000)
    return ids_for(3000), x, uniform(20, seed=5)


def test_flat_search_equals_brute_force(data):
    ids, x, q = data
    vi = VectorIndex.create(DIM)
    vi.add(ids, x)
    assert len(vi) == 3000 and vi.info()["key"] == "Flat" and vi.info()["recall@10"] == 1.0
    scores, found = vi.search(q, 10)
    assert_exact_topk(scores, found, q, ids, x, 10)
    assert scores.dtype == np.float32 and found.dtype == np.int64


def test_pads_when_fewer_than_k(data):
    ids, x, q = data
    vi = VectorIndex.create(DIM)
    vi.add(ids[:3], x[:3])
    scores, found = vi.search(q[:2], 5)
    assert (found[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    assert set(found[0, :3]) == set(ids[:3])
    empty_scores, empty_ids = VectorIndex.create(DIM).search(q[:2], 4)
    assert (empty_ids == -1).all() and np.isneginf(empty_scores).all()


@pytest.mark.parametrize("key", ["Flat", "IVF16,Flat", "HNSW16"])
def test_ids_stable_after_remove(data, key):
    ids, x, q = data
    vi = VectorIndex.create(DIM, key)
    vi.add(ids, x)
    gone = ids[::3]
    assert vi.remove(np.concatenate([gone, [12345]])) == gone.size  # an absent id is ignored
    keep = ~np.isin(ids, gone)
    np.testing.assert_array_equal(vi.ids(), np.sort(ids[keep]))
    # each kept vector still finds itself under its own id
    _, found = vi.search(x[keep][:50], 1)
    np.testing.assert_array_equal(found[:, 0], ids[keep][:50])
    _, found = vi.search(x[~keep][:50], 10)
    assert not np.isin(found, gone).any()
    np.testing.assert_allclose(vi.get_vectors(ids[keep][:5]), x[keep][:5], atol=1e-6)


def test_add_replaces_existing_id(data):
    ids, x, _ = data
    vi = VectorIndex.create(DIM)
    vi.add(ids[:10], x[:10])
    vi.add(ids[:1], x[20:21])
    assert len(vi) == 10
    np.testing.assert_allclose(vi.get_vectors(ids[:1]), x[20:21], atol=1e-6)


def test_bad_input_is_rejected_clearly(data):
    ids, x, _ = data
    vi = VectorIndex.create(DIM)
    with pytest.raises(InputError, match=r"\(n, 64\)"):
        vi.add(ids[:2], x[:2, :10])
    with pytest.raises(InputError, match="NaN"):
        vi.add(ids[:2], np.full((2, DIM), np.nan, np.float32))
    with pytest.raises(InputError, match="duplicate"):
        vi.add(np.array([1, 1]), x[:2])
    with pytest.raises(InputError):
        vi.search(x[:1, :5], 3)


@pytest.mark.parametrize("key", ["Flat", "IVF16,Flat"])
@pytest.mark.parametrize("path", ["exact", "selector"])
def test_allowed_ids_give_k_hits_when_rare(data, key, path, monkeypatch):
    ids, x, q = data
    if path == "selector":  # force the IDSelector path even for a small allowed set
        monkeypatch.setattr(faiss_index, "EXACT_FILTER_MAX", 0)
    vi = VectorIndex.create(DIM, key)
    vi.add(ids, x)
    if key != "Flat":
        vi._params["nprobe"] = 1  # a single probed list rarely holds 10 of 30 allowed ids: must widen
    allowed = ids[::100]  # 1%: 30 ids
    scores, found = vi.search(q, 10, allowed_ids=allowed)
    assert (found >= 0).all() and np.isin(found, allowed).all()
    ref_scores, ref_ids = brute(q, allowed, x[::100], 10)
    np.testing.assert_array_equal(found, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    # fewer allowed than k: all of them, then padding; unknown ids are ignored
    _, few = vi.search(q[:3], 10, allowed_ids=np.concatenate([ids[:4], [7, 8]]))
    assert (np.sort(few[:, :4], axis=1) == np.sort(ids[:4])).all() and (few[:, 4:] == -1).all()


def test_save_load_roundtrip_and_mmap(data, tmp_path):
    ids, x, q = data
    vi = VectorIndex.create(DIM)
    vi.add(ids, x)
    vi.save(tmp_path / "image", stamp=7)
    for mmap in (False, True):
        back, stamp = VectorIndex.load(tmp_path / "image", mmap=mmap)
        assert stamp == 7 and len(back) == len(vi) and back.read_only == mmap
        np.testing.assert_array_equal(back.search(q, 10)[1], vi.search(q, 10)[1])
        np.testing.assert_array_equal(back.ids(), vi.ids())
    with pytest.raises(IndexStoreError, match="mmap=False"):
        back.add(ids[:1], x[:1])
    back.save(tmp_path / "image", stamp=8)  # a mapped index re-saves by linking its files
    again, stamp = VectorIndex.load(tmp_path / "image")
    assert stamp == 8 and len(again) == len(vi)
    versions = [p for p in (tmp_path / "image").iterdir() if p.is_dir()]
    assert len(versions) == 1  # older versions are cleaned up


def test_ivf_pq_roundtrip_with_raw_store(tmp_path):
    x = structured(12_000)
    ids = ids_for(12_000)
    vi = VectorIndex.create(DIM)
    vi.add(ids, x)
    vi.optimize(index_key="IVF32,PQ8", progress=False)
    vi.remove(ids[:100])
    vi.add(ids[:50], x[:50])
    vi.save(tmp_path / "m", stamp=3)
    q = structured(30, seed=9)
    for mmap in (False, True):
        back, _ = VectorIndex.load(tmp_path / "m", mmap=mmap)
        assert len(back) == 11_950 and back.info()["key"] == "IVF32,PQ8"
        np.testing.assert_array_equal(back.search(q, 10)[1], vi.search(q, 10)[1])
        np.testing.assert_allclose(back.get_vectors(ids[:50]), x[:50], atol=2e-3)  # fp16 copies


def test_missing_or_corrupt_index_raises(tmp_path, data):
    with pytest.raises(IndexStoreError, match="rebuild"):
        VectorIndex.load(tmp_path / "nothing")
    ids, x, _ = data
    vi = VectorIndex.create(DIM)
    vi.add(ids[:100], x[:100])
    vi.save(tmp_path / "t", 1)
    meta = json.loads((tmp_path / "t" / "CURRENT.json").read_text())
    (tmp_path / "t" / meta["version"] / "index.faiss").write_bytes(b"not an index")
    with pytest.raises(IndexStoreError, match="unreadable"):
        VectorIndex.load(tmp_path / "t")


def test_optimize_forced_ivf_pq_reaches_recall_with_reranking():
    everything = structured(10_200)
    x, q = everything[:10_000], everything[10_000:]  # queries: same distribution, never indexed
    ids = ids_for(10_000)
    vi = VectorIndex.create(DIM)
    vi.add(ids, x)
    info = vi.optimize(index_key="IVF64,PQ16", recall_target=0.95, progress=False)
    assert info["key"] == "IVF64,PQ16" and info["count"] == 10_000
    assert {"nprobe", "rerank"} <= set(info["params"]) and info["recall@10"] >= 0.9
    _, truth = brute(q, ids, x, 10)
    _, found = vi.search(q, 10)
    assert recall(found, truth) >= 0.9
    # without re-ranking the PQ ranking alone is worse: re-ranking is doing real work
    _, pq_only = vi._search(q, 10, rerank=1)
    assert recall(pq_only, truth) < recall(found, truth)


def test_optimize_auto_choice_by_size_and_budget():
    from bindkit.index.choice import choose_key

    assert choose_key(10_000, 1024)[0] == "Flat"
    assert choose_key(500_000, 1024)[0].endswith(",Flat") and choose_key(500_000, 1024)[0].startswith("IVF")
    assert ",PQ" in choose_key(1_000_000, 1024)[0]  # 4 GB of float32 exceeds the default 2 GiB budget
    assert ",PQ" in choose_key(100_000, 1024, memory_budget_bytes=100 * 2**20)[0]


def test_optimize_structured_auto_picks_ivf():
    x = structured(60_000, dim=32, clusters=200, sub=4)
    ids = ids_for(60_000)
    vi = VectorIndex.create(32)
    vi.add(ids, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # structured data must not trigger the fallback
        info = vi.optimize(progress=False)
    assert info["key"].startswith("IVF") and info["recall@10"] >= 0.95
    assert info["params"]["nprobe"] < 256


def test_uniform_random_data_falls_back_to_flat_with_warning():
    x = uniform(60_000, dim=32)
    ids = ids_for(60_000)
    vi = VectorIndex.create(32)
    vi.add(ids, x)
    with pytest.warns(RuntimeWarning, match="Flat"):
        info = vi.optimize(progress=False)
    assert info["key"] == "Flat" and info["recall@10"] == 1.0 and "warning" in info
    q = uniform(5, dim=32, seed=4)
    assert_exact_topk(*vi.search(q, 10), q, ids, x, 10)


def test_uniform_over_budget_warns_and_keeps_best_setting():
    x = uniform(6_000)
    vi = VectorIndex.create(DIM)
    vi.add(ids_for(6_000), x)
    with pytest.warns(RuntimeWarning, match="budget"):
        info = vi.optimize(index_key="IVF32,PQ4", memory_budget_bytes=1_000_000, recall_target=0.999,
                           progress=False)
    assert info["key"] == "IVF32,PQ4" and info["recall@10"] < 0.999 and "warning" in info


@pytest.mark.parametrize("key", ["Flat", "HNSW16"])
def test_merge_rebuilds_flat_and_hnsw(data, key):
    ids, x, q = data
    one = VectorIndex.create(DIM, key)
    one.add(ids, x)
    a, b = VectorIndex.create(DIM, key), VectorIndex.create(DIM, key)
    a.add(ids[:1700], x[:1700])
    b.add(ids[1700:], x[1700:])
    merged = VectorIndex.merge([a, b])
    np.testing.assert_array_equal(merged.ids(), one.ids())
    if key == "Flat":
        assert_exact_topk(*merged.search(q, 10), q, ids, x, 10)
    else:
        # HNSW is approximate, and how close its default walk gets depends on float rounding; a walk as wide as
        # the collection visits every node of the merged graph, so it must then be exact: the graph is whole
        assert_exact_topk(*merged._search(q, 10, efSearch=len(ids)), q, ids, x, 10)
    with pytest.raises(IndexStoreError, match="disjoint"):
        VectorIndex.merge([a, a])


@pytest.mark.parametrize("key", ["IVF16,Flat", "IVF16,PQ8"])
def test_merge_ivf_parts_by_inverted_lists(key, tmp_path):
    x = structured(12_000)
    ids = ids_for(12_000)
    one = VectorIndex.create(DIM, key)
    one.add(ids, x)  # trains on these vectors
    a, b = one.empty_like(), one.empty_like()
    a.add(ids[:5000], x[:5000])
    b.add(ids[5000:], x[5000:])
    b.save(tmp_path / "b", 1)
    b_mapped, _ = VectorIndex.load(tmp_path / "b", mmap=True)  # parts may come memory-mapped from disk
    merged = VectorIndex.merge([a, b_mapped])
    assert merged.info()["key"] == key and len(merged) == 12_000
    assert len(a) == 5000 and len(b_mapped) == 7000  # the parts are left as they were
    np.testing.assert_array_equal(merged.ids(), one.ids())
    q = structured(40, seed=8)
    s1, i1 = merged.search(q, 10)
    s2, i2 = one.search(q, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-5)
    merged.remove(ids[:10])
    assert len(merged) == 11_990


def test_flat_code_pq_key_reranks_and_removes():
    everything = structured(6_100)
    x, q = everything[:6_000], everything[6_000:]
    ids = ids_for(6_000)
    vi = VectorIndex.create(DIM)
    vi.add(ids, x)
    info = vi.optimize(index_key="PQ8", progress=False)
    assert info["key"] == "PQ8" and "rerank" in info["params"]
    assert recall(vi.search(q, 10)[1], brute(q, ids, x, 10)[1]) >= 0.9
    assert vi.remove(ids[:10]) == 10 and not np.isin(vi.search(x[:10], 10)[1], ids[:10]).any()


# ---------------------------------------------------------------- fallback: exact scan of the fp16 vectors on disk
LOW_BUDGET = 170_000  # bytes: float32 Flat of 6,000 x 64 (1.6 MB) does not fit, so the choice is IVF-PQ4


@pytest.fixture(scope="module")
def exact_disk(tmp_path_factory):
    """Uniform data under a budget too small for Flat: optimize() must fall back to the exact disk scan."""
    x, ids = uniform(6000, seed=11), ids_for(6000, seed=12)
    vi = VectorIndex.create(DIM)
    vi.add(ids, x)
    with pytest.warns(RuntimeWarning, match="brute-force speed"):
        info = vi.optimize(memory_budget_bytes=LOW_BUDGET, progress=False)
    folder = tmp_path_factory.mktemp("exact") / "image"
    vi.save(folder, stamp=1)
    return folder, ids, x, info


def test_uniform_over_budget_falls_back_to_exact_disk_scan(exact_disk, monkeypatch):
    folder, ids, x, info = exact_disk
    assert info["key"] == faiss_index.EXACT_RAW and info["count"] == 6000
    assert info["rejected"]["key"].startswith("IVF") and ",PQ" in info["rejected"]["key"]
    assert "warning" in info and info["recall@10"] >= 0.99  # measured at tuning; fp16 rounding only
    q = uniform(30, seed=13)
    ref_scores, ref_ids = brute(q, ids, x, 10)
    for mmap in (False, True):
        vi, _ = VectorIndex.load(folder, mmap=mmap)
        assert vi.faiss_index is None and vi.info()["warning"] == info["warning"]  # the manifest keeps it
        scores, found = vi.search(q, 10)
        assert recall(found, ref_ids) >= 0.99
        np.testing.assert_allclose(scores, ref_scores, atol=2e-3)
        # many small blocks (block edges mid-collection) give the same answer as one big block
        from bindkit.index.vectors import raw as raw_store

        monkeypatch.setattr(raw_store, "SCAN_BYTES", 50 * DIM * 2)
        np.testing.assert_array_equal(vi.search(q, 10)[1], found)
        monkeypatch.undo()


@pytest.mark.parametrize("filter_path", ["exact", "scan"])
def test_exact_disk_scan_remove_add_and_allowed_ids(exact_disk, monkeypatch, filter_path):
    from bindkit.index.vectors import raw as raw_store

    folder, ids, x, _ = exact_disk
    monkeypatch.setattr(raw_store, "SCAN_BYTES", 256 * DIM * 2)  # several blocks, and one run of added rows
    if filter_path == "scan":  # large allowed sets are a row mask over the full scan
        monkeypatch.setattr(faiss_index, "EXACT_FILTER_MAX", 0)
    vi, _ = VectorIndex.load(folder)
    gone = ids[::3]
    assert vi.remove(np.concatenate([gone, [12345]])) == gone.size
    keep = ~np.isin(ids, gone)
    np.testing.assert_array_equal(vi.ids(), np.sort(ids[keep]))
    _, found = vi.search(x[keep][:40], 1)
    np.testing.assert_array_equal(found[:, 0], ids[keep][:40])  # ids stable: each kept vector finds itself
    assert not np.isin(vi.search(x[~keep][:40], 10)[1], gone).any()
    new_x, new_ids = uniform(300, seed=14), ids_for(300, seed=15)
    vi.add(new_ids, new_x)
    _, found = vi.search(new_x[:40], 1)
    np.testing.assert_array_equal(found[:, 0], new_ids[:40])
    np.testing.assert_allclose(vi.get_vectors(new_ids[:5]), new_x[:5], atol=2e-3)
    # allowed ids, rare (1%) and including removed/unknown ones: exactly the allowed top k
    all_ids, all_x = np.concatenate([ids[keep], new_ids]), np.concatenate([x[keep], new_x])
    allowed = np.concatenate([all_ids[::100], gone[:5], [7]])
    q = uniform(20, seed=16)
    scores, found = vi.search(q, 10, allowed_ids=allowed)
    ref_scores, ref_ids = brute(q, all_ids[::100], all_x[::100], 10)
    assert (found >= 0).all() and np.isin(found, all_ids[::100]).all()
    assert recall(found, ref_ids) >= 0.99
    np.testing.assert_allclose(scores, ref_scores, atol=2e-3)
    _, few = vi.search(q[:3], 10, allowed_ids=np.concatenate([new_ids[:4], gone[:2]]))
    assert (np.sort(few[:, :4], axis=1) == np.sort(new_ids[:4])).all() and (few[:, 4:] == -1).all()


def test_exact_disk_scan_save_load_after_changes(exact_disk, tmp_path):
    folder, ids, x, _ = exact_disk
    vi, _ = VectorIndex.load(folder)
    vi.remove(ids[:100])
    vi.add(ids_for(50, seed=17), uniform(50, seed=18))
    q = uniform(20, seed=19)
    before = vi.search(q, 10)
    vi.save(tmp_path / "m", stamp=2)
    back, stamp = VectorIndex.load(tmp_path / "m", mmap=True)
    assert stamp == 2 and len(back) == 5950 and back.read_only
    np.testing.assert_array_equal(back.ids(), vi.ids())
    np.testing.assert_array_equal(back.search(q, 10)[1], before[1])
    np.testing.assert_allclose(back.search(q, 10)[0], before[0], atol=1e-6)
    with pytest.raises(IndexStoreError, match="mmap=False"):
        back.remove(ids[200:201])
    # a newer save deletes the version folder `back` reads from; the open index keeps working
    writable, _ = VectorIndex.load(tmp_path / "m")
    writable.remove(ids[300:301])
    writable.save(tmp_path / "m", stamp=3)
    np.testing.assert_array_equal(back.search(q, 10)[1], before[1])
    again, stamp = VectorIndex.load(tmp_path / "m")
    assert stamp == 3 and len(again) == 5949 and again.info()["key"] == faiss_index.EXACT_RAW


def test_exact_disk_merge_empty_like_and_forced_key(exact_disk):
    folder, ids, x, _ = exact_disk
    whole, _ = VectorIndex.load(folder)
    a, b = whole.empty_like(), whole.empty_like()
    assert len(a) == 0 and a.info()["key"] == faiss_index.EXACT_RAW
    a.add(ids[:2500], x[:2500])
    b.add(ids[2500:], x[2500:])
    merged = VectorIndex.merge([a, b])
    assert merged.info()["key"] == faiss_index.EXACT_RAW
    np.testing.assert_array_equal(merged.ids(), whole.ids())
    q = uniform(20, seed=20)
    np.testing.assert_array_equal(merged.search(q, 10)[1], whole.search(q, 10)[1])
    # the key can be asked for directly (a cache rebuilt from its metadata store does so), without a warning
    flat = VectorIndex.create(DIM)
    flat.add(ids, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        info = flat.optimize(index_key=faiss_index.EXACT_RAW, progress=False)
    assert info["key"] == faiss_index.EXACT_RAW and info["recall@10"] == 1.0 and len(flat) == 6000
    assert recall(flat.search(q, 10)[1], brute(q, ids, x, 10)[1]) >= 0.99


def test_unknown_index_key_is_refused_even_on_a_tiny_index():
    vi = VectorIndex.create(DIM)
    vi.add(ids_for(3), uniform(3))
    with pytest.raises(IndexStoreError, match="cannot build index key 'Bogus'"):
        vi.optimize(index_key="Bogus", progress=False)
    assert len(vi) == 3 and vi.info()["key"] == "Flat"  # unchanged
