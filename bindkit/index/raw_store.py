"""Moved to :mod:`bindkit.index.vectors.raw`; kept so old imports work (patch ``SCAN_BYTES`` there, not here)."""

from bindkit.index.vectors.raw import IDS_FILE, RAW_FILE, SCAN_BYTES, RawStore  # noqa: F401  (moved)
