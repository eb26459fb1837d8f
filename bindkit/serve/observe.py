"""What the server tells its operator: one access-log line per request and Prometheus metrics at ``/metrics``.

Access log: the logger ``bindkit.serve.access`` (Python logging) gets one record per request, written after the
response::

    POST /v1/embeddings 200 items=3 41.7ms client=127.0.0.1:53122

``items`` is the number of inputs the request carried (texts, media, query parts, items to add, ids to remove;
``-`` for requests without any). The record's ``extra`` fields (``method``, ``path``, ``route``, ``status``,
``items``, ``ms``, ``client``) let a structured handler format it otherwise. Probes (``/.well-known/*``,
``/metrics``) are logged at DEBUG, everything else at INFO. ``bindkit serve`` prints the log on stderr (off
with ``--no-access-log``); an application embedding :func:`~bindkit.serve.app.create_app` configures the logger
as it likes.

Metrics (``prometheus-client``, a dependency of the ``serve`` extra; without it ``/metrics`` answers 501): see
:class:`Metrics`. Each app has its own registry, so several apps can live in one process.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .batching import DynamicBatcher

ACCESS_LOGGER = "bindkit.serve.access"
METRICS_PATH = "/metrics"
#: Routes logged at DEBUG: probes that orchestrators and scrapers call every few seconds.
QUIET_PATHS = frozenset({"/.well-known/live", "/.well-known/ready", METRICS_PATH})
_NOTE = "bindkit.observe"  # scope key of the per-request notes the handlers fill in

access_log = logging.getLogger(ACCESS_LOGGER)


def note_items(request: Any, n: int) -> None:
    """Record that the request being handled carries ``n`` inputs (shown as ``items=`` in the access log and
    observed by the ``bindkit_http_request_items`` histogram)."""
    notes = request.scope.get(_NOTE)
    if notes is not None:
        notes["items"] = int(n)


class Metrics:
    """The server's Prometheus metrics, in a registry of their own.

    * ``bindkit_http_requests_total{route, method, status}``: requests answered.
    * ``bindkit_http_request_duration_seconds{route}``: latency histogram, from the request's arrival to the end
      of its response.
    * ``bindkit_http_request_items{route}``: inputs per request.
    * ``bindkit_http_requests_in_progress``: requests being handled now.
    * ``bindkit_batch_size{modality}``: items per forward pass of the dynamic batcher.
    * ``bindkit_forward_seconds{modality}``: duration of those forward passes.
    * ``bindkit_batcher_queue_depth``: requests (jobs) waiting for a forward pass.
    * ``bindkit_model_ready``: 1 once the model is loaded.
    * ``process_*``: the process's memory, CPU time and open files (prometheus-client's process collector).

    ``route`` is the route's path template (``/v1/embeddings``), or ``other`` for paths no route serves, so that
    scanners cannot grow the number of series.

    Raises:
        ImportError: prometheus-client is not installed.
    """

    def __init__(self, ready: Callable[[], bool]) -> None:
        import prometheus_client as pc

        self.registry = reg = pc.CollectorRegistry(auto_describe=True)
        pc.ProcessCollector(registry=reg)
        self.requests = pc.Counter("bindkit_http_requests", "HTTP requests answered",
                                   ["route", "method", "status"], registry=reg)
        self.latency = pc.Histogram("bindkit_http_request_duration_seconds", "HTTP request latency", ["route"],
                                    buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120),
                                    registry=reg)
        self.items = pc.Histogram("bindkit_http_request_items", "inputs per request", ["route"],
                                  buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=reg)
        self.in_progress = pc.Gauge("bindkit_http_requests_in_progress", "HTTP requests being handled",
                                    registry=reg)
        self.batch = pc.Histogram("bindkit_batch_size", "items per forward pass of the dynamic batcher",
                                  ["modality"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=reg)
        self.forward = pc.Histogram("bindkit_forward_seconds", "duration of a forward pass", ["modality"],
                                    buckets=(.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30),
                                    registry=reg)
        self.queue = pc.Gauge("bindkit_batcher_queue_depth", "requests waiting for a forward pass", registry=reg)
        self.ready = pc.Gauge("bindkit_model_ready", "1 once the model is loaded", registry=reg)
        self.ready.set_function(lambda: float(ready()))
        self._batcher: DynamicBatcher | None = None
        self.queue.set_function(lambda: float(self._batcher.queue_depth()) if self._batcher is not None else 0.0)
        self._content_type = pc.CONTENT_TYPE_LATEST
        self._generate = pc.generate_latest

    def watch(self, batcher: DynamicBatcher) -> None:
        """Observe ``batcher``'s forward passes and queue."""
        self._batcher = batcher
        batcher.on_forward = self._on_forward

    def _on_forward(self, kind: str, size: int, seconds: float) -> None:
        self.batch.labels(kind).observe(size)
        self.forward.labels(kind).observe(seconds)

    def observe(self, route: str, method: str, status: int, seconds: float, items: int | None) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if items is not None:
            self.items.labels(route).observe(items)

    def exposition(self) -> tuple[bytes, str]:
        """(body, content type) of a scrape."""
        return self._generate(self.registry), self._content_type


