"""``bindkit serve``: an HTTP server for a bindkit model — Weaviate's multi2vec-bind inference protocol,
OpenAI-style ``/v1/embeddings``, and search over a bindkit index — with dynamic batching, limits and
bearer-token authentication. See :func:`bindkit.serve.app.create_app` and ``bindkit serve --help``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .bounds import ServerBounds, uvicorn_options
from .limits import Limits

if TYPE_CHECKING:
    from .app import ServeConfig, create_app

__all__ = ["Limits", "ServeConfig", "ServerBounds", "create_app", "uvicorn_options"]


def __getattr__(name: str) -> Any:
    """``ServeConfig`` and ``create_app`` import FastAPI, torch and the loaders: only when used, so that the
    ``bindkit serve`` command line (its --help, its argument errors) stays fast."""
    if name in ("ServeConfig", "create_app"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module 'bindkit.serve' has no attribute {name!r}")
