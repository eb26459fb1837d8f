"""Server-wide bounds of ``bindkit serve``: open connections, request bytes in flight, and how long a client may
take to send its headers and its body.

What uvicorn (0.5x, h11) provides and bindkit uses as is:

* ``timeout_keep_alive`` (``--keep-alive-timeout``): an idle keep-alive connection is closed this many seconds
  after its last response;
* ``h11_max_incomplete_event_size`` (``--max-header-size``): request line + headers larger than this are
  answered 400 and the connection closed;
* ``backlog``: the listen queue (kernel side).

What uvicorn lacks, added here:

* a **header timeout** (``--header-timeout``): uvicorn starts no timer when a connection opens, and any byte
  cancels its keep-alive timer, so a client that connects and sends nothing (or one header byte at a time)
  holds its connection and file descriptor forever. :func:`bounded_protocol` closes a connection whose
  request headers are not complete this many seconds after it opened (or after its previous response), spread
  up to 1.5 times that per connection (:func:`header_deadline`) so that connections opened together do not
  all close, and reconnect, together;
* a **connection cap** (``--max-connections``): uvicorn's ``limit_concurrency`` counts *connections*, idle
  ones included, and answers *requests* 503 past it, so 1,000 idle sockets would make ``/.well-known/live``
  answer 503; instead, connections past the cap are closed as they open (with a 503 written first), and
  the cap is kept below the process's file-descriptor limit so that ``accept()`` never fails;
* a **body timeout** (``--body-timeout``) and a cap on **request bytes in flight** (``--max-inflight-size``),
  in the app's gate (:class:`InflightBytes`, :func:`read_body`): a request reserves its declared
  ``Content-Length`` (``--max-body-size`` when chunked) before its body is read, and waits (reading nothing,
  so TCP pushes back on the client) while the reservation does not fit; the reservation is held until the
  response is sent, because the body, its parsed JSON and its decoded media live that long.
"""

from __future__ import annotations

import asyncio
import logging
import random
import resource
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

log = logging.getLogger("bindkit.serve")

MiB = 1024 * 1024
#: File descriptors kept free for the process itself (model files, index, logs, worker pipes).
FD_RESERVE = 64

#: Each connection's header deadline is ``--header-timeout`` times a random factor in [1, 1 + this]. Connections
#: opened together (a client's pool, an attack of idle sockets) are then not all closed in the same instant -
#: and, when their client reopens them, not all accepted again in one burst: asyncio accepts a burst in one
#: callback, and on a busy 2-core machine 1,000 accepts held the event loop (and ``/.well-known/live``) for
#: 0.3-0.8 s. Spread, /live's worst case in benchmarks/bench_serve_hostile.py went from 0.46-0.99 s to 0.30-0.45 s.
HEADER_TIMEOUT_SPREAD = 0.5


def header_deadline(header_timeout: float, rng: random.Random | None = None) -> float:
    """Seconds until a connection that has not sent complete request headers is closed: at least
    ``header_timeout``, at most ``(1 + HEADER_TIMEOUT_SPREAD) * header_timeout`` (see :data:`HEADER_TIMEOUT_SPREAD`)."""
    return header_timeout * (1.0 + HEADER_TIMEOUT_SPREAD * (rng or random).random())


@dataclass(frozen=True)
class ServerBounds:
    """Server-wide bounds (each one a ``bindkit serve`` option).

    Attributes:
        max_connections: most open client connections; more are closed as they open.
        max_inflight_bytes: most request-body bytes reserved by requests being read or answered at once.
        header_timeout: seconds a connection may take to send a request's line and headers (each connection gets
            between 1 and 1.5 times this: :func:`header_deadline`).
        body_timeout: seconds a request may take to send its body (once its reservation is granted).
        queue_timeout: seconds a request may wait for its reservation of bytes in flight (then 503).
        keep_alive_timeout: seconds an idle keep-alive connection stays open (uvicorn's ``timeout_keep_alive``).
        max_header_bytes: largest request line + headers (h11's ``max_incomplete_event_size``).
    """

    max_connections: int = 2048
    max_inflight_bytes: int = 256 * MiB
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    queue_timeout: float = 300.0
    keep_alive_timeout: float = 5.0
    max_header_bytes: int = 16 * 1024

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def return_freed_memory() -> bool:
    """Make glibc's malloc hand large freed buffers back to the system (a fixed 1 MiB mmap threshold instead of
    the dynamic one, which grows to 32 MiB after the first big free) and cap its per-thread arenas at 4: a
    server that decodes 60 MB request bodies in several threads otherwise keeps their peak as RSS for good.
    Returns whether it applied (glibc only)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_mmap_threshold, m_arena_max = -3, -8
        return bool(libc.mallopt(m_mmap_threshold, 1 << 20)) and bool(libc.mallopt(m_arena_max, 4))
    except (OSError, AttributeError):
        return False


def fit_fd_limit(max_connections: int) -> int:
    """Raise this process's soft file-descriptor limit towards ``max_connections`` + :data:`FD_RESERVE` (up to the
    hard limit); returns the connection cap that fits under the resulting limit (``max_connections`` or less)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_connections + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, soft - FD_RESERVE))


