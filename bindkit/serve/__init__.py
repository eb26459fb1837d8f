"""``bindkit serve``: an HTTP server for a bindkit model — Weaviate's multi2vec-bind inference protocol,
OpenAI-style ``/v1/embeddings``, and search over a bindkit index — with dynamic batching, limits and
bearer-token authentication. See :func:`bindkit.serve.app.create_app` and ``bindkit serve --help``."""

from __future__ import annotations

from .app import ServeConfig, create_app
from .limits import Limits

__all__ = ["Limits", "ServeConfig", "create_app"]
