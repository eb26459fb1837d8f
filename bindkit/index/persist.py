"""Moved to :mod:`bindkit.index.vectors.files`; kept so old imports work."""

from bindkit.fileio import fsync_dir as _fsync_dir  # noqa: F401  (moved)
from bindkit.index.vectors.files import (  # noqa: F401  (moved)
    load_index, merge_indexes, save_index, writable_copy, writable_copy as _writable_copy)
