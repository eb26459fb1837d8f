"""The FastAPI application of ``bindkit serve``: Weaviate's multi2vec-bind protocol, OpenAI-style embeddings,
and search over a bindkit index.

Build it with :func:`create_app` (a loaded model, or a function that loads one in the background so that
``/.well-known/live`` answers at once and ``/.well-known/ready`` turns 204 when the model is in memory), and
run it with any ASGI server; ``bindkit serve`` runs it with uvicorn.

Routes (all but the health checks require the bearer token when one is configured)::

    GET|HEAD /.well-known/live      204, empty body
    GET|HEAD /.well-known/ready     204 once the model is loaded (503 before)
    GET  /meta                      model card, dim, modalities, fingerprints, scales, limits, version
    POST /vectorize                 Weaviate multi2vec-bind: {"texts": [...], "images": [...], ...}
    POST /v1/embeddings             OpenAI-compatible embeddings (+ "modality")
    GET  /v1/models                 OpenAI-compatible model list (the one served model)
    POST /search                    with --index: query by any mix of inputs, k, modalities, where
    POST /add, /remove              with --index and --allow-writes
    GET  /docs, /redoc, /openapi.json  OpenAPI documentation (works offline: assets served from a package)
    GET  /metrics                   Prometheus metrics (token required unless metrics_public)

Every request writes one line to the ``bindkit.serve.access`` logger (see :mod:`bindkit.serve.observe`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, TYPE_CHECKING

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ArgumentError, BindkitError, IndexStoreError, InputError, ModalityError, describe_exc
from ..inputs.budget import DecodeBudget, use_budget
from ..modality import input_kind
from . import protocol as P
from .auth import PUBLIC_PATHS, authorized, token_problem
from .bounds import BodyTimeout, InflightBytes, ServerBounds, read_body
from .docs import add_docs_routes, is_doc_path
from .engine import Engine, check_media, limit_error, normalize, request_budget, start_request
from .errors import ApiError, error_response
from .limits import Limits
from .observe import METRICS_PATH, Metrics, Observe, make_metrics, note_items
from .shutdown import ShutdownGuard

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel

log = logging.getLogger("bindkit.serve")


@dataclass
class ServeConfig:
    """How the server behaves (the options of ``bindkit serve``).

    Attributes:
        unit_vectors: ``/vectorize`` returns unit vectors instead of the reference container's scaled ones.
        token: bearer token required on every route but the health checks (None: no authentication).
        limits: request limits.
        max_batch: most items per forward pass (1 disables dynamic batching).
        max_wait_ms: how long a forward pass waits for more requests to join its batch.
        decode_workers: threads decoding media (None: CPU count, at most 8).
        index_dir: a bindkit index to serve ``/search`` from.
        allow_writes: also serve ``/add`` and ``/remove`` on the index.
        model_name: the name ``/v1/embeddings`` and ``/meta`` report (default: the card name).
        weights: where the weights came from (reported by ``/meta``).
        metrics_public: ``/metrics`` answers without the bearer token (for scrapers that cannot send one).
        bounds: server-wide bounds (connections, bytes in flight, header/body timeouts, keep-alive).
    """

    unit_vectors: bool = False
    token: str | None = None
    limits: Limits = field(default_factory=Limits)
    max_batch: int = 32
    max_wait_ms: float = 5.0
    decode_workers: int | None = None
    index_dir: str | None = None
    allow_writes: bool = False
    model_name: str | None = None
    weights: str | None = None
    metrics_public: bool = False
    bounds: ServerBounds = field(default_factory=ServerBounds)


class ServerState:
    """What the routes share: the engine once the model is loaded, the open index, a load error."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.engine: Engine | None = None
        self.index: Any = None
        self.error: str | None = None
        self.ready = threading.Event()
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bindkit-index")
        self.metrics: Metrics | None = None
        self.inflight = InflightBytes(config.bounds.max_inflight_bytes)

    def setup(self, model: "BindModel") -> None:
        """Start the engine (and open the index) for a loaded model."""
        cfg = self.config
        engine = Engine(model, cfg.limits, max_batch=cfg.max_batch, max_wait_ms=cfg.max_wait_ms,
                        decode_workers=cfg.decode_workers)
        if cfg.index_dir is not None:
            import bindkit

            self.index = bindkit.Index.open(cfg.index_dir, model=model)
        if self.metrics is not None:
            self.metrics.watch(engine.batcher)
        engine.start()
        self.engine = engine
        self.ready.set()

    def close(self) -> None:
        """At shutdown, once uvicorn has let the requests in flight finish (or cancelled them at
        --graceful-timeout): nothing still queued is waited for, and an /add cancelled mid-way is not committed
        (the index refuses it once closed)."""
        if self.engine is not None:
            self.engine.close()
        self.writer.shutdown(wait=False, cancel_futures=True)
        if self.index is not None:
            self.index.close()
            self.index = None


