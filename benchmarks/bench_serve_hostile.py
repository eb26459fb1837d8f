"""Loopback load test of ``bindkit serve`` under hostile traffic (issue 19, "Must show"): is memory bounded, does
``/.well-known/live`` keep answering, and is nothing answered 5xx?

One ``bindkit serve`` process (default limits and bounds, ``--model bindkit_toy``) on a free loopback port, and
for ``--seconds`` seconds, all at once:

* hostile media, ``--media-clients`` clients in a loop: audio whose Matroska header says 1 s over 12 minutes
  of Opus (~2.5 MB; expected 413 from the decoded-sample count), an 8-frame 4000 x 4000 H.264 video (under
  --max-pixels; expected 200), a 128-channel WAV (expected 200);
* ``--bodies`` concurrent large bodies (``--body-mb`` MB: one noise PNG of ~15 MP as base64, expected 200),
  in waves, each wave starting when the previous one is answered;
* ``--idle`` idle connections that send nothing; one the server closes (its header timeout) is reopened, so
  the count holds throughout (the reopenings are reported);
* a prober that GETs ``/.well-known/live`` on a fresh connection every 0.2 s (max and p99 latency);
* a sampler of the server's RSS (``/proc/PID/status``) every 0.2 s.

Prints a JSON report: peak RSS against ``--ceiling-gb``, /live latency against 1 s, the status counts of every
kind of request and the number of 5xx (must be 0), and exits 1 when a criterion fails. Needs ``ulimit -n`` above
``--idle`` + 100 (raised to the hard limit when possible).

Usage: python benchmarks/bench_serve_hostile.py [--seconds 60] [--idle 1000] [--bodies 16] [--body-mb 61]
           [--model bindkit_toy] [--ceiling-gb 2.5] [--code DIR]   # DIR: the bindkit the server runs (PYTHONPATH)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from hostile_media import huge_frame_video, lying_audio, many_channel_wav  # noqa: E402
from serve_helpers import read_response, wait_ready  # noqa: E402


def noise_png(pixels: int, seed: int = 0) -> bytes:
    """An RGB PNG of random noise (incompressible: about 3 bytes per pixel)."""
    from PIL import Image

    side = int(pixels ** 0.5)
    a = np.random.default_rng(seed).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def body(key: str, data: bytes) -> bytes:
    return json.dumps({key: [base64.b64encode(data).decode("ascii")]}).encode()


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run(url: str, port: int, pid: int, args: argparse.Namespace, media: dict[str, bytes], large: bytes
              ) -> dict:
    import httpx

    stop = asyncio.Event()
    statuses: dict[str, Counter] = {k: Counter() for k in ("live", *media, "large body")}
    live_ms: list[float] = []
    live_connect_ms: list[float] = []  # of which: until the TCP connection was accepted by the kernel
    samples: list[tuple[float, int]] = []
    reopened = 0
    t0 = time.monotonic()

    async def sampler() -> None:
        while not stop.is_set():
            samples.append((time.monotonic() - t0, rss(pid)))
            await asyncio.sleep(0.2)

    async def prober() -> None:  # in its own process, so that the load generator's work does not delay it
        proc = await asyncio.create_subprocess_exec(sys.executable, __file__, "--probe", url,
                                                    stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.PIPE)
        await stop.wait()
        out, _ = await proc.communicate(b"stop\n")
        for line in out.decode().splitlines():
            status, ms, connect_ms = line.split()
            statuses["live"][int(status) if status.isdigit() else status] += 1
            live_ms.append(float(ms))
            live_connect_ms.append(float(connect_ms))

    async def idle_holder() -> None:
        nonlocal reopened
        first = True
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.5)
                continue
            if not first:
                reopened += 1
            first = False
            read = asyncio.ensure_future(reader.read())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait([read, stopped], return_when=asyncio.FIRST_COMPLETED)
            read.cancel()
            stopped.cancel()
            writer.close()

    async def post(http: httpx.AsyncClient, kind: str, payload: bytes) -> None:
        try:
            r = await http.post(url + "/vectorize", content=payload)
            statuses[kind][r.status_code] += 1
        except httpx.HTTPError as exc:
            statuses[kind][type(exc).__name__] += 1

    async def media_client(i: int) -> None:
        kinds = list(media)
        async with httpx.AsyncClient(timeout=300) as http:
            n = i
            while not stop.is_set():
                kind = kinds[n % len(kinds)]
                await post(http, kind, media[kind])
                n += 1

    async def large_bodies() -> None:
        limits = httpx.Limits(max_connections=args.bodies)
        async with httpx.AsyncClient(timeout=600, limits=limits) as http:
            while not stop.is_set():
                await asyncio.gather(*(post(http, "large body", large) for _ in range(args.bodies)))

    tasks = [asyncio.ensure_future(c) for c in (sampler(), prober())]
    tasks += [asyncio.ensure_future(idle_holder()) for _ in range(args.idle)]
    await asyncio.sleep(1.0)
    tasks += [asyncio.ensure_future(media_client(i)) for i in range(args.media_clients)]
    if args.bodies:
        tasks.append(asyncio.ensure_future(large_bodies()))
    await asyncio.sleep(args.seconds)
    stop.set()
    await asyncio.wait(tasks, timeout=120)  # requests in flight finish (their answers are counted)
    for t in tasks:
        t.cancel()
    peak = max(s for _, s in samples)
    live_sorted = sorted(live_ms)
    fives = sum(n for c in statuses.values() for code, n in c.items() if isinstance(code, int) and code >= 500)
    errors = sum(n for c in statuses.values() for code, n in c.items() if not isinstance(code, int))
    return {
        "seconds": round(time.monotonic() - t0, 1),
        "server_rss_start_mb": round(samples[0][1] / 2**20),
        "server_rss_peak_mb": round(peak / 2**20),
        "ceiling_mb": round(args.ceiling_gb * 1024),
        "rss_timeline_mb": [(round(t), round(s / 2**20)) for t, s in samples[:: max(1, len(samples) // 30)]],
        "live_requests": len(live_ms),
        "live_ms_max": round(max(live_ms), 1),
        "live_ms_p99": round(live_sorted[int(0.99 * (len(live_sorted) - 1))], 1),
        "live_connect_ms_max": round(max(live_connect_ms), 1),
        "idle_connections": args.idle,
        "idle_reopened_after_server_close": reopened,
        "statuses": {k: {str(code): n for code, n in c.items()} for k, c in statuses.items()},
        "http_5xx": fives,
        "transport_errors": errors,
    }


def probe(url: str) -> None:
    """Print "status ms connect_ms" (total, and until connected) for a GET of /.well-known/live on a fresh
    connection every 0.2 s, until stdin has a line. A plain socket, as a load balancer's or kubelet's HTTP probe
    is: the time measured is the server's (connect, request, response), not an HTTP client library's set-up
    (httpx.get builds an SSL context per call, tens of milliseconds of this process's CPU on a machine the server
    keeps busy)."""
    import threading
    from urllib.parse import urlsplit

    host, port = urlsplit(url).hostname, urlsplit(url).port
    request = f"GET /.well-known/live HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    while not stop.is_set():
        start = time.monotonic()
        connected = start
        try:
            with socket.create_connection((host, port), timeout=30) as sock:
                connected = time.monotonic()
                sock.sendall(request)
                status = str(read_response(sock)[0])
        except OSError as exc:  # ConnectionError too: closed without an answer
            status = type(exc).__name__
        now = time.monotonic()
        print(status, f"{(now - start) * 1000:.1f}", f"{(connected - start) * 1000:.1f}", flush=True)
        stop.wait(0.2)


def main() -> int:
    if sys.argv[1:2] == ["--probe"]:
        probe(sys.argv[2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--bodies", type=int, default=16)
    ap.add_argument("--body-mb", type=float, default=61.0, help="size of each large body, in MB (default 61)")
    ap.add_argument("--media-clients", type=int, default=3)
    ap.add_argument("--model", default="bindkit_toy")
    ap.add_argument("--ceiling-gb", type=float, default=2.5)
    ap.add_argument("--code", default=str(REPO), help="PYTHONPATH of the server (default: this checkout)")
    ap.add_argument("--server-args", default="", help="extra `bindkit serve` options, e.g. '--max-inflight-size 128M'")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.idle + args.bodies + 200
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < need:
        print(f"ulimit -n is {soft}; {need} needed for --idle {args.idle}", file=sys.stderr)
        return 2

    started = time.monotonic()
    media = {
        "lying audio (1 s header, 12 min)": body("audio", lying_audio(720.0, 1.0, rate=48000, codec="libopus",
                                                                      bit_rate=24000)),
        "4000x4000 video": body("video", huge_frame_video(8, (4000, 4000))),
        "128-channel WAV": body("audio", many_channel_wav(128, seconds=2.5, rate=8000)),
    }
    large = body("images", noise_png(int(args.body_mb * 1e6 * 3 / 4 / 3)))
    print(f"media generated in {time.monotonic() - started:.0f} s: "
          + ", ".join(f"{k} {len(v) / 1e6:.1f} MB" for k, v in media.items()) + f", large body {len(large) / 1e6:.1f} MB",
          file=sys.stderr)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=args.code)
    cmd = [sys.executable, "-m", "bindkit", "serve", "--model", args.model, "--port", str(port),
           "--log-level", "warning", *args.server_args.split()]
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(cmd, env=env, cwd=tmp)
        try:
            wait_ready(url, timeout=300, proc=proc)
            report = asyncio.run(run(url, port, proc.pid, args, media, large))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    report["server_code"] = args.code
    ok = (report["server_rss_peak_mb"] <= report["ceiling_mb"] and report["live_ms_max"] < 1000
          and report["http_5xx"] == 0 and report["transport_errors"] == 0)
    report["pass"] = ok
    timeline = report.pop("rss_timeline_mb")
    text = json.dumps(report, indent=1)
    print(text[:-2] + ',\n "rss_timeline_mb": ' + json.dumps(timeline) + "\n}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
