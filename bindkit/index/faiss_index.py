"""Moved to :mod:`bindkit.index.vectors` (``core``: search/add/remove; ``index``: the full :class:`VectorIndex`);
kept so old imports work (patch ``EXACT_FILTER_MAX`` in :mod:`bindkit.index.vectors.core`, not here)."""

from bindkit.index.vectors.core import (  # noqa: F401  (moved)
    CURRENT, EXACT_FILTER_MAX, FORMAT_VERSION, INDEX_FILE, _as_ids, _as_vectors)
from bindkit.index.vectors.faiss_keys import EXACT_RAW, FLAT  # noqa: F401  (moved)
from bindkit.index.vectors.index import VectorIndex  # noqa: F401  (moved)
from bindkit.index.vectors.raw import RawStore  # noqa: F401  (moved)
