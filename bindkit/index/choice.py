"""Moved to :mod:`bindkit.index.vectors.tuning`; kept so old imports work."""

import functools

from bindkit.index.vectors import tuning as _tuning
from bindkit.index.vectors.index import VectorIndex
from bindkit.index.vectors.tuning import (  # noqa: F401  (moved)
    ADD_CHUNK, CHUNK, DEFAULT_MEMORY_BUDGET, FLAT_MAX, K, MEDIUM_MAX, VectorsOf, choose_key, exact_topk, held_out,
    nlist_for, pq_m_for, recall_at)

#: :func:`bindkit.index.vectors.tuning.build_tuned` returning a :class:`VectorIndex`, as it did here.
build_tuned = functools.partial(_tuning.build_tuned, cls=VectorIndex)