_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 5\r\n"
         b"connection: close\r\ncontent-length: %d\r\n\r\n%s")


def bounded_protocol(bounds: ServerBounds) -> type:
    """uvicorn's h11 protocol class with :attr:`ServerBounds.header_timeout` and
    :attr:`ServerBounds.max_connections` (pass it as ``uvicorn.Config(http=...)``)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class BoundedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > bounds.max_connections:
                body = (b'{"error": "the server has %d open connections, its limit (--max-connections); retry '
                        b'later"}' % bounds.max_connections)
                transport.write(_BUSY % (len(body), body))
                transport.close()
                return
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_deadline(bounds.header_timeout), self._header_timeout)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _in_request(self) -> bool:
            return self.cycle is not None and not self.cycle.response_complete

        def _header_timeout(self) -> None:
            self._header_timer = None
            if not self._in_request() and not self.transport.is_closing():
                log.debug("closing a connection that sent no complete request headers in %g s",
                          bounds.header_timeout)
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._in_request():
                self._disarm()  # headers complete: the body timeout (in the app) takes over

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's headers get the same time (any byte cancels keep-alive)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return BoundedH11Protocol


def uvicorn_options(bounds: ServerBounds) -> dict[str, Any]:
    """Keyword arguments of ``uvicorn.Config`` that apply ``bounds``."""
    return {"http": bounded_protocol(bounds), "timeout_keep_alive": bounds.keep_alive_timeout,
            "h11_max_incomplete_event_size": bounds.max_header_bytes}


class InflightBytes:
    """A count of request-body bytes reserved by the requests in flight, capped (an asyncio byte semaphore;
    used from the event loop only). A reservation larger than the cap is clamped to it, so any one request
    can always proceed alone."""

    def __init__(self, cap: int):
        self.cap = int(cap)
        self.used = 0
        self._changed: asyncio.Condition | None = None

    def _cond(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def acquire(self, n: int, timeout: float) -> int | None:
        """Reserve ``n`` bytes (clamped to the cap), waiting at most ``timeout`` s; the amount reserved, or None
        when it did not fit in time."""
        n = min(int(n), self.cap)
        cond = self._cond()
        async with cond:
            try:
                await asyncio.wait_for(cond.wait_for(lambda: self.used + n <= self.cap), timeout)
            except asyncio.TimeoutError:
                return None
            self.used += n
        return n

    async def release(self, n: int) -> None:
        cond = self._cond()
        async with cond:
            self.used -= n
            cond.notify_all()


class BodyTimeout(Exception):
    """The client did not send its whole body within the body timeout."""


async def read_body(receive: Callable, limit: int, deadline_s: float) -> tuple[list[bytes], int, bool, bool]:
    """Read a request body through ASGI ``receive``: (chunks kept, bytes seen, more_body left unread, client
    gone). Stops keeping chunks past ``limit`` bytes (the caller answers 413); BodyTimeout when the body is not
    complete within ``deadline_s`` seconds."""
    chunks: list[bytes] = []
    size = 0
    more = True
    deadline = time.monotonic() + deadline_s
    while more and size <= limit:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BodyTimeout
        try:
            message = await asyncio.wait_for(receive(), left)
        except asyncio.TimeoutError:
            raise BodyTimeout from None
        if message["type"] == "http.disconnect":
            return chunks, size, False, True
        chunk = message.get("body", b"")
        size += len(chunk)
        more = message.get("more_body", False)
        if size <= limit:
            chunks.append(chunk)
    return chunks, size, more, False
