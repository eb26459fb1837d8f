"""Anti-aliased masks of the world's shapes (drawn with PIL at 4x and box-filtered down), shared by the image,
depth and thermal renderers so that all three see the same silhouette."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .world import polygon

_SS = 4  # supersampling factor


def shape_mask(shape: str, cx: float, cy: float, radius: float, angle: float, size: int,
               scale: float = 1.0) -> np.ndarray:
    """float32 (size, size) coverage in [0, 1] of ``shape`` at centre (cx, cy), half-extent ``radius``
    (fractions of the side), rotated ``angle`` degrees and scaled by ``scale``."""
    big = size * _SS
    im = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(im)
    pts = polygon(shape, cx * big, cy * big, radius * big, angle, scale)
    if pts is None:
        r = radius * scale * big
        draw.ellipse([cx * big - r, cy * big - r, cx * big + r, cy * big + r], fill=255)
    else:
        draw.polygon(pts, fill=255)
    return np.asarray(im.reduce(_SS), dtype=np.float32) / 255.0


def ellipse_mask(cx: float, cy: float, rx: float, ry: float, size: int) -> np.ndarray:
    """float32 (size, size) coverage of an axis-aligned ellipse (fractions of the side)."""
    big = size * _SS
    im = Image.new("L", (big, big), 0)
    ImageDraw.Draw(im).ellipse([(cx - rx) * big, (cy - ry) * big, (cx + rx) * big, (cy + ry) * big], fill=255)
    return np.asarray(im.reduce(_SS), dtype=np.float32) / 255.0


def lines_mask(size: int, segments: list[tuple[float, float, float, float]], width: float = 1.0,
               arcs: list[tuple[float, float, float, float, float]] = ()) -> np.ndarray:
    """float32 (size, size) coverage of line ``segments`` (x0, y0, x1, y1 as fractions) and ``arcs``
    (cx, cy, radius, start_deg, end_deg), ``width`` pixels wide."""
    big = size * _SS
    im = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(im)
    w = max(1, int(round(width * _SS)))
    for x0, y0, x1, y1 in segments:
        draw.line([x0 * big, y0 * big, x1 * big, y1 * big], fill=255, width=w)
    for cx, cy, r, a0, a1 in arcs:
        draw.arc([(cx - r) * big, (cy - r) * big, (cx + r) * big, (cy + r) * big], a0, a1, fill=255, width=w)
    return np.asarray(im.reduce(_SS), dtype=np.float32) / 255.0


def blur(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """Gaussian blur of a [0, 1] mask (PIL, on 8 bits)."""
    im = Image.fromarray(np.clip(mask * 255 + 0.5, 0, 255).astype(np.uint8))
    return np.asarray(im.filter(ImageFilter.GaussianBlur(radius_px)), dtype=np.float32) / 255.0


@lru_cache(maxsize=8)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) pixel-centre coordinates as fractions of the side, each float32 (size, size); read-only."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    yy, xx = np.meshgrid(c, c, indexing="ij")
    xx.flags.writeable = False
    yy.flags.writeable = False
    return xx, yy
