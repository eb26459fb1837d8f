"""How the demo shows each modality: depth and thermal maps colour-mapped, IMU recordings as line plots, all
rendered to small PNGs with numpy + Pillow only (no matplotlib), and zero-shot classification by prompts.

Part of the demo app (:mod:`bindkit.ui`)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Sequence, TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel

#: Anchor colours of the two colour maps (evenly spaced from 0 to 1, linearly interpolated): "turbo"-like for
#: depth (near = red, far = blue), "inferno"-like for thermal (cold = black/purple, hot = yellow/white).
_ANCHORS = {
    "depth": [(48, 18, 59), (70, 107, 227), (41, 188, 235), (61, 244, 141), (164, 252, 59), (238, 207, 58),
              (251, 128, 34), (212, 49, 6), (122, 4, 3)],
    "thermal": [(0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66), (245, 125, 21),
                (250, 193, 39), (252, 255, 164)],
}
#: Line colours of the IMU plots (x, y, z).
_AXIS_COLOURS = [(214, 39, 40), (44, 160, 44), (31, 119, 180)]
#: Side (px) small maps are enlarged to (nearest neighbour), so that 64-px maps are not a blur in the gallery.
MIN_SIDE = 192


def colormap(values: np.ndarray, name: str) -> np.ndarray:
    """uint8 RGB (H, W, 3) for ``values`` in [0, 1] (clipped; nan -> the lowest colour) through map ``name``."""
    anchors = np.asarray(_ANCHORS[name], np.float64)
    v = np.nan_to_num(np.clip(np.asarray(values, np.float64), 0.0, 1.0), nan=0.0)
    pos = v * (len(anchors) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(anchors) - 2)
    frac = (pos - lo)[..., None]
    return np.round(anchors[lo] * (1 - frac) + anchors[lo + 1] * frac).astype(np.uint8)


def _grey(path: str | os.PathLike) -> np.ndarray:
    """A map file as a 2-D float array of its stored values (16-bit depth PNGs keep their millimetres)."""
    with Image.open(path) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            a = np.asarray(im, dtype=np.float64)
        else:
            a = np.asarray(im.convert("L"), dtype=np.float64)
    return a


def _enlarge(rgb: np.ndarray) -> Image.Image:
    im = Image.fromarray(rgb, "RGB")
    side = max(im.size)
    if side < MIN_SIDE:
        f = -(-MIN_SIDE // side)
        im = im.resize((im.width * f, im.height * f), Image.NEAREST)
    return im


def depth_image(path: str | os.PathLike) -> Image.Image:
    """A depth map colour-mapped: near is red, far is blue, no reading (0) is dark; scaled to the map's own
    2nd..98th percentile of valid readings."""
    a = _grey(path)
    valid = a > 0
    if valid.any():
        lo, hi = np.percentile(a[valid], [2, 98])
        t = 1.0 - (a - lo) / max(hi - lo, 1e-9)  # near (small depth) -> 1 -> red
    else:
        t = np.zeros_like(a)
    rgb = colormap(t, "depth")
    rgb[~valid] = 20
    return _enlarge(rgb)


def thermal_image(path: str | os.PathLike) -> Image.Image:
    """A thermal map colour-mapped on its fixed 8-bit scale (hot is bright): not re-stretched per image, so
    the colours compare across hits."""
    a = _grey(path)
    top = 65535.0 if a.max(initial=0) > 255 else 255.0
    return _enlarge(colormap(a / top, "thermal"))


def read_imu(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """(float (T, 6) accelerometer x/y/z + gyroscope x/y/z, column names) from a CSV/TSV with a header (a time
    column is dropped) or a .npy array (T, 6) or (6, T). Raises ValueError when it is neither."""
    p = Path(path)
    if p.suffix.lower() == ".npy":
        a = np.load(p, allow_pickle=False).astype(np.float64)
        if a.ndim == 2 and a.shape[0] == 6 and a.shape[1] != 6:
            a = a.T
        names = ["accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z"]
    else:
        text = p.read_text(encoding="utf-8", errors="replace")
        dialect = csv.Sniffer().sniff(text[:2048], delimiters=",;\t ") if text.strip() else csv.excel
        rows = [r for r in csv.reader(io.StringIO(text), dialect) if r and any(c.strip() for c in r)]
        if not rows:
            raise ValueError(f"{p.name}: empty IMU file")
        try:
            [float(c) for c in rows[0]]
            header = [f"c{i}" for i in range(len(rows[0]))]
        except ValueError:
            header, rows = [c.strip() for c in rows[0]], rows[1:]
        keep = [i for i, h in enumerate(header) if not h.lower().startswith(("time", "t_", "timestamp"))
                and h.lower() not in ("t", "ts")]
        a = np.asarray([[float(r[i]) for i in keep] for r in rows], np.float64)
        names = [header[i] for i in keep]
    if a.ndim != 2 or a.shape[1] < 6 or a.shape[0] < 2:
        raise ValueError(f"{p.name}: expected an IMU table with 6 channels, got shape {a.shape}")
    return a[:, :6], names[:6]


def imu_image(path: str | os.PathLike, width: int = 420, height: int = 260) -> Image.Image:
    """An IMU recording as two line plots (accelerometer, gyroscope), x/y/z in red/green/blue."""
    a, names = read_imu(path)
    im = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    half = height // 2
    for panel, (title, cols) in enumerate((("accel", a[:, :3]), ("gyro", a[:, 3:6]))):
        top, bottom = panel * half + 14, (panel + 1) * half - 4
        left, right = 6, width - 6
        draw.rectangle([left, top, right, bottom], outline=(200, 200, 200))
        lo, hi = float(cols.min()), float(cols.max())
        if hi - lo < 1e-9:
            lo, hi = lo - 1, hi + 1
        def ys(v: np.ndarray) -> np.ndarray:
            return bottom - 2 - (v - lo) / (hi - lo) * (bottom - top - 4)
        if lo < 0 < hi:
            y0 = float(ys(np.array(0.0)))
            draw.line([(left, y0), (right, y0)], fill=(225, 225, 225))
        x = np.linspace(left + 1, right - 1, len(cols))
        step = max(1, len(cols) // (right - left))  # at most one point per pixel column
        for c in range(3):
            pts = list(zip(x[::step].tolist(), ys(cols[::step, c]).tolist()))
            draw.line(pts, fill=_AXIS_COLOURS[c], width=2)
        label = f"{title}  " + "  ".join(n.split("_")[-1] if "_" in n else n for n in names[panel * 3:panel * 3 + 3])
        draw.text((left + 2, top - 13), label, fill=(60, 60, 60))
        for c in range(3):  # colour key
            draw.rectangle([right - 44 + c * 14, top - 10, right - 36 + c * 14, top - 3], fill=_AXIS_COLOURS[c])
    return im


RENDERERS = {"depth": depth_image, "thermal": thermal_image, "imu": imu_image}


# ---- zero-shot ------------------------------------------------------------------------------------------------
def parse_classes(text: str) -> list[str]:
    """Class names from a comma- or newline-separated list (blank entries and duplicates dropped)."""
    names = [c.strip() for part in (text or "").split("\n") for c in part.split(",")]
    return list(dict.fromkeys(c for c in names if c))


def parse_templates(text: str) -> list[str]:
    """Prompt templates, one per line; each must hold ``{}`` (where the class name goes)."""
    lines = [t.strip() for t in (text or "").splitlines() if t.strip()]
    bad = [t for t in lines if "{}" not in t]
    if bad:
        raise ValueError(f"every prompt template needs {{}} where the class name goes: {bad[0]!r}")
    return lines or ["{}"]


def zero_shot(model: "BindModel", kind: str, item: Any, classes: Sequence[str], templates: Sequence[str]) -> dict[str, Any]:
    """Zero-shot classification of one item of modality ``kind``: each class is the mean of its prompts' text
    embeddings (renormalised); probabilities are the softmax of cosine x the text logit scale (the model's
    learned temperature; 100 when it has none, as CLIP). Returns ``{"probs": {class: p}, "scale": s}``.
    Raises ValueError when the item cannot be read (the loader's message)."""
    if not classes:
        raise ValueError("give at least one class name")
    prompts = [t.replace("{}", c) for c in classes for t in templates]
    emb = model.embed(**{kind: [item]}, text=prompts) if kind != "text" else model.embed(text=[item, *prompts])
    if getattr(emb, "errors", None):
        raise ValueError("; ".join(f"{e.kind} {os.path.basename(e.item)}: {e.reason}" for e in emb.errors))
    if kind == "text":
        q, t = np.asarray(emb["text"][0]), np.asarray(emb["text"][1:])
    else:
        q, t = np.asarray(emb[kind][0]), np.asarray(emb["text"])
    t = t.reshape(len(classes), len(templates), -1).mean(axis=1)
    t /= np.linalg.norm(t, axis=1, keepdims=True).clip(1e-12)
    cos = t @ (q / max(np.linalg.norm(q), 1e-12))
    try:
        scale = model.logit_scale("text")
    except Exception:  # a model without a text encoder cannot do zero-shot at all; embed() said so above
        scale = None
    scale = float(scale) if scale else 100.0
    z = scale * cos
    p = np.exp(z - z.max())
    p /= p.sum()
    return {"probs": {c: float(v) for c, v in zip(classes, p)}, "cosine": {c: float(v) for c, v in zip(classes, cos)},
            "scale": scale}
