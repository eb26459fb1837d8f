"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) that work without internet access.

FastAPI's default pages load Swagger UI, ReDoc, a favicon and Google fonts from CDNs, so on a machine without
internet they stay blank. These pages are FastAPI's own (``get_swagger_ui_html``, ``get_redoc_html``), pointed
at copies of the JavaScript, CSS and favicon that the ``fastapi-offline`` package ships (a dependency of the
``serve`` extra), served by this server under ``/docs/assets/`` — FastAPI's self-hosting recipe. No page
references another host, and neither page asks one for anything: Swagger UI's online validator is off, and the
Redocly logo that ReDoc's sidebar loads from Redocly's CDN is replaced, in the copy served, by an empty image.
Without ``fastapi-offline`` the pages fall back to FastAPI's CDN links, with a warning.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, Response

ASSETS = "/docs/assets"
#: The paths of the documentation (answered before the model is loaded, like /openapi.json).
DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
          "redoc.standalone.js": "text/javascript", "favicon.png": "image/png"}
#: What ReDoc's sidebar footer loads from the internet, and the transparent 1x1 GIF served in its place.
_REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
_EMPTY_IMAGE = b"data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"


def is_doc_path(path: str) -> bool:
    """Whether ``path`` is a documentation page, the OpenAPI schema or one of the pages' assets."""
    return path in DOC_PATHS or path.startswith(ASSETS + "/")


def asset_dir() -> Path | None:
    """The folder of the packaged Swagger UI / ReDoc files, or None when ``fastapi-offline`` is not installed."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).resolve().parent / "static"
    return folder if all((folder / name).is_file() for name in _FILES) else None


@functools.lru_cache(maxsize=1)
def _redoc_js(folder: Path) -> bytes:
    return (folder / "redoc.standalone.js").read_bytes().replace(_REDOC_LOGO, _EMPTY_IMAGE)


def add_docs_routes(app: FastAPI) -> None:
    """Serve ``/docs``, ``/docs/oauth2-redirect``, ``/redoc`` and their assets on ``app`` (created with
    ``docs_url=None, redoc_url=None``)."""
    folder = asset_dir()
    if folder is None:
        logging.getLogger("bindkit.serve").warning(
            "fastapi-offline is not installed: /docs and /redoc load their scripts from a CDN and stay blank "
            "without internet access (pip install 'bindkit[serve]')")
        local: dict[str, Any] = {}
    else:
        local = {"swagger_js_url": f"{ASSETS}/swagger-ui-bundle.js", "swagger_css_url": f"{ASSETS}/swagger-ui.css",
                 "swagger_favicon_url": f"{ASSETS}/favicon.png"}
    openapi_url = app.openapi_url or "/openapi.json"

    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} - Swagger UI",
                                   oauth2_redirect_url="/docs/oauth2-redirect",
                                   swagger_ui_parameters={"validatorUrl": None}, **local)

    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc() -> HTMLResponse:
        extra = {} if folder is None else {"redoc_js_url": f"{ASSETS}/redoc.standalone.js",
                                           "redoc_favicon_url": f"{ASSETS}/favicon.png", "with_google_fonts": False}
        return get_redoc_html(openapi_url=openapi_url, title=f"{app.title} - ReDoc", **extra)

    async def asset(name: str) -> Response:
        if folder is None or name not in _FILES:
            raise HTTPException(404)
        cache = {"Cache-Control": "max-age=86400"}
        if name == "redoc.standalone.js":
            return Response(_redoc_js(folder), media_type=_FILES[name], headers=cache)
        return FileResponse(folder / name, media_type=_FILES[name], headers=cache)

    app.add_api_route("/docs", swagger, methods=["GET"], include_in_schema=False)
    app.add_api_route("/docs/oauth2-redirect", oauth2_redirect, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
    app.add_api_route(ASSETS + "/{name}", asset, methods=["GET"], include_in_schema=False)
