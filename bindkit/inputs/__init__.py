"""Loaders: files, bytes, PIL images, arrays and strings -> the batch tensors ``BindModel.encode`` takes.

One module per modality (``image``, ``video``, ``text``, ``audio``, ``depth``, ``thermal``, ``imu``) reads its
parameters from the encoder card; ``sources`` checks items and guesses kinds from paths; ``batch`` holds
:func:`preprocess` and :func:`embed`.
"""

from __future__ import annotations

from ..errors import InputError
from .batch import Embeddings, ItemError, embed, preprocess, resolve_params
from .sources import EXTENSIONS, kind_from_path

__all__ = ["EXTENSIONS", "Embeddings", "InputError", "ItemError", "embed", "kind_from_path", "preprocess",
           "resolve_params"]
