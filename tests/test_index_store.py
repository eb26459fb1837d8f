"""The SQLite store: deterministic ids with collision probing, transactions, change log, hashing, manifest."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from bindkit.errors import IndexStoreError
from bindkit.index.store import ItemRow, Store, hash_object, id_for, read_manifest, write_manifest


def _row(key: str, kind: str = "text", seed: int = 0) -> ItemRow:
    v = np.random.default_rng(seed).normal(size=8).astype(np.float32)
    return ItemRow(key=key, modality=kind, content_hash=f"h{seed}", vector=v / np.linalg.norm(v))


@pytest.fixture
def store(tmp_path):
    st = Store(tmp_path / "ix", create=True)
    yield st
    st.close()


def test_ids_are_deterministic_63_bit_blake2b():
    key = "/data/img/001.jpg"
    want = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") & (2**63 - 1)
    assert id_for(key) == want and 0 <= want < 2**63
    assert id_for(key + "x") != want


def test_collision_is_resolved_by_probing_and_ids_stay_stable(store):
    taken = id_for("B")
    with store.transaction():
        store.conn.execute("INSERT INTO items(id, key, modality, content_hash, added_at, vector) VALUES(?,?,?,?,?,?)",
                           (taken, "A", "text", "x", 0.0, np.zeros(8, "<f2").tobytes()))
        (b,), _ = store.upsert([_row("B")], 1)
    assert b == taken + 1  # the next free id
    with store.transaction():
        (again,), replaced = store.upsert([_row("B", seed=3)], 2)
    assert again == b and replaced == [(b, "text")]  # an updated item keeps its id
    assert store.lookup(["A", "B"])["B"][0] == b


def test_transaction_rolls_back_everything(store):
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.bump_counter("version")
            store.upsert([_row("k1"), _row("k2")], 1)
            raise RuntimeError("boom")
    assert store.count() == 0 and store.version() == 0


def test_change_log_and_vectors_roundtrip(store):
    rows = [_row(f"k{i}", "image" if i % 2 else "text", seed=i) for i in range(6)]
    with store.transaction():
        v = store.bump_counter("version")
        ids, _ = store.upsert(rows, v)
    with store.transaction():
        v2 = store.bump_counter("version")
        store.delete(ids[:1], v2)
    assert set(store.changed_since("text", v).tolist()) == {ids[0]}
    assert set(store.changed_since("image", 0).tolist()) == {ids[1], ids[3], ids[5]}
    got_ids, vecs = next(store.vectors("image"))
    order = np.argsort([ids[1], ids[3], ids[5]])
    want = np.stack([rows[1].vector, rows[3].vector, rows[5].vector])[order]
    assert np.array_equal(got_ids, np.sort([ids[1], ids[3], ids[5]]))
    assert np.allclose(vecs, want, atol=1e-3) and vecs.dtype == np.float32  # stored as fp16
    assert store.modality_counts() == {"image": 3, "text": 2}


def test_hash_object_depends_on_content_type_and_shape():
    a = np.arange(6, dtype=np.float32)
    assert hash_object(a) == hash_object(a.copy())
    assert hash_object(a) != hash_object(a.reshape(2, 3))
    assert hash_object(a) != hash_object(a.astype(np.float64))
    assert hash_object("abc") != hash_object(b"abc")
    assert hash_object((a, 16000)) != hash_object((a, 44100))
    with pytest.raises(TypeError):
        hash_object(object())


def test_manifest_is_written_atomically_and_readable(tmp_path):
    write_manifest(tmp_path, {"a": 1})
    write_manifest(tmp_path, {"a": 2})
    assert read_manifest(tmp_path) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temporary files left
    (tmp_path / "manifest.json").write_text("{broken")
    assert read_manifest(tmp_path) is None


def test_not_an_index(tmp_path):
    with pytest.raises(IndexStoreError, match="not a bindkit index"):
        Store(tmp_path)
    (tmp_path / "meta.sqlite").write_bytes(b"garbage" * 100)
    with pytest.raises(IndexStoreError, match="not a readable SQLite database|lacks the bindkit tables"):
        Store(tmp_path)
