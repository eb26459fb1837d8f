"""Weights: read reference checkpoints (``.pth``, safetensors, converted directories) restricted to some
modalities, convert them to one safetensors file per modality, and find or download them for a card.

``read``: :func:`read_state_dict`, :func:`checkpoint_modalities`; ``convert``: :func:`convert`;
``fetch``: :func:`locate_weights`, :func:`fetch_weights`, :func:`missing_weights_error`.
"""

from .convert import convert, parse_dtype
from .fetch import (
    cache_dir,
    download_guard,
    download_size,
    fetch_weights,
    implicit_fetch,
    license_notice,
    locate_weights,
    missing_weights_error,
    search_dirs,
)
from .read import checkpoint_modalities, read_state_dict, recorded_fingerprints

__all__ = [
    "cache_dir",
    "checkpoint_modalities",
    "convert",
    "download_guard",
    "download_size",
    "fetch_weights",
    "implicit_fetch",
    "license_notice",
    "locate_weights",
    "missing_weights_error",
    "recorded_fingerprints",
    "parse_dtype",
    "read_state_dict",
    "search_dirs",
]
