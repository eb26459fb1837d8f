"""The one error type the server's handlers raise, and how it becomes a JSON response.

Two body shapes: Weaviate's inference protocol and bindkit's own routes answer ``{"error": "<message>"}``
(Weaviate parses the body as JSON before it looks at the status); the OpenAI-compatible routes under ``/v1/``
answer ``{"error": {"message", "type", "param", "code"}}`` as OpenAI does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when a response is built: the `bindkit serve` parser must not pay for Starlette
    from starlette.responses import JSONResponse

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """An error answered with ``status`` and ``message`` (which names the item and the reason).

    Attributes:
        status: HTTP status: 400 malformed request (not JSON, bad base64), 401 token, 413 over a limit,
            422 well-formed but unusable (wrong JSON types, undecodable or wrong-kind media), 503 not ready.
        message: what was wrong, in words.
        param: the request field at fault (OpenAI's ``param``), when known.
    """

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = int(status)
        self.message = message
        self.param = param
        self.code = code


def is_openai_path(path: str) -> bool:
    """Whether ``path`` is an OpenAI-compatible route (its errors take OpenAI's shape)."""
    return path.startswith("/v1/") or path == "/v1"


def error_body(path: str, status: int, message: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """The JSON error body for a request to ``path``."""
    if is_openai_path(path):
        kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        return {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return {"error": message}


def error_response(path: str, status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSONResponse carrying :func:`error_body`."""
    from starlette.responses import JSONResponse

    return JSONResponse(error_body(path, status, message, param, code), status_code=status, headers=headers)
