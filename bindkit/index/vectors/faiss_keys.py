"""FAISS index keys as bindkit uses them: which kind a key is, building an empty index for it, training helpers.

Kinds: ``"Flat"`` (exact, IndexIDMap2 over IndexFlatIP), ``"exact:raw-f16"`` (exact scan of the fp16 vectors on disk,
no FAISS index), ``"IVF..."`` keys (ids stored in the inverted lists) and the other factory keys such as ``"HNSW32"``
(IndexIDMap2 over the factory index). Lossy codecs (PQ, SQ) keep fp16 copies of the vectors to re-rank exactly.
"""

from __future__ import annotations

import faiss

from bindkit.errors import IndexStoreError

FLAT = "Flat"
EXACT_RAW = "exact:raw-f16"
_IP = faiss.METRIC_INNER_PRODUCT


def kind_of(key: str) -> str:
    """'flat', 'raw' (exact scan of the fp16 store), 'ivf' or 'idmap' (HNSW and other flat-code indexes wrapped in
    IndexIDMap2)."""
    if key == FLAT:
        return "flat"
    if key == EXACT_RAW:
        return "raw"
    return "ivf" if "IVF" in key else "idmap"


def is_lossy(key: str) -> bool:
    """Whether the key's codec approximates the vectors (then a raw store re-ranks its candidates)."""
    return (key not in (FLAT, EXACT_RAW) and key.split(",")[-1].strip() != "Flat"
            and not key.startswith("HNSW"))


def _new_faiss(dim: int, key: str) -> faiss.Index:
    kind = kind_of(key)
    try:
        if kind == "ivf":
            index = faiss.index_factory(dim, key, _IP)
        else:
            index = faiss.index_factory(dim, "IDMap2," + key, _IP)
    except RuntimeError as e:
        raise IndexStoreError(f"FAISS cannot build index key {key!r} for dim {dim}: {str(e).splitlines()[-1]}; "
                              "use a FAISS factory string such as 'Flat', 'HNSW32' or 'IVF1024,PQ64'") from None
    _set_direct_map(index, key)
    # index_factory turns on polysemous training for PQ codecs: slow (a minute at 10k x 64 here) and useless
    # without Hamming-threshold search, which bindkit never uses.
    ivf = faiss.try_extract_index_ivf(index)
    inner = faiss.downcast_index(ivf if ivf is not None else getattr(index, "index", index))
    if hasattr(inner, "do_polysemous_training"):
        inner.do_polysemous_training = False
    return index


def _set_direct_map(index: faiss.Index, key: str) -> None:
    # IVF-Flat answers reconstruct(id) from its lists through a hashtable (exact filtered search needs it).
    if kind_of(key) == "ivf" and not is_lossy(key):
        faiss.extract_index_ivf(index).set_direct_map_type(faiss.DirectMap.Hashtable)


def fast_training(index: faiss.Index) -> None:
    """10 k-means iterations for the coarse quantizer and PQ codebooks: most of the gain of FAISS's default 25 at
    2.5x less cost (at d = 1024 training dominates build time)."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf = faiss.downcast_index(ivf)
        ivf.cp.niter = 10
    pq = getattr(ivf if ivf is not None else faiss.downcast_index(getattr(index, "index", index)), "pq", None)
    if pq is not None:
        pq.cp.niter = 10


def trained_fingerprint(index: faiss.Index) -> str:
    """Digest of a trained, still empty index (quantizer + codebooks): parts with equal digests merge their
    inverted lists directly."""
    import hashlib

    return hashlib.blake2b(faiss.serialize_index(index).tobytes(), digest_size=8).hexdigest()