class Gate:
    """ASGI middleware in front of every route: bearer token, readiness, and the body bounds: the body is read
    here, at most ``max_body_bytes`` of it, within ``body_timeout`` seconds, once its bytes are reserved among
    the requests in flight (``max_inflight_bytes``), before a handler sees it."""

    def __init__(self, app: Any, state: ServerState):
        self.app = app
        self.state = state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or (
                scope["path"] == METRICS_PATH and self.state.config.metrics_public):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        token = self.state.config.token
        if token is not None and not authorized(headers.get("authorization"), token):
            await error_response(path, 401, "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                                 "(the server's --token / BINDKIT_TOKEN)", code="invalid_api_key",
                                 headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        if not is_doc_path(path) and path != METRICS_PATH and not self.state.ready.is_set():
            why = self.state.error or "the model is still loading; poll /.well-known/ready"
            await error_response(path, 503, why, headers={"Retry-After": "5"})(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limits, bounds = self.state.config.limits, self.state.config.bounds
        limit = limits.max_body_bytes
        declared = headers.get("content-length")
        declared_n = int(declared) if declared is not None and declared.isdigit() else None
        if declared_n is not None and declared_n > limit:
            await self._too_big(scope, receive, send, True, declared_n, declared_n)
            return
        # reserve the body's bytes among all requests in flight before reading it (TCP holds the rest back)
        reserved = await self.state.inflight.acquire(limit if declared_n is None else declared_n,
                                                     bounds.queue_timeout)
        if reserved is None:
            await error_response(path, 503, f"the server is reading or answering {self.state.inflight.used} bytes "
                                 f"of requests, its limit (--max-inflight-size), and no room was made within "
                                 f"{bounds.queue_timeout:g} s (--queue-timeout); retry later",
                                 headers={"Retry-After": "5"})(scope, receive, send)
            return
        try:
            try:
                chunks, size, more, gone = await read_body(receive, limit, bounds.body_timeout)
            except BodyTimeout:
                await error_response(path, 408, f"the request body was not received within {bounds.body_timeout:g} s "
                                     "(--body-timeout)", headers={"Connection": "close"})(scope, receive, send)
                return
            if gone:
                return
            if size > limit:
                await self._too_big(scope, receive, send, more, declared_n, size)
                return
            body = b"".join(chunks)
            del chunks
            sent = False

            async def replay() -> dict:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            start_request(limits)  # this request's decode budget (--max-decoded-size)
            await self.app(scope, replay, send)
        finally:
            await self.state.inflight.release(reserved)

    async def _too_big(self, scope: dict, receive: Callable, send: Callable, more: bool, declared: int | None,
                       size: int) -> None:
        limit = self.state.config.limits.max_body_bytes
        await _drain(receive, more, 4 * limit)  # so the client reads the answer instead of a reset
        await error_response(scope["path"], 413, f"the request body ({size} bytes{'' if declared else ' or more'}) "
                             f"is over the limit of {limit} bytes (--max-body-size)")(scope, receive, send)


async def _drain(receive: Callable, more: bool, cap: int) -> None:
    read = 0
    while more and read < cap:
        message = await receive()
        if message["type"] != "http.request":
            return
        read += len(message.get("body", b""))
        more = message.get("more_body", False)


def _body_schema(model: type) -> dict:
    schema = _inline_defs(model.model_json_schema())
    return {"requestBody": {"required": False, "content": {"application/json": {"schema": schema}}}}


def _inline_defs(schema: dict) -> dict:
    """``schema`` with its ``$defs`` references replaced by the definitions: a ``#/$defs/...`` reference inside
    the OpenAPI document would point at its root, where ReDoc and Swagger UI find nothing."""
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.rpartition("/")[2]])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


def create_app(config: ServeConfig | None = None, *, model: "BindModel | None" = None,
               loader: Callable[[], Any] | None = None,
               on_load_error: Callable[[BaseException], None] | None = None) -> FastAPI:
    """The ASGI app.

    Args:
        config: server options (defaults: scaled vectors, no token, default limits, batching on).
        model: a loaded BindModel (ready at start-up), or
        loader: a function returning one, run in a background thread at start-up (``/.well-known/ready``
            answers 204 once it returns).
        on_load_error: called (in the loading thread) with the exception when ``loader`` fails.
    """
    if (model is None) == (loader is None):
        raise ValueError("create_app needs exactly one of model= and loader=")
    config = config or ServeConfig()
    if config.token is not None and (problem := token_problem(config.token, "ServeConfig.token")):
        raise ArgumentError(problem)
    state = ServerState(config)

    app = FastAPI(
        title="bindkit serve",
        version=_version(),
        description="ImageBind-style embeddings for text, image, video, audio, depth, thermal and IMU in one "
        "space. Speaks Weaviate's multi2vec-bind inference protocol (`/vectorize`), OpenAI's embeddings API "
        "(`/v1/embeddings`) and bindkit index search (`/search`).",
        lifespan=_lifespan(state, model, loader, on_load_error),
        docs_url=None,
        redoc_url=None,
    )
    app.state.bindkit = state
    state.metrics = make_metrics(state.ready.is_set)
    app.add_middleware(Gate, state=state)
    app.add_middleware(ShutdownGuard)  # a request cancelled at shutdown gets a JSON 503
    # outermost: logs and counts every answer, those of the Gate and the ShutdownGuard's 503s included
    app.add_middleware(Observe, metrics=state.metrics, routes=lambda: _route_paths(app))
    add_docs_routes(app)

    def engine() -> Engine:
        if state.engine is None:  # the gate answers 503 before this; kept for direct ASGI use
            raise ApiError(503, state.error or "the model is still loading")
        return state.engine

    _add_error_handlers(app)
    _add_health_routes(app, state)
    _add_model_routes(app, state, engine)
    if config.index_dir is not None:
        _add_index_routes(app, state, engine)
    return app


def _lifespan(state: ServerState, model: "BindModel | None", loader: Callable[[], Any] | None,
              on_load_error: Callable[[BaseException], None] | None) -> Callable[[FastAPI], Any]:
    """The app's lifespan: set the model up (or start loading it in a thread) at start-up, close at shutdown."""

    def load_in_background() -> None:
        try:
            state.setup(loader())
        except BaseException as exc:  # noqa: BLE001 - reported, and the server told to stop
            reason = describe_exc(exc, with_type=not isinstance(exc, BindkitError))
            state.error = f"the model could not be loaded: {reason}"
            log.error("%s", state.error)
            if on_load_error is not None:
                on_load_error(exc)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if model is not None:
            state.setup(model)
        else:
            threading.Thread(target=load_in_background, name="bindkit-load-model", daemon=True).start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, state.close)

    return lifespan


