"""Moved to :mod:`bindkit.index.vectors.faiss_keys` ("key" there is a FAISS factory key); kept so old imports work."""

from bindkit.index.vectors.faiss_keys import (  # noqa: F401  (moved)
    EXACT_RAW, FLAT, _new_faiss, _set_direct_map, fast_training, is_lossy, kind_of, trained_fingerprint)
