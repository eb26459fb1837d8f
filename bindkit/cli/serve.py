"""``bindkit serve``: serve a model over HTTP (Weaviate multi2vec-bind, OpenAI embeddings, index search)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import (add_alias, add_device_arg, add_download_arg, add_quantize_arg, non_negative_float, parse_bytes,
                     positive_int)


def _size(text: str) -> int:
    value = parse_bytes(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, got {text!r}")
    return value


def _seconds(text: str) -> float:
    value = non_negative_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text!r}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..serve.bounds import ServerBounds
    from ..serve.limits import Limits

    d = Limits()
    sb = ServerBounds()
    p = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP: Weaviate multi2vec-bind, OpenAI /v1/embeddings, index search",
        description="Serve an encoder model over HTTP (FastAPI + uvicorn; OpenAPI docs at /docs and /redoc,\n"
        "served without a CDN).\n\n"
        "Routes:\n"
        "  GET|HEAD /.well-known/live, /.well-known/ready   204 (ready once the model is loaded)\n"
        "  GET  /meta          card, dim, modalities, weights fingerprints, scales, limits, version\n"
        "  POST /vectorize     Weaviate multi2vec-bind: {\"texts\": [...], \"images\": [<base64>], \"audio\",\n"
        "                      \"video\", \"imu\", \"thermal\", \"depth\"} -> textVectors, imageVectors, ...\n"
        "  POST /v1/embeddings OpenAI-compatible: {\"input\": str | [str], \"encoding_format\", \"modality\"};\n"
        "                      media as data: URIs, their kind from the MIME type unless \"modality\" says\n"
        "  POST /search        with --index: {\"text\": ..., \"image\": <base64>, \"weights\", \"k\", \"where\"}\n"
        "  POST /add, /remove  with --index --allow-writes (ids are JSON strings)\n"
        "  GET  /metrics       Prometheus metrics\n\n"
        "/vectorize returns what Weaviate's own ImageBind container returns (unit vector x the modality's\n"
        "output scale: text x learned scale, audio x20, depth x5, thermal x10, imu x5; audio and video the\n"
        "mean of the clips' vectors), so it is a drop-in for BIND_INFERENCE_API; --unit-vectors returns unit\n"
        "vectors instead. /v1/embeddings and /search always use unit vectors.\n\n"
        "Concurrent requests are coalesced into batches (--max-batch, --max-wait-ms); media are decoded in\n"
        "worker threads. Bad input is answered 400/422 with {\"error\": \"<item>: <reason>\"}, limits 413.\n\n"
        "Each request is logged on stderr (method, path, status, items, ms; logger bindkit.serve.access);\n"
        "GET /metrics serves Prometheus metrics (requests, latency, batch sizes, queue depth), behind the\n"
        "token like every route unless --metrics-public.\n\n"
        "Memory and connections are bounded per request (--max-body-size, --max-items, --max-pixels, media\n"
        "durations, --max-decoded-size: what decoding may produce, counted from the decoded data, not the\n"
        "headers) and per server (--max-inflight-size: request bytes being read or answered at once;\n"
        "--max-connections; --header-timeout and --body-timeout for slow or idle clients; --keep-alive-timeout).\n"
        "A request whose bytes do not fit in flight waits for room (up to --queue-timeout, then 503).",
        epilog="examples:\n"
        "  bindkit serve --model imagebind_huge                       # localhost:8000, weights from weights/\n"
        "  BINDKIT_TOKEN=s3cret bindkit serve --host 0.0.0.0 --port 8080\n"
        "  bindkit serve --index my_index --allow-writes              # model recorded in the index\n"
        "  curl -s localhost:8000/vectorize -d '{\"texts\": [\"a dog\"]}'\n\n"
        "Weaviate (docker compose): ENABLE_MODULES: multi2vec-bind, BIND_INFERENCE_API: http://bindkit:8080",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    m = p.add_argument_group("model")
    m.add_argument("--model", metavar="CARD|DIR", help="encoder card name or card JSON, or a folder written by "
                   "`bindkit convert` (holding card.json); default: the index's model with --index, else "
                   "imagebind_huge")
    m.add_argument("--weights", metavar="PATH", help="checkpoint (.pth, .safetensors) or converted folder "
                   "(default: the --model folder, the index's record, or the card's weights in weights/ or the "
                   "cache, downloaded if absent)")
    add_device_arg(m)
    add_quantize_arg(m)
    add_download_arg(m)
    m.add_argument("--modalities", metavar="LIST", help="comma-separated encoders to load, e.g. text,image "
                   "(default: all the card has); the others answer 422")
    m.add_argument("--unit-vectors", action="store_true", help="/vectorize returns unit vectors instead of the "
                   "reference container's scaled vectors")
    m.add_argument("--model-name", metavar="NAME", help="name reported by /meta and /v1/models (default: the card)")

    n = p.add_argument_group("network and security")
    n.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for all "
                   "interfaces, which needs --token or --insecure)")
    n.add_argument("--port", type=int, default=8000, help="port (default 8000; Weaviate's image uses 8080)")
    n.add_argument("--token", metavar="TOKEN", help="require 'Authorization: Bearer TOKEN' on every route but "
                   "the health checks (default: $BINDKIT_TOKEN; prefer the variable, arguments show in ps)")
    n.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without a token")
    n.add_argument("--graceful-timeout", type=non_negative_float, default=30.0, metavar="S",
                   help="on SIGTERM/Ctrl-C, seconds to let in-flight requests finish (default 30)")
    n.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="log level of uvicorn and bindkit (default info; debug also logs health checks and "
                   "/metrics scrapes)")
    n.add_argument("--no-access-log", dest="access_log", action="store_false",
                   help="do not log a line per request (method, path, status, items, ms)")
    n.add_argument("--metrics-public", action="store_true",
                   help="serve GET /metrics without the bearer token (default: the token is required, as on "
                   "every route but the health checks; Prometheus sends one with authorization: credentials)")

    x = p.add_argument_group("index")
    x.add_argument("--index", metavar="DIR", help="serve POST /search over this bindkit index")
    x.add_argument("--allow-writes", action="store_true", help="with --index: also serve POST /add and /remove")

    b = p.add_argument_group("batching and limits")
    b.add_argument("--max-batch", type=positive_int, default=32, metavar="N",
                   help="most items per forward pass; 1 disables dynamic batching (default 32)")
    b.add_argument("--max-wait-ms", type=non_negative_float, default=5.0, metavar="MS",
                   help="how long a forward pass waits for more requests to join its batch (default 5)")
    workers = b.add_argument("--workers", dest="decode_workers", type=positive_int, default=None, metavar="N",
                             help="threads decoding media (default: the CPU count, at most 8)")
    add_alias(b, "--decode-workers", of=workers)
    b.add_argument("--max-body-size", type=_size, default=d.max_body_bytes, metavar="SIZE",
                   help=f"largest request body, e.g. 64M (default {d.max_body_bytes // 2**20}M)")
    b.add_argument("--max-items", type=positive_int, default=d.max_items, metavar="N",
                   help=f"most inputs per request (default {d.max_items})")
    b.add_argument("--max-pixels", type=positive_int, default=d.max_pixels, metavar="N",
                   help=f"most pixels of one image/depth/thermal map or video frame (default {d.max_pixels})")
    b.add_argument("--max-audio-seconds", type=non_negative_float, default=d.max_audio_seconds, metavar="S",
                   help=f"longest audio input (default {d.max_audio_seconds:g})")
    b.add_argument("--max-video-seconds", type=non_negative_float, default=d.max_video_seconds, metavar="S",
                   help=f"longest video input (default {d.max_video_seconds:g})")
    b.add_argument("--max-decoded-size", type=_size, default=d.max_decoded_bytes, metavar="SIZE",
                   help="most bytes decoding one request's media may produce, all items together (audio samples, "
                   f"video frames, image pixels; counted while decoding) (default {d.max_decoded_bytes // 2**20}M)")

    c = p.add_argument_group("connections (server-wide)")
    c.add_argument("--max-connections", type=positive_int, default=sb.max_connections, metavar="N",
                   help="most open client connections; more are answered 503 and closed as they open (the soft "
                   f"file-descriptor limit is raised to fit, or the cap lowered to it) (default {sb.max_connections})")
    c.add_argument("--max-inflight-size", type=_size, default=sb.max_inflight_bytes, metavar="SIZE",
                   help="most request-body bytes being read or answered at once; a request reserves its "
                   "Content-Length (--max-body-size when chunked) and waits for room "
                   f"(default {sb.max_inflight_bytes // 2**20}M)")
    c.add_argument("--header-timeout", type=_seconds, default=sb.header_timeout, metavar="S",
                   help="seconds a connection may take to send a request's headers; then it is closed (after 1 "
                   "to 1.5 times S, spread per connection so that connections opened together do not all close "
                   f"and reconnect together; default {sb.header_timeout:g})")
    c.add_argument("--body-timeout", type=_seconds, default=sb.body_timeout, metavar="S",
                   help=f"seconds a request may take to send its body; 408 after (default {sb.body_timeout:g})")
    c.add_argument("--queue-timeout", type=_seconds, default=sb.queue_timeout, metavar="S",
                   help="seconds a request may wait for room among the bytes in flight (--max-inflight-size); 503 "
                   f"after (default {sb.queue_timeout:g})")
    c.add_argument("--keep-alive-timeout", type=_seconds, default=sb.keep_alive_timeout, metavar="S",
                   help="seconds an idle keep-alive connection stays open (uvicorn's timeout_keep_alive) "
                   f"(default {sb.keep_alive_timeout:g})")
    p.set_defaults(func=run)


def resolve_model_spec(model: str | None, weights: str | None) -> tuple[str | None, str | None]:
    """(card, weights) for ``--model``/``--weights``: a folder holding ``card.json`` (as ``bindkit convert
    --card`` writes) is its own card and, unless ``--weights`` says otherwise, its own weights."""
    if model is not None and Path(model).expanduser().is_dir():
        folder = Path(model).expanduser()
        if not (folder / "card.json").is_file():
            from ..errors import CardError

            raise CardError(f"--model {model}: the folder has no card.json; pass the card name with --model and the "
                            f"folder with --weights (e.g. --model imagebind_huge --weights {model})")
        return str(folder / "card.json"), weights or str(folder)
    return model, weights


def _server_class() -> type:
    """uvicorn's Server, except that SIGTERM/SIGINT end it with exit status 0 after the graceful shutdown
    (uvicorn re-raises the signal once it has stopped, which makes the process die *of* SIGTERM)."""
    import contextlib
    import signal
    import threading

    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[override]
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            sigs = [signal.SIGINT, signal.SIGTERM]
            original = {sig: signal.signal(sig, self.handle_exit) for sig in sigs}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return Server


def _log_to_stderr(level: str, access_log: bool) -> None:
    """Print bindkit's server logs (the access log among them) on stderr, formatted like uvicorn's lines."""
    import logging

    from ..serve.observe import ACCESS_LOGGER

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s:%(padding)s%(message)s"))
    handler.addFilter(_pad_level)
    logger = logging.getLogger("bindkit.serve")
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    if not access_log:
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)


def _pad_level(record: object) -> bool:
    record.padding = " " * max(1, 9 - len(record.levelname))  # type: ignore[attr-defined]
    return True


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..serve import Limits, ServeConfig, ServerBounds, create_app, uvicorn_options
    from ..serve.auth import TOKEN_ENV, is_loopback, token_from_env, token_problem
    from ..serve.bounds import fit_fd_limit, return_freed_memory

    token = args.token or token_from_env()
    if token is not None:
        problem = token_problem(token, "--token" if args.token else f"${TOKEN_ENV}")
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    if not is_loopback(args.host) and token is None and not args.insecure:
        print(f"error: --host {args.host} accepts connections from other machines, and no token is set; set "
              "BINDKIT_TOKEN (or --token) so that requests need 'Authorization: Bearer <token>', or pass "
              "--insecure to serve without authentication", file=sys.stderr)
        return 2
    if args.allow_writes and not args.index:
        print("error: --allow-writes needs --index DIR", file=sys.stderr)
        return 2
    card, weights = resolve_model_spec(args.model, args.weights)
    modalities = [m.strip() for m in args.modalities.split(",") if m.strip()] if args.modalities else None
    limits = Limits(max_body_bytes=args.max_body_size, max_items=args.max_items, max_pixels=args.max_pixels,
                    max_audio_seconds=args.max_audio_seconds, max_video_seconds=args.max_video_seconds,
                    max_decoded_bytes=args.max_decoded_size)
    return_freed_memory()
    connections = fit_fd_limit(args.max_connections)
    if connections < args.max_connections:
        print(f"bindkit serve: --max-connections {args.max_connections} lowered to {connections} to stay under this "
              "process's file-descriptor limit (raise it with `ulimit -n`)", file=sys.stderr)
    bounds = ServerBounds(max_connections=connections, max_inflight_bytes=args.max_inflight_size,
                          header_timeout=args.header_timeout, body_timeout=args.body_timeout,
                          queue_timeout=args.queue_timeout,
                          keep_alive_timeout=args.keep_alive_timeout)
    config = ServeConfig(unit_vectors=args.unit_vectors, token=token, limits=limits, max_batch=args.max_batch,
                         max_wait_ms=args.max_wait_ms, decode_workers=args.decode_workers, index_dir=args.index,
                         allow_writes=args.allow_writes, model_name=args.model_name,
                         weights=weights, metrics_public=args.metrics_public, bounds=bounds)
    _log_to_stderr(args.log_level, args.access_log)

    def load() -> Any:
        from .common import load_model_for

        return load_model_for(args.index, card, weights, args.device, modalities, require_index=args.index is not None,
                              quantize=args.quantize)

    failures: list[BaseException] = []
    server: uvicorn.Server | None = None

    def on_load_error(exc: BaseException) -> None:
        failures.append(exc)
        if server is not None:
            server.should_exit = True

    app = create_app(config, loader=load, on_load_error=on_load_error)
    server = _server_class()(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                                           timeout_graceful_shutdown=args.graceful_timeout or None,
                                           lifespan="on", access_log=False,  # bindkit's own access log
                                           **uvicorn_options(bounds)))
    shown = f"[{args.host}]" if ":" in args.host else args.host
    which = args.model or ("the index's model" if args.index else "imagebind_huge")
    print(f"bindkit serve: http://{shown}:{args.port} (docs: /docs); loading {which}; /.well-known/ready "
          "answers 204 once it is loaded" + ("; bearer token required" if token else ""), file=sys.stderr,
          flush=True)
    server.run()
    if failures:
        from ..errors import BindkitError

        exc = failures[0]
        if isinstance(exc, BindkitError):
            raise exc
        print(f"error: the model could not be loaded: {exc}", file=sys.stderr)
        return 1
    _exit_now_if_work_lingers(0)
    return 0


def _exit_now_if_work_lingers(code: int) -> None:
    """After the shutdown: when --graceful-timeout cancelled requests whose decoding or embedding still runs in
    the server's worker threads (their answer, a 503, is already sent and an unfinished /add is never committed),
    exit at once instead of letting the interpreter wait for those threads."""
    import os
    import threading

    busy = [t for t in threading.enumerate() if t.name.startswith(("bindkit-decode", "bindkit-index"))
            and t.is_alive() and not t.daemon]
    if busy:
        print(f"bindkit serve: not waiting for {len(busy)} worker thread(s) still busy with request(s) cancelled "
              "at --graceful-timeout", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(code)
