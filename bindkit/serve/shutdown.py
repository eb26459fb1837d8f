"""What a request still running when ``--graceful-timeout`` runs out is answered.

On SIGTERM uvicorn stops accepting connections and waits up to ``timeout_graceful_shutdown`` seconds for the
requests in flight; then it cancels them, and a cancelled request would get uvicorn's own ``text/plain`` 500
("Internal Server Error"), which reads like a bug and which clients retry blindly. :class:`ShutdownGuard`
answers such a request with a JSON 503 (the shape of every other error of its route) saying that the server is
shutting down, with ``Retry-After``. A request whose answer had already started is left as it is.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from .errors import error_response

SHUTDOWN_MESSAGE = ("the server is shutting down and this request did not finish within its --graceful-timeout; "
                    "send it again (to this server once it is back, or another one). An /add may already have been "
                    "stored: adding the same items again keeps one copy of each")


class ShutdownGuard:
    """ASGI middleware: a request cancelled before its answer started gets a JSON 503 (see the module docstring)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if started:
                raise
            # the cancellation is the server's, at shutdown: answer, then let the task end normally
            await error_response(scope["path"], 503, SHUTDOWN_MESSAGE,
                                 headers={"Retry-After": "5", "Connection": "close"})(scope, receive, send)
