"""Loopback load test of ``bindkit serve``: concurrent clients of mixed modalities, dynamic batching vs
one request at a time.

For each mode a fresh ``bindkit serve`` process is started on a free loopback port (``--max-batch 32`` =
dynamic batching, ``--max-batch 1`` = one item per forward pass, i.e. requests take turns); ``--clients``
asyncio clients then send ``/vectorize`` requests back to back for ``--seconds`` seconds, cycling through
text, image, audio, depth, thermal, IMU and a mixed request (text + image + IMU), plus video with
``--video``. Reports requests/s, items/s, p50/p95/max latency, errors (must be zero) and the server's mean
batch size, then the speed-up of batching.

The model defaults to imagebind_tiny with random weights (written to a temporary converted folder), so the
benchmark runs anywhere; pass ``--model imagebind_huge`` (and ``--weights``) to measure the real one.

Usage: python benchmarks/bench_serve.py [--seconds 60] [--clients 16] [--model CARD|DIR] [--weights PATH]
                                        [--device cpu] [--modes batched,unbatched] [--video]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
KEYS = ("textVectors", "imageVectors", "audioVectors", "videoVectors", "imuVectors", "thermalVectors",
        "depthVectors")


# ---- generated media ---------------------------------------------------------------------------------------------
def _png(rng: np.random.Generator, mode: str = "RGB", bits16: bool = False) -> bytes:
    from PIL import Image

    if bits16:
        im = Image.fromarray(rng.integers(500, 5000, size=(120, 160), dtype=np.uint16))
    elif mode == "L":
        im = Image.fromarray(rng.integers(0, 255, size=(120, 160), dtype=np.uint8), mode="L")
    else:
        im = Image.fromarray(rng.integers(0, 255, size=(240, 320, 3), dtype=np.uint8))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _wav(rng: np.random.Generator, seconds: float = 3.0) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, (0.3 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


def _imu(rng: np.random.Generator, rows: int = 2000) -> bytes:
    lines = ["accel_x,accel_y,accel_z,gyro_x,gyro_y,gyro_z"]
    lines += [",".join(f"{v:.4f}" for v in r) for r in rng.standard_normal((rows, 6))]
    return "\n".join(lines).encode()


def _mp4(seconds: float = 2.0, fps: int = 10) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        st = out.add_stream("mpeg4", rate=fps)
        st.width, st.height, st.pix_fmt = 160, 120, "yuv420p"
        for i in range(int(seconds * fps)):
            a = np.full((120, 160, 3), (i * 12) % 255, np.uint8)
            for p in st.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    return buf.getvalue()


def make_requests(video: bool) -> list[tuple[str, bytes, int]]:
    """(name, JSON body, item count) of the request mix, each body encoded once."""
    rng = np.random.default_rng(0)
    b = lambda data: base64.b64encode(data).decode()  # noqa: E731
    mix = [
        ("text", {"texts": ["a dog playing in the snow", "the sound of rain"]}),
        ("image", {"images": [b(_png(rng))]}),
        ("audio", {"audio": [b(_wav(rng))]}),
        ("depth", {"depth": [b(_png(rng, bits16=True))]}),
        ("thermal", {"thermal": [b(_png(rng, mode="L"))]}),
        ("imu", {"imu": [b(_imu(rng))]}),
        ("mixed", {"texts": ["a red car"], "images": [b(_png(rng))], "imu": [b(_imu(rng))]}),
    ]
    if video:
        mix.append(("video", {"video": [b(_mp4())]}))
    return [(name, json.dumps(body).encode(), sum(len(v) for v in body.values())) for name, body in mix]


# ---- server ------------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, weights: str | None, device: str | None, max_batch: int, max_wait_ms: float
                 ) -> tuple[subprocess.Popen, str]:
    import httpx

    port = _free_port()
    cmd = [sys.executable, "-m", "bindkit", "serve", "--model", model, "--port", str(port), "--max-batch",
           str(max_batch), "--max-wait-ms", str(max_wait_ms), "--log-level", "warning"]
    if weights:
        cmd += ["--weights", weights]
    if device:
        cmd += ["--device", device]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("BINDKIT_TOKEN", None)
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:
            if httpx.get(url + "/.well-known/ready", timeout=5).status_code == 204:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not become ready within 600 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---- load --------------------------------------------------------------------------------------------------------
async def load(url: str, requests: list[tuple[str, bytes, int]], clients: int, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    items = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(i: int, http: httpx.AsyncClient) -> None:
        nonlocal items
        k = i  # clients start at different points of the mix
        while time.perf_counter() < stop_at:
            name, body, n = requests[k % len(requests)]
            k += 1
            t0 = time.perf_counter()
            try:
                r = await http.post("/vectorize", content=body)  # no Content-Type, as Weaviate sends
                ok = r.status_code == 200 and sum(len(r.json()[key]) for key in KEYS) == n
                if not ok:
                    errors.append(f"{name}: HTTP {r.status_code} {r.text[:200]}")
            except httpx.HTTPError as exc:
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t0)
                items += n

    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        meta = (await http.get("/meta")).json()
    elapsed = time.perf_counter() - t0
    lat = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {"requests": len(latencies), "errors": len(errors), "first_errors": errors[:3], "seconds": elapsed,
            "req_per_s": len(latencies) / elapsed, "items_per_s": items / elapsed,
            "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "max_ms": float(lat.max()), "mean_batch": meta["batching"]["mean_batch"],
            "largest_batch": meta["batching"]["largest_batch"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="load duration per mode (default 60)")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    ap.add_argument("--model", help="card name or converted folder (default: imagebind_tiny, random weights)")
    ap.add_argument("--weights", help="weights for --model")
    ap.add_argument("--random-card", default="imagebind_tiny", metavar="CARD",
                    help="without --model: card name or JSON to build with random weights (default imagebind_tiny)")
    ap.add_argument("--device", help="server device (default: the server's default)")
    ap.add_argument("--modes", default="batched,unbatched", help="batched (--max-batch N), unbatched (1)")
    ap.add_argument("--max-batch", type=int, default=32, help="batch cap in batched mode (default 32)")
    ap.add_argument("--max-wait-ms", type=float, default=5.0, help="batching wait (default 5)")
    ap.add_argument("--video", action="store_true", help="add video requests to the mix")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="bench_serve_")
    model, weights = args.model, args.weights
    if model is None:
        sys.path.insert(0, str(REPO))
        import torch

        import bindkit
        from bindkit.models.reference_layout import to_reference

        torch.manual_seed(0)
        m = bindkit.build_model(args.random_card)
        state = {to_reference(k): v for k, v in m.encoders.state_dict().items()}
        model = str(bindkit.convert(state, Path(tmp.name) / "random", card=m.card, progress=False))
    requests = make_requests(args.video)
    shown = args.model or f"{args.random_card} (random weights)"
    print(f"bench_serve: {args.clients} clients x {args.seconds:g} s per mode, model {shown}, {os.cpu_count()} "
          f"CPU(s); mix: {', '.join(r[0] for r in requests)}", flush=True)
    results = {}
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        max_batch = {"batched": args.max_batch, "unbatched": 1}[mode]
        proc, url = start_server(model, weights, args.device, max_batch, args.max_wait_ms)
        try:
            asyncio.run(load(url, requests[:1], 2, 2.0))  # warm-up (allocations, tokenizer)
            res = asyncio.run(load(url, requests, args.clients, args.seconds))
        finally:
            stop_server(proc)
        results[mode] = {"max_batch": max_batch, **res}
        print(f"  {mode:9s} (--max-batch {max_batch:2d}): {res['requests']:5d} requests, {res['errors']} errors, "
              f"{res['req_per_s']:7.2f} req/s, {res['items_per_s']:7.2f} items/s, p50 {res['p50_ms']:7.1f} ms, "
              f"p95 {res['p95_ms']:7.1f} ms, max {res['max_ms']:7.1f} ms, mean batch {res['mean_batch']:.2f} "
              f"(largest {res['largest_batch']})", flush=True)
        for e in res["first_errors"]:
            print(f"    error: {e}")
    if "batched" in results and "unbatched" in results and results["unbatched"]["req_per_s"]:
        speed = results["batched"]["req_per_s"] / results["unbatched"]["req_per_s"]
        print(f"  dynamic batching: {speed:.2f}x the throughput of one-at-a-time")
        results["speedup"] = speed
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    tmp.cleanup()
    return 1 if any(r.get("errors") for r in results.values() if isinstance(r, dict)) else 0


if __name__ == "__main__":
    sys.exit(main())
