"""Helpers for tests/test_train*.py: a tiny card, a trivially learnable toy world (coloured squares with
colour-word captions, tones whose pitch names the colour, IMU wiggles, clips of sliding squares), and a CLI
runner."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 50, 220), "yellow": (230, 220, 30)}
PITCH = {"red": 300.0, "green": 600.0, "blue": 1200.0, "yellow": 2400.0}
SHAPES = ["square", "block", "patch"]


def tiny_card(path: Path, *, dropout: bool = False) -> Path:
    """A card of the bindkit_small layout shrunk for tests (32-px images and video frames, 16-token text, 1 block,
    width 32), written to ``path``; ``dropout=False`` zeroes drop-path and head dropout (deterministic runs)."""
    card = json.loads((REPO / "encoders" / "bindkit_small.json").read_text())
    card["name"] = "tiny_train"
    card["out_embed_dim"] = 32
    for m, cfg in card["modalities"].items():
        cfg.update(embed_dim=32, num_blocks=1, num_heads=2)
        if not dropout:
            cfg["drop_path"] = 0.0
            cfg["head_dropout"] = 0.0
    card["modalities"]["vision"].update(image_size=32, patch_size=[2, 8, 8])
    card["modalities"]["text"]["context_length"] = 16
    card["modalities"]["audio"].update(num_mel_bins=32, target_length=48)
    card["modalities"]["imu"].update(length=100, kernel_size=10)
    card["preprocess"]["image"]["size"] = 32
    card["preprocess"]["video"]["size"] = 32
    card["preprocess"]["text"]["context_length"] = 16
    card["preprocess"]["audio"].update(num_mel_bins=32, target_length=48, clip_duration=0.5)
    card["preprocess"]["imu"]["length"] = 100
    path.write_text(json.dumps(card))
    return path


def _image(path: Path, colour: str, rng: np.random.Generator, size: int = 40) -> None:
    bg = rng.integers(90, 160, size=3)
    a = np.empty((size, size, 3), np.uint8)
    a[:] = bg
    a = np.clip(a.astype(int) + rng.integers(-20, 20, size=a.shape), 0, 255).astype(np.uint8)
    s = int(rng.integers(size // 2, size - 4))
    y, x = rng.integers(0, size - s, size=2)
    a[y:y + s, x:x + s] = COLOURS[colour]
    Image.fromarray(a).save(path)


def _tone(path: Path, colour: str, rng: np.random.Generator, rate: int = 8000, seconds: float = 0.6) -> None:
    t = np.arange(int(rate * seconds)) / rate
    x = 0.5 * np.sin(2 * np.pi * PITCH[colour] * t + rng.uniform(0, 6.28)) + 0.02 * rng.standard_normal(t.size)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


def _imu(path: Path, colour: str, rng: np.random.Generator, n: int = 120) -> None:
    f = {"red": 1, "green": 3, "blue": 6, "yellow": 10}[colour]
    t = np.linspace(0, 1, n)
    cols = ["accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z"]
    data = np.stack([np.sin(2 * np.pi * f * t + k) + 0.05 * rng.standard_normal(n) for k in range(6)], 1)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerows(np.round(data, 4).tolist())


def _video(path: Path, colour: str, rng: np.random.Generator, size: int = 32, frames: int = 4, fps: int = 4) -> None:
    """A short MPEG-4 clip (PyAV): a square of ``colour`` sliding over a noisy background."""
    import av

    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        s = size // 2
        y = int(rng.integers(0, size - s))
        for k in range(frames):
            a = rng.integers(90, 160, size=(size, size, 3)).astype(np.uint8)
            x = (k * size // (2 * frames)) % (size - s)
            a[y:y + s, x:x + s] = COLOURS[colour]
            for packet in stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def video_world(root: Path, n: int = 10, seed: int = 0) -> Path:
    """``n`` tiny clips of coloured squares paired with tones whose pitch names the colour; writes and returns
    ``root/video_audio.csv``."""
    rng = np.random.default_rng(seed)
    (root / "media").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        colour = list(COLOURS)[i % len(COLOURS)]
        vid, snd = f"media/vid{i:03d}.mp4", f"media/vsnd{i:03d}.wav"
        _video(root / vid, colour, rng)
        _tone(root / snd, colour, rng)
        rows.append((vid, snd))
    path = root / "video_audio.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["video", "audio"])
        w.writerows(rows)
    return path


def toy_world(root: Path, n: int = 48, seed: int = 0, kinds: tuple[str, ...] = ("text",)) -> dict[str, Path]:
    """Write ``n`` items per colour cycle under ``root`` and one manifest per pair ``image,<kind>``; returns
    ``{kind: manifest path}``. Captions vary in wording; every item's colour decides its partner."""
    rng = np.random.default_rng(seed)
    media = root / "media"
    media.mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    rows: dict[str, list[tuple[str, str]]] = {k: [] for k in kinds}
    for i in range(n):
        colour = names[i % len(names)]
        img = f"media/img{i:03d}.png"
        _image(root / img, colour, rng)
        for kind in kinds:
            if kind == "text":
                rows[kind].append((img, f"a {colour} {SHAPES[int(rng.integers(len(SHAPES)))]}"))
            elif kind == "audio":
                _tone(root / f"media/snd{i:03d}.wav", colour, rng)
                rows[kind].append((img, f"media/snd{i:03d}.wav"))
            elif kind == "imu":
                _imu(root / f"media/imu{i:03d}.csv", colour, rng)
                rows[kind].append((img, f"media/imu{i:03d}.csv"))
    out = {}
    for kind, rs in rows.items():
        path = root / f"image_{kind}.csv"
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image", kind])
            w.writerows(rs)
        out[kind] = path
    return out


def env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: one thread each (2 shared cores), the repo importable, no torchrun vars."""
    e = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"):
        e.pop(k, None)
    e.update(extra)
    return e


def cli(*args: object, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m bindkit ARGS``; returns the completed process (text output)."""
    proc = subprocess.run([PYTHON, "-m", "bindkit", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env(), cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"bindkit {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def metric_steps(out: Path) -> list[int]:
    with open(out / "metrics.csv", newline="") as fh:
        return [int(r["step"]) for r in csv.DictReader(fh)]


def metric_losses(out: Path) -> list[float]:
    with open(out / "metrics.csv", newline="") as fh:
        return [float(r["loss"]) for r in csv.DictReader(fh)]
