"""Depth and thermal maps of a scene, pixel-aligned with its image.

* **Depth** (metres; written as a 16-bit PNG in millimetres, which bindkit's depth loader reads as metric
  depth): a back wall 6-9 m away above the horizon, a floor coming towards the camera below it (disparity
  linear in the row, as for a real ground plane), distractors at 2-5 m, and the main object at 1.2-3 m,
  always nearer than what is behind it, domed towards the camera. Glass is seen through at about half its
  pixels (as by real depth sensors). Noise grows with distance; values are quantised to millimetres.
* **Thermal** (degrees Celsius; written as an 8-bit PNG on a fixed scale, see :func:`celsius_to_8bit`, so
  hot is always bright and cold always dark, whatever else is in the picture): the room at 17-25 C with a
  slightly cooler floor, distractors near room temperature, the object at its temperature seen through its
  emissivity (metal looks cooler than it is), hot objects warming the air around them; sensor noise and
  column fixed-pattern noise.
"""

from __future__ import annotations

import numpy as np

from .raster import blur, grid, shape_mask
from .world import EMISSIVITY, Scene

#: The fixed temperature range of the 8-bit thermal scale: 0 = THERMAL_MIN_C, 255 = THERMAL_MAX_C.
THERMAL_MIN_C = -20.0
THERMAL_MAX_C = 120.0


def _room_depth(scene: Scene, rng: np.random.Generator, size: int) -> np.ndarray:
    xx, yy = grid(size)
    wall = rng.uniform(6.0, 9.0) + rng.uniform(-0.4, 0.4) * (xx - 0.5)
    near = rng.uniform(1.8, 3.0)
    h = scene.horizon
    t = np.clip((yy - h) / (1 - h), 0, 1)
    floor = 1.0 / (1.0 / wall + t * (1.0 / near - 1.0 / wall))
    return np.where(yy < h, wall, floor).astype(np.float64)


def render_depth(scene: Scene, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """Depth in metres, float64 (size, size)."""
    xx, yy = grid(size)
    depth = _room_depth(scene, rng, size)
    for dis in scene.distractors:
        m = shape_mask(dis.shape, dis.cx, dis.cy, dis.radius, dis.angle, size) > 0.5
        if m.any():
            depth = np.where(m, np.minimum(dis.distance_m, 0.9 * depth[m].min()), depth)
    m = shape_mask(scene.shape, scene.cx, scene.cy, scene.radius, scene.angle, size) > 0.5
    if m.any():
        behind = depth.copy()
        front = min(scene.distance_m, 0.85 * float(depth[m].min()))
        rho2 = ((xx - scene.cx) ** 2 + (yy - scene.cy) ** 2) / scene.radius ** 2
        dome = 0.6 * scene.radius * front * np.sqrt(np.clip(1.0 - rho2, 0.0, 1.0))
        obj = front - dome
        if scene.material == "glass":
            see_through = rng.random((size, size)) < 0.45
            obj = np.where(see_through, behind, obj)
        depth = np.where(m, obj, depth)
    depth = depth * (1.0 + rng.normal(0.0, 0.004, depth.shape) * depth)
    return np.clip(depth, 0.05, 60.0)


def depth_to_mm(depth_m: np.ndarray) -> np.ndarray:
    """uint16 millimetres (what a 16-bit depth PNG holds); 0 is never produced."""
    return np.clip(np.rint(depth_m * 1000.0), 1, 65535).astype(np.uint16)


def render_thermal(scene: Scene, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """Apparent temperature in degrees Celsius, float64 (size, size)."""
    xx, yy = grid(size)
    amb = scene.ambient_c
    temp = amb + 0.8 * (0.5 - yy) - 1.0 * (yy > scene.horizon)
    for _ in range(2):  # slow warm and cool patches (radiators, windows)
        fx, fy, ph = rng.uniform(0.5, 2.0), rng.uniform(0.5, 2.0), rng.uniform(0, 2 * np.pi)
        temp = temp + rng.uniform(0.3, 1.2) * np.sin(2 * np.pi * (fx * xx + fy * yy) + ph)
    for dis in scene.distractors:
        m = shape_mask(dis.shape, dis.cx, dis.cy, dis.radius, dis.angle, size)
        temp = temp * (1 - m) + dis.celsius * m
    m = shape_mask(scene.shape, scene.cx, scene.cy, scene.radius, scene.angle, size)
    seen = amb + EMISSIVITY[scene.material] * (scene.celsius - amb)
    rho2 = ((xx - scene.cx) ** 2 + (yy - scene.cy) ** 2) / scene.radius ** 2
    obj = seen + 0.1 * (seen - amb) * np.clip(1.0 - rho2, 0.0, 1.0)  # the core is hotter (or colder)
    if scene.temperature == "hot":
        halo = np.clip(blur(m, max(1.0, scene.radius * size * 0.4)) * 1.5 - m, 0, 1)
        temp = temp + 0.15 * (seen - amb) * halo
    temp = temp * (1 - m) + obj * m
    temp = temp + rng.normal(0.0, 0.4, temp.shape) + rng.normal(0.0, 0.3, (1, size))
    return temp


def celsius_to_8bit(temp_c: np.ndarray) -> np.ndarray:
    """uint8 on the fixed scale THERMAL_MIN_C..THERMAL_MAX_C (-20..120 C: 0..255, ~0.55 C per level)."""
    v = (temp_c - THERMAL_MIN_C) * (255.0 / (THERMAL_MAX_C - THERMAL_MIN_C))
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)
