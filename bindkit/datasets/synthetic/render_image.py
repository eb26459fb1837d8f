"""The RGB image of a scene: wall and floor, clutter, grey distractors, the main object with its material's
look, motion cues and temperature cues, then sensor noise.

What the picture shows (so the other modalities can be bound to it):

* **shape, colour, size, position** — the object itself;
* **material** — metal: a shaded highlight and a specular spot, greyed colour; wood: grain stripes; glass:
  half transparent with a bright rim; rubber: matte, darker, with a dark outline;
* **motion** (a slow shutter) — still: a contact shadow; bouncing: a blurred smear of copies above and a
  detached shadow below; sliding: a smear and speed lines behind it; spinning: a blurred ring, rotated ghosts
  and two arcs around it; shaking: blurred copies on both sides and tick marks;
* **temperature** — hot: an orange glow; cold: a pale blue halo and frost specks; warm: neither.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .raster import blur, ellipse_mask, grid, lines_mask, shape_mask
from .world import Scene


def _muted(rng: np.random.Generator) -> np.ndarray:
    grey = rng.uniform(70, 200)
    return grey + (rng.uniform(0, 255, 3) - grey) * 0.25


def _blend(canvas: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> None:
    """In place: canvas = canvas * (1 - alpha) + colour * alpha (colour: RGB or an H x W x 3 map)."""
    a = np.clip(alpha, 0.0, 1.0)[..., None]
    canvas *= 1.0 - a
    canvas += a * colour


def _background(scene: Scene, rng: np.random.Generator, size: int) -> np.ndarray:
    xx, yy = grid(size)
    wall, floor = _muted(rng), _muted(rng)
    h = scene.horizon
    t_wall = (yy / h)[..., None] * 0.15
    t_floor = ((yy - h) / (1 - h))[..., None]
    bg = np.where((yy < h)[..., None], wall * (0.92 + t_wall), floor * (0.85 + 0.3 * t_floor))
    im = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 9))):  # clutter: lines, boxes and dots in muted colours
        c = tuple(int(v) for v in np.clip(_muted(rng) * rng.uniform(0.7, 1.2), 0, 255))
        x0, y0 = rng.uniform(0, size, 2)
        kind = rng.integers(3)
        if kind == 0:
            x1, y1 = rng.uniform(0, size, 2)
            draw.line([x0, y0, x1, y1], fill=c, width=1)
        elif kind == 1:
            w, hh = rng.uniform(2, size * 0.15, 2)
            draw.rectangle([x0, y0, x0 + w, y0 + hh], outline=c)
        else:
            r = rng.uniform(0.5, 0.5 + size * 0.025)
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=c)
    return np.asarray(im, dtype=np.float32).copy()


def _object_colour(scene: Scene, mask_inner: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(H x W x 3 colour map, H x W opacity) of the main object, before multiplying by its mask."""
    xx, yy = grid(size)
    base = np.asarray(scene.rgb, dtype=np.float32)
    r = scene.radius
    dx, dy = xx - scene.cx, yy - scene.cy
    opacity = np.ones((size, size), dtype=np.float32)
    if scene.material == "metal":
        grey = base.mean()
        col = 0.75 * base + 0.25 * grey
        d2 = (dx + 0.35 * r) ** 2 + (dy + 0.35 * r) ** 2
        shade = 0.62 + 0.5 * np.exp(-d2 / (2 * (0.55 * r) ** 2))
        spot = np.exp(-d2 / (2 * (0.14 * r) ** 2))
        out = col * shade[..., None]
        out = out * (1 - 0.8 * spot[..., None]) + 255 * 0.8 * spot[..., None]
    elif scene.material == "wood":
        t = np.radians(scene.angle)
        u = dx * np.cos(t) + dy * np.sin(t)
        v = -dx * np.sin(t) + dy * np.cos(t)
        grain = 0.8 + 0.2 * np.sin(2 * np.pi * v / (0.28 * r) + 1.8 * np.sin(2 * np.pi * u / (1.1 * r)))
        col = 0.85 * base + 0.15 * np.array([120, 78, 40], dtype=np.float32)
        out = col * grain[..., None]
    elif scene.material == "glass":
        out = np.broadcast_to(np.minimum(base * 1.05 + 35, 255), (size, size, 3)).copy()
        streak = np.exp(-((dx - dy + 0.25 * r) ** 2) / (2 * (0.07 * r) ** 2)) * mask_inner
        out = out * (1 - 0.7 * streak[..., None]) + 255 * 0.7 * streak[..., None]
        opacity = 0.5 + 0.4 * streak
    else:  # rubber
        col = 0.8 * (0.85 * base + 0.15 * base.mean())
        out = np.broadcast_to(col, (size, size, 3)).copy()
    return out.astype(np.float32), opacity.astype(np.float32)


