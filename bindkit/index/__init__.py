"""Indexes of embeddings: one FAISS index per modality plus a SQLite metadata store, in one directory.

``Index`` is the API (create/open/add/remove/search/stats); ``bindkit.index.build`` runs offline builds
(resumable, incremental, sharded) and merges partial indexes.
"""

from __future__ import annotations

from .api import Hit, Index
from .ingest import AddResult
from .where import parse_where

__all__ = ["AddResult", "Hit", "Index", "parse_where"]