def make_metrics(ready: Callable[[], bool]) -> Metrics | None:
    """A :class:`Metrics`, or None (with a warning) when prometheus-client is not installed."""
    try:
        return Metrics(ready)
    except ImportError:
        logging.getLogger("bindkit.serve").warning(
            "prometheus-client is not installed: /metrics answers 501 (pip install 'bindkit[serve]')")
        return None


class Observe:
    """ASGI middleware (outermost): times each HTTP request, writes its access-log line and counts it in
    :class:`Metrics`. Responses of the other middleware (401, 413, 503) are counted too; a request whose
    handler raised is counted as the 500 it is answered with."""

    def __init__(self, app: Any, metrics: Metrics | None, routes: Callable[[], frozenset[str]]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        notes: dict[str, Any] = {}
        scope[_NOTE] = notes
        status = 500
        recorded = False

        def record() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                self._record(scope, status, time.perf_counter() - start, notes.get("items"))

        async def send_and_note(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if _bodiless(scope, status, message.get("headers", ())):
                    record()  # the client has its whole answer with the headers
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                record()  # before the last byte leaves: a client that has its answer finds the line written
            await send(message)

        if self.metrics is not None:
            self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            if self.metrics is not None:
                self.metrics.in_progress.dec()
            record()  # a handler that raised (answered 500 by the outer error middleware), or a client gone

    def _record(self, scope: dict, status: int, seconds: float, items: int | None) -> None:
        path = scope.get("path", "")
        route = getattr(scope.get("route"), "path", None) or (path if path in self.routes() else "other")
        method = scope.get("method", "")
        if self.metrics is not None:
            self.metrics.observe(route, method, status, seconds, items)
        level = logging.DEBUG if route in QUIET_PATHS else logging.INFO
        if not access_log.isEnabledFor(level):
            return
        client = scope.get("client")
        peer = f"{client[0]}:{client[1]}" if client else "-"
        shown = path if path.isprintable() and len(path) <= 200 else repr(path[:200])
        ms = seconds * 1000.0
        access_log.log(level, "%s %s %d items=%s %.1fms client=%s", method, shown, status,
                       "-" if items is None else items, ms, peer,
                       extra={"method": method, "path": path, "route": route, "status": status, "items": items,
                              "ms": round(ms, 3), "client": peer})


def _bodiless(scope: dict, status: int, headers: Any) -> bool:
    """Whether a response is complete with its headers (204, 304, HEAD, Content-Length: 0)."""
    if status in (204, 304) or scope.get("method") == "HEAD":
        return True
    return any(k.lower() == b"content-length" and v.strip() == b"0" for k, v in headers)
