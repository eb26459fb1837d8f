"""Helpers for the ``bindkit serve`` tests: a tiny model with random weights written like a user's converted
folder, generated media of every modality, and a real uvicorn server on a free loopback port."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


# ---- model -----------------------------------------------------------------------------------------------------
def write_tiny_model(folder: Path) -> Path:
    """imagebind_tiny with seeded random weights, written by ``bindkit.convert`` (with card.json) into
    ``folder``: what ``bindkit serve --model FOLDER`` loads on any clone, without ../shared."""
    import torch

    import bindkit
    from bindkit.models.reference_layout import to_reference

    torch.manual_seed(0)
    model = bindkit.build_model("imagebind_tiny")
    state = {to_reference(k): v for k, v in model.encoders.state_dict().items()}
    return bindkit.convert(state, folder, card="imagebind_tiny", progress=False)


# ---- media -----------------------------------------------------------------------------------------------------
def png(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 48), fmt: str = "PNG") -> bytes:
    """An RGB image file with a gradient (so different colours give different vectors)."""
    from PIL import Image

    w, h = size
    a = np.zeros((h, w, 3), np.uint8)
    a[...] = color
    a[:, :, 1] = (np.arange(w)[None, :] * 255 // max(w - 1, 1)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, fmt)
    return buf.getvalue()


def depth_png(seed: int = 0, size: tuple[int, int] = (40, 30)) -> bytes:
    """A 16-bit depth PNG in millimetres."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    d = rng.integers(500, 5000, size=(size[1], size[0]), dtype=np.uint16)
    buf = io.BytesIO()
    Image.fromarray(d).save(buf, "PNG")
    return buf.getvalue()


def thermal_png(seed: int = 0, size: tuple[int, int] = (40, 30)) -> bytes:
    """An 8-bit grey thermal image."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, size=(size[1], size[0]), dtype=np.uint8), mode="L").save(buf, "PNG")
    return buf.getvalue()


def wav(seconds: float = 1.0, freq: float = 440.0, rate: int = 16000) -> bytes:
    """A mono 16-bit WAV sine tone."""
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def imu_csv(seed: int = 0, rows: int = 200) -> bytes:
    """An IMU CSV with a timestamp and named accelerometer/gyroscope columns."""
    rng = np.random.default_rng(seed)
    lines = ["timestamp,accel_x,accel_y,accel_z,gyro_x,gyro_y,gyro_z"]
    for i, r in enumerate(rng.normal(size=(rows, 6))):
        lines.append(f"{i * 0.0025:.4f}," + ",".join(f"{v:.5f}" for v in r))
    return ("\n".join(lines) + "\n").encode()


def mp4(seconds: float = 2.0, fps: int = 5, size: tuple[int, int] = (64, 48)) -> bytes:
    """A small MPEG-4 video of moving colour bars (PyAV)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(int(seconds * fps)):
            a = np.zeros((size[1], size[0], 3), np.uint8)
            a[:, :, 0] = (np.arange(size[0]) * 4 + i * 20) % 256
            a[:, :, 2] = 255 - i * 10
            for packet in stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{b64(data)}"


# ---- server ----------------------------------------------------------------------------------------------------
class ServerThread:
    """A real uvicorn server for ``app`` on a free loopback port, in a background thread. Entering it waits until
    ``/.well-known/ready`` answers 204 (with ``ready=False``, until ``/.well-known/live`` does)."""

    def __init__(self, app: Any, ready: bool = True):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        from bindkit.serve import uvicorn_options

        config = getattr(getattr(app.state, "bindkit", None), "config", None)
        bounds = uvicorn_options(config.bounds) if config is not None else {}
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **bounds))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.ready = ready

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        wait_ready(self.url, path="/.well-known/ready" if self.ready else "/.well-known/live")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        self.sock.close()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response read off a raw socket: (status, headers lower-cased, body of its Content-Length).
    ConnectionError when the server closed the connection before a status line."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split()
    if len(status) < 2 or not status[1].isdigit():
        raise ConnectionError(f"no HTTP status line from the server (got {data[:80]!r})")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    n = int(headers.get("content-length", "0"))
    while len(body) < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status[1]), headers, body


def wait_ready(url: str, timeout: float = 120.0, proc: Any = None, path: str = "/.well-known/ready") -> None:
    """Poll ``url`` + ``path`` until it answers 204 (fails when ``proc`` exits first)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} before it was ready")
        try:
            if httpx.get(url + path, timeout=5).status_code == 204:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} was not ready within {timeout} s")
