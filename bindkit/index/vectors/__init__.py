"""The vector layer: one modality's FAISS index (plus fp16 raw copies) under stable 64-bit ids.

Modules, each depending only on those above it in this list:

- :mod:`.faiss_keys` -- FAISS factory keys: kinds, empty indexes, training helpers;
- :mod:`.topk` -- exact top-k over small sets; :mod:`.raw` -- the fp16 vector store (:class:`RawStore`);
- :mod:`.core` -- :class:`VectorIndexBase`: add, remove, search, read vectors back (no files, no tuning);
- :mod:`.tuning` -- choosing, training and tuning an index; :mod:`.files` -- save, load, merge;
- :mod:`.index` -- :class:`VectorIndex`, the class to use: the core plus ``build``/``optimize``/``save``/``load``/
  ``merge``, forwarding to ``tuning`` and ``files``.
"""

from bindkit.index.vectors.core import VectorIndexBase
from bindkit.index.vectors.faiss_keys import EXACT_RAW, FLAT
from bindkit.index.vectors.index import VectorIndex
from bindkit.index.vectors.raw import RawStore

__all__ = ["EXACT_RAW", "FLAT", "RawStore", "VectorIndex", "VectorIndexBase"]