def _motion(scene: Scene, canvas: np.ndarray, size: int, mark: np.ndarray) -> None:
    """What a photo with a slow shutter shows of the motion, drawn under the object: a blurred smear along the
    path (up and down for bouncing, behind a sliding object, around a spinning one, side to side for shaking)
    with ghost copies, plus cartoon marks; still objects get a crisp contact shadow. The smears are broad on
    purpose: thin marks alone were lost among the clutter for a small model trained on a few thousand scenes."""
    s, r, d = scene, scene.radius, scene.direction
    ghost = np.asarray(s.rgb, dtype=np.float32)
    shadow = np.array([20, 20, 20], dtype=np.float32)
    smear_px = max(1.0, r * size * 0.12)
    if s.motion in ("still", "sliding"):
        _blend(canvas, shadow, 0.45 * ellipse_mask(s.cx, s.cy + 0.9 * r, 0.95 * r, 0.2 * r, size))
    if s.motion == "bouncing":
        trail = sum(shape_mask(s.shape, s.cx, s.cy - 0.5 * r * k, r, s.angle, size) * a
                    for k, a in ((1, 0.55), (2, 0.4), (3, 0.28), (4, 0.16)))
        _blend(canvas, ghost, np.clip(blur(np.clip(trail, 0, 1), smear_px), 0, 1))
        _blend(canvas, shadow, 0.35 * ellipse_mask(s.cx, s.cy + 1.55 * r, 0.6 * r, 0.13 * r, size))
        segs = [(s.cx + o * r, s.cy - 1.3 * r, s.cx + o * r, s.cy - 2.0 * r) for o in (-0.5, 0.0, 0.5)]
        _blend(canvas, mark, 0.8 * lines_mask(size, segs, width=1.5))
    elif s.motion == "sliding":
        trail = sum(shape_mask(s.shape, s.cx - d * 0.5 * r * k, s.cy, r, s.angle, size) * a
                    for k, a in ((1, 0.55), (2, 0.4), (3, 0.28), (4, 0.16)))
        _blend(canvas, ghost, np.clip(blur(np.clip(trail, 0, 1), smear_px), 0, 1))
        segs = [(s.cx - d * 1.2 * r, s.cy + o * r, s.cx - d * 2.4 * r, s.cy + o * r) for o in (-0.5, 0.0, 0.5)]
        _blend(canvas, mark, 0.8 * lines_mask(size, segs, width=1.5))
    elif s.motion == "spinning":
        halo = ellipse_mask(s.cx, s.cy, 1.25 * r, 1.25 * r, size) - 0.8 * ellipse_mask(s.cx, s.cy, 0.9 * r, 0.9 * r, size)
        _blend(canvas, ghost, 0.45 * np.clip(blur(np.clip(halo, 0, 1), smear_px), 0, 1))
        for k, a in ((1, 0.45), (2, 0.25)):
            _blend(canvas, ghost, a * shape_mask(s.shape, s.cx, s.cy, r, s.angle + d * 22 * k, size))
        arcs = [(s.cx, s.cy, 1.3 * r, 200, 290), (s.cx, s.cy, 1.3 * r, 20, 110)]
        _blend(canvas, mark, 0.8 * lines_mask(size, [], width=1.5, arcs=arcs))
    elif s.motion == "shaking":
        trail = sum(shape_mask(s.shape, s.cx + o * 0.25 * r, s.cy, r, s.angle, size) * 0.5 for o in (-1, 1))
        _blend(canvas, ghost, np.clip(blur(np.clip(trail, 0, 1), 0.5 * smear_px), 0, 1))
        segs = []
        for o in (-1, 1):
            for k in (1.35, 1.6):
                segs.append((s.cx + o * k * r, s.cy - 0.35 * r, s.cx + o * k * r, s.cy + 0.35 * r))
        _blend(canvas, mark, 0.8 * lines_mask(size, segs, width=1.5))


def render_image(scene: Scene, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """uint8 (size, size, 3) RGB picture of ``scene``; ``rng`` supplies clutter and noise."""
    canvas = _background(scene, rng, size)
    mark = np.array([25, 25, 25] if canvas.mean() > 120 else [235, 235, 235], dtype=np.float32)
    for dis in scene.distractors:
        col = np.full(3, dis.grey, dtype=np.float32) + rng.normal(0, 6, 3).astype(np.float32)
        _blend(canvas, col, shape_mask(dis.shape, dis.cx, dis.cy, dis.radius, dis.angle, size))
    _motion(scene, canvas, size, mark)

    mask = shape_mask(scene.shape, scene.cx, scene.cy, scene.radius, scene.angle, size)
    inner = shape_mask(scene.shape, scene.cx, scene.cy, scene.radius, scene.angle, size, scale=0.8)
    rim = np.clip(mask - inner, 0, 1)
    glow_px = max(1.0, scene.radius * size * 0.35)
    if scene.temperature == "hot":
        glow = np.clip(blur(mask, glow_px) * 1.8 - mask, 0, 1)
        _blend(canvas, np.array([255, 120, 25], dtype=np.float32), 0.7 * glow)
    elif scene.temperature == "cold":
        glow = np.clip(blur(mask, glow_px) * 1.8 - mask, 0, 1)
        _blend(canvas, np.array([175, 215, 255], dtype=np.float32), 0.6 * glow)

    colour, opacity = _object_colour(scene, inner, size)
    _blend(canvas, colour, mask * opacity)
    if scene.material == "glass":
        _blend(canvas, np.array([245, 245, 245], dtype=np.float32), 0.75 * rim)
    elif scene.material == "rubber":
        _blend(canvas, np.array([15, 15, 15], dtype=np.float32), 0.6 * rim)
    if scene.temperature == "cold":
        specks = (rng.random((size, size)) < 0.08).astype(np.float32) * inner
        _blend(canvas, np.array([250, 252, 255], dtype=np.float32), 0.85 * specks)

    canvas *= float(rng.uniform(0.9, 1.1))  # exposure
    canvas += rng.normal(0, rng.uniform(3, 10), canvas.shape).astype(np.float32)
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