def _add_error_handlers(app: FastAPI) -> None:
    """Every error answer is JSON (:func:`~bindkit.serve.errors.error_response`), a bug's included."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request.url.path, exc.status, exc.message, exc.param, exc.code)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        msg = f"no route {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
        return error_response(request.url.path, exc.status_code, msg, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(request.url.path, 500, f"internal error in bindkit ({describe_exc(exc)}); "
                              "please report it")


def _add_health_routes(app: FastAPI, state: ServerState) -> None:
    """``/.well-known/live``, ``/.well-known/ready`` (GET and HEAD) and ``/metrics``."""

    async def live() -> Response:
        return Response(status_code=204)

    async def ready() -> Response:
        return Response(status_code=204 if state.ready.is_set() else 503)

    for path, fn, summary in [("/.well-known/live", live, "liveness: 204 (empty body) while the process runs"),
                              ("/.well-known/ready", ready, "readiness: 204 (empty body) once the model is "
                               "loaded, else 503")]:
        app.add_api_route(path, fn, methods=["GET"], status_code=204, tags=["health"], response_class=Response,
                          summary=summary)
        app.add_api_route(path, fn, methods=["HEAD"], status_code=204, response_class=Response,
                          include_in_schema=False)

    @app.get(METRICS_PATH, tags=["health"], response_class=Response,
             summary="Prometheus metrics: requests, latency, items per request, batch sizes, queue depth")
    async def metrics() -> Response:
        if state.metrics is None:
            raise ApiError(501, "metrics need prometheus-client: pip install 'bindkit[serve]' (or prometheus-client)")
        body, content_type = state.metrics.exposition()
        return Response(body, media_type=content_type)


def _add_model_routes(app: FastAPI, state: ServerState, engine: Callable[[], Engine]) -> None:
    """``/meta``, Weaviate's ``/vectorize`` and OpenAI's ``/v1/embeddings`` and ``/v1/models``."""
    config = state.config

    @app.get("/meta", tags=["weaviate"], summary="model card, dimension, modalities, weights fingerprints")
    async def meta() -> dict[str, Any]:
        return _meta(state, engine())

    # ---- Weaviate ---------------------------------------------------------------------------------------------
    @app.post("/vectorize", tags=["weaviate"], response_model=P.VectorizeResponse,
              openapi_extra=_body_schema(P.VectorizeRequest),
              summary="Weaviate multi2vec-bind: embed lists of texts and base64 media",
              responses={400: {"description": "not JSON, or bad base64"}, 413: {"description": "over a limit"},
                         422: {"description": "wrong JSON types, undecodable or wrong-kind media"}})
    async def vectorize(request: Request) -> JSONResponse:
        """Every key is optional; the body is read as JSON whatever its Content-Type (Weaviate sends none).
        Vectors are the reference container's (unit vector x the modality's output scale; audio and video the
        mean over clips) unless the server runs with ``--unit-vectors``."""
        eng = engine()
        req = await _parsed(request, P.VectorizeRequest)
        lists = {kind: (getattr(req, key) or [], key) for key, kind in P.WEAVIATE_KEYS.items()}
        config.limits.check_count(sum(len(v) for v, _ in lists.values()))
        note_items(request, sum(len(v) for v, _ in lists.values()))
        for kind, (items, key) in lists.items():
            if items:
                eng.require(kind, key)
        decoded = await _decode_all(eng, {kind: (items, key) for kind, (items, key) in lists.items() if items})
        rows = await _gather_ordered({kind: eng.vectors(kind, items, labels) for kind, (items, labels) in
                                      decoded.items()})
        out = {}
        for kind in P.KINDS:
            r = rows.get(kind)
            if r is None:
                out[P.WEAVIATE_OUT[kind]] = []
                continue
            r = normalize(r) if config.unit_vectors else r * np.float32(eng.scale(kind))
            out[P.WEAVIATE_OUT[kind]] = r.tolist()
        ordered = {P.WEAVIATE_OUT[k]: out[P.WEAVIATE_OUT[k]] for k in P.WEAVIATE_KEYS.values()}
        return JSONResponse(ordered)

    # ---- OpenAI -----------------------------------------------------------------------------------------------
    @app.post("/v1/embeddings", tags=["openai"], openapi_extra=_body_schema(P.EmbeddingsRequest),
              summary="OpenAI-compatible embeddings (unit vectors); media as data: URIs, kind from the MIME type "
              "or 'modality'")
    async def embeddings(request: Request) -> JSONResponse:
        """``{"input": str | [str], "model", "encoding_format": "float" | "base64", "modality"}`` ->
        ``{"object": "list", "data": [{"object": "embedding", "embedding", "index"}], "model", "usage"}``.
        Without ``modality``, a ``data:`` URI is embedded as the kind its MIME type names (``image/*``,
        ``audio/*``, ``video/*``; ``text/plain`` as text) and any other string as text; URLs are refused (never
        fetched), token arrays too (send strings)."""
        eng = engine()
        req = await _parsed(request, P.EmbeddingsRequest, P.refuse_token_arrays)
        items = [req.input] if isinstance(req.input, str) else list(req.input)
        if not items:
            raise ApiError(400, "input is an empty list; send at least one input", param="input")
        if req.dimensions is not None and req.dimensions != int(eng.model.dim):
            raise ApiError(400, f"dimensions={req.dimensions} is not offered: this model's vectors have "
                           f"{eng.model.dim} dimensions", param="dimensions")
        config.limits.check_count(len(items))
        note_items(request, len(items))
        labels = ["input" if isinstance(req.input, str) else f"input[{i}]" for i in range(len(items))]
        if req.modality is not None:
            try:
                kind = input_kind(req.modality)
            except ModalityError as exc:
                raise ApiError(400, str(exc), param="modality") from None
            eng.require(kind, "modality")
            kinds = [kind] * len(items)
        else:  # data: URIs by their MIME type, other strings as text
            kinds, items = map(list, zip(*(P.infer_kind(x, label) for x, label in zip(items, labels))))
            for kind, label in zip(kinds, labels):
                eng.require(kind, label)
        groups: dict[str, list[int]] = {}
        for i, kind in enumerate(kinds):
            groups.setdefault(kind, []).append(i)
        decoded = await _decode_all(eng, {k: ([items[i] for i in pos], [labels[i] for i in pos])
                                          for k, pos in groups.items()}, labels_given=True)
        rows = await _gather_ordered({k: eng.unit_vectors(k, *decoded[k]) for k in groups})
        vecs = [None] * len(items)
        for k, pos in groups.items():
            for i, row in zip(pos, rows[k]):
                vecs[i] = row
        texts = [items[i] for i in groups.get("text", [])]
        tokens = await asyncio.get_running_loop().run_in_executor(eng.pool, _count_tokens, texts) if texts else 0
        data = [{"object": "embedding", "index": i,
                 "embedding": P.encode_float32_base64(v) if req.encoding_format == "base64" else v.tolist()}
                for i, v in enumerate(vecs)]
        return JSONResponse({"object": "list", "data": data, "model": req.model or _model_name(state, eng),
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    @app.get("/v1/models", tags=["openai"], summary="OpenAI-compatible list of the served model")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": _model_name(state, engine()), "object": "model", "created": 0,
                                            "owned_by": "bindkit"}]}


# ---- index routes ----------------------------------------------------------------------------------------------
def _add_index_routes(app: FastAPI, state: ServerState, engine: Callable[[], Engine]) -> None:
    config = state.config

    @app.post("/search", tags=["index"], openapi_extra=_body_schema(P.SearchRequest),
              summary="search the index with one query built from any mix of inputs")
    async def search(request: Request) -> JSONResponse:
        """Each input (text, or base64 media) is embedded to a unit vector; several are combined by weighted
        sum and renormalised (embedding arithmetic). Returns ``{"results": {modality: [hit, ...]}}``, hits
        ``{"id", "score", "modality", "uri", "metadata", "text"}`` best first; ``id`` is a string of digits."""
        eng = engine()
        req = await _parsed(request, P.SearchRequest)
        given = {kind: getattr(req, kind) for kind in P.KINDS if getattr(req, kind) is not None}
        if not given and req.vector is None:
            raise ApiError(422, "a search needs a query: text, image, audio, video, depth, thermal, imu or vector")
        config.limits.check_count(len(given))
        note_items(request, len(given) + (req.vector is not None))
        for kind in given:
            eng.require(kind, kind)
        media = {kind: ([v], [kind]) for kind, v in given.items() if kind != "text"}
        decoded = await _decode_all(eng, media, labels_given=True)
        if "text" in given:
            decoded["text"] = ([given["text"]], ["text"])
        vecs = await _gather_ordered({kind: eng.unit_vectors(kind, items, labels)
                                      for kind, (items, labels) in decoded.items()})
        parts = {kind: v[0] for kind, v in vecs.items()}
        if req.vector is not None:
            v = np.asarray(req.vector, np.float32)
            if v.shape != (int(eng.model.dim),) or not np.isfinite(v).all() or not np.linalg.norm(v):
                raise ApiError(422, f"vector: expected {eng.model.dim} finite numbers, not all zero", param="vector")
            parts["vector"] = v / np.linalg.norm(v)
        weights = req.weights or {}
        unknown = sorted(set(weights) - set(parts))
        if unknown:
            raise ApiError(422, f"weights names {unknown} but the query inputs are {sorted(parts)}", param="weights")
        query = sum(float(weights.get(k, 1.0)) * v for k, v in parts.items())
        if not np.isfinite(query).all() or not np.linalg.norm(query):
            raise ApiError(422, "the weighted query is a zero vector (do the weights cancel out?)", param="weights")

        def run() -> dict:
            return state.index.search(vector=query, k=req.k, modalities=req.modalities, where=req.where)

        results = await _index_call(run)
        return JSONResponse({"results": {kind: [_hit(h) for h in hits] for kind, hits in results.items()}})

    if not config.allow_writes:
        return

    @app.post("/add", tags=["index"], openapi_extra=_body_schema(P.AddRequest),
              summary="embed and store items (only with --allow-writes)")
    async def add(request: Request) -> JSONResponse:
        """``{"items": [{"modality": "text", "text": "..."}, {"modality": "image", "data": "<base64>",
        "metadata": {...}}]}`` -> ``{"ids": ["5551846404524732124", ...]}`` in input order, as strings (one
        transaction: all or nothing)."""
        eng = engine()
        req = await _parsed(request, P.AddRequest)
        config.limits.check_count(len(req.items))
        note_items(request, len(req.items))
        payloads: list[Any] = []
        kinds: list[str] = []
        loop = asyncio.get_running_loop()
        budget = request_budget(config.limits)  # --max-decoded-size etc., as on the embedding routes
        for i, item in enumerate(req.items):
            label = f"items[{i}]"
            try:
                kind = input_kind(item.modality)
            except ModalityError as exc:
                raise ApiError(422, f"{label}.modality: {exc}", param=f"{label}.modality") from None
            eng.require(kind, f"{label}.modality")
            if kind == "text":
                if item.text is None:
                    raise ApiError(422, f"{label}: a text item needs \"text\"", param=label)
                payloads.append(item.text)
            else:
                if item.data is None:
                    raise ApiError(422, f"{label}: a {kind} item needs \"data\" (base64 of the file)", param=label)
                data = await loop.run_in_executor(eng.pool, P.decode_media, item.data, label)
                await loop.run_in_executor(eng.pool, check_media, config.limits, kind, data, label, budget)
                payloads.append(data)  # bytes, never a str: a str would be read as a server-side path
            kinds.append(kind)
        metas = [item.metadata for item in req.items]

        def run() -> list:
            with use_budget(budget):  # the index decodes in its own threads; they inherit this context
                return list(state.index.add(payloads, modality=kinds, metadata=metas, strict=True,
                                            show_progress_bar=False))

        ids = await _index_call(run, writer=state.writer, prefix="items", budget=budget)
        return JSONResponse({"ids": [str(i) for i in ids]})  # strings: 64-bit ids survive JavaScript

    @app.post("/remove", tags=["index"], openapi_extra=_body_schema(P.RemoveRequest),
              summary="delete items by id and/or metadata filter (only with --allow-writes)")
    async def remove(request: Request) -> JSONResponse:
        """``{"ids": ["5551846404524732124", ...], "where": {...}}`` (ids as strings or integers; both given:
        the ids that also match) -> ``{"removed": n}``."""
        req = await _parsed(request, P.RemoveRequest)
        if req.ids is None and req.where is None:
            raise ApiError(422, "remove needs ids and/or where; refusing to remove everything")
        ids = None if req.ids is None else P.parse_ids(req.ids)
        note_items(request, len(ids or ()))

        def run() -> int:
            return state.index.remove(ids, where=req.where)

        return JSONResponse({"removed": await _index_call(run, writer=state.writer)})


async def _index_call(fn: Callable[[], Any], writer: ThreadPoolExecutor | None = None, prefix: str = "",
                      budget: DecodeBudget | None = None) -> Any:
    """Run an index operation in a thread; bad requests (filters, modalities, items) become 422, an item the
    request's decode ``budget`` refused 413."""
    try:
        return await asyncio.get_running_loop().run_in_executor(writer, fn)
    except InputError as exc:
        item = str(exc.item)
        label = f"{prefix}[{item[1:]}]" if prefix and item.startswith("#") else item
        breach = budget.breach_for(exc.reason) if budget is not None else None
        if breach is not None:
            raise limit_error(label, breach) from None
        raise ApiError(422, f"{label}: {exc.reason}", param=label) from None
    except ValueError as exc:  # ModalityError, a bad where filter, remove() without a selection
        raise ApiError(422, describe_exc(exc, with_type=False)) from None
    except IndexStoreError as exc:
        raise ApiError(409, str(exc)) from None


def _hit(h: Any) -> dict[str, Any]:
    return {"id": str(h.id), "score": h.score, "modality": h.modality, "uri": h.uri, "metadata": h.metadata,
            "text": h.text}


# ---- helpers ---------------------------------------------------------------------------------------------------
async def _decode_all(eng: Engine, lists: dict[str, tuple[list[str], Any]], labels_given: bool = False
                      ) -> dict[str, tuple[list[Any], list[str]]]:
    """Base64-decode the media lists in the decoding pool. ``lists``: kind -> (items, key) or, with
    ``labels_given``, kind -> (items, labels). Text stays text. Returns kind -> (payloads, labels)."""
    loop = asyncio.get_running_loop()
    out: dict[str, tuple[list[Any], list[str]]] = {}
    for kind, (items, key) in lists.items():
        labels = list(key) if labels_given else [f"{key}[{i}]" for i in range(len(items))]
        if kind == "text":
            out[kind] = (list(items), labels)
            continue
        payloads = await loop.run_in_executor(eng.pool, lambda it=items, lb=labels: [
            P.decode_media(x, label) for x, label in zip(it, lb)])
        out[kind] = (payloads, labels)
    return out


async def _parsed(request: Request, model: type, check: Callable[[Any], None] | None = None) -> Any:
    """The request body parsed as JSON (:func:`protocol.parse_json`: too deep nesting or too long integers are
    400) and validated as ``model``, in a worker thread (a 60 MB body takes a noticeable time to parse; the
    event loop keeps answering other requests meanwhile). ``check``, when given, sees the parsed JSON before
    validation (and raises :class:`ApiError` to refuse it)."""
    body = await request.body()

    def parse() -> Any:
        data = P.parse_json(body)
        if check is not None:
            check(data)
        return P.validate(model, data)

    pool = _LARGE_PARSES if len(body) >= LARGE_BODY_BYTES else None
    return await asyncio.get_running_loop().run_in_executor(pool, parse)


#: Bodies of at least this many bytes are parsed one at a time, in :data:`_LARGE_PARSES`. ``json.loads`` and
#: pydantic hold the GIL for a whole parse (about 0.1 s per 60 MB here): run side by side, sixteen such parses only
#: queue on the GIL, and the event loop - which needs it between them to answer ``/.well-known/live`` - could wait
#: behind several in a row. Taking turns, it waits behind one at most; throughput is the same (the GIL serialised
#: them anyway).
LARGE_BODY_BYTES = 1 << 20
_LARGE_PARSES = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bindkit-parse")


async def _gather_ordered(coros: dict[str, Any]) -> dict[str, np.ndarray]:
    """Await every kind's embedding concurrently; the first error in request-key order is raised."""
    kinds = list(coros)
    results = await asyncio.gather(*coros.values(), return_exceptions=True)
    for kind, r in zip(kinds, results):
        if isinstance(r, BaseException):
            raise r
    return dict(zip(kinds, results))


def _count_tokens(texts: list[str]) -> int:
    from ..inputs.text import tokenize

    return int((tokenize(texts) != 0).sum())


def _route_paths(app: FastAPI) -> frozenset[str]:
    """The path templates of ``app``'s routes (computed once; routes are added before the server starts)."""
    paths = getattr(app.state, "route_paths", None)
    if paths is None:
        paths = app.state.route_paths = frozenset(getattr(r, "path", "") for r in app.routes)
    return paths


def _version() -> str:
    import bindkit

    return bindkit.__version__


def _model_name(state: ServerState, eng: Engine) -> str:
    return state.config.model_name or eng.model.card.name


def _meta(state: ServerState, eng: Engine) -> dict[str, Any]:
    model, cfg = eng.model, state.config
    index = None
    if state.index is not None:
        index = {"path": str(state.index.path), "count": len(state.index), "writable": cfg.allow_writes}
    return {
        "model": _model_name(state, eng),
        "card": {"name": model.card.name, "description": getattr(model.card, "description", None)},
        "dim": int(model.dim),
        "modalities": list(eng.kinds),
        "encoders": list(model.modalities),
        "weights": cfg.weights,
        "fingerprints": {enc: model.fingerprint(enc) for enc in model.modalities},
        "vectors": "unit" if cfg.unit_vectors else "reference-scaled",
        "scales": {kind: (1.0 if cfg.unit_vectors else eng.scale(kind)) for kind in eng.kinds},
        "device": str(model.device),
        "bindkit_version": _version(),
        "limits": cfg.limits.to_dict(),
        "bounds": {**cfg.bounds.to_dict(), "inflight_bytes": state.inflight.used},
        "batching": {"max_batch": cfg.max_batch, "max_wait_ms": cfg.max_wait_ms, **eng.batcher.stats.to_dict()},
        "index": index,
        "auth": cfg.token is not None,
    }
