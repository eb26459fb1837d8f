"""Depth loader: a depth map -> 1 x size x size normalised disparity.

What the input means depends on how it is stored:

* **metric depth** — 16-bit images (PIL modes ``I;16``/``I``: integers in ``depth_unit_m`` metres, i.e.
  millimetres by default), float images (mode ``F``), ``.npy``/arrays of floats (metres) or of 16/32-bit
  integers (``depth_unit_m`` units). Converted to disparity = baseline_m * focal_px / clip(depth_m, min_depth_m,
  max_depth_m). With ``sunrgbd=True`` integer depth is SUN RGB-D's bit-rotated format:
  depth_m = ((d >> 3) | (d << 13)) / 1000 on uint16. Zeros (no measurement) clip to ``min_depth_m`` like
  everything else, as in the community's Omnivore/ImageBind conversion.
* **8-bit relative depth** — ordinary 8-bit images (grey or RGB visualisations, uint8 arrays) carry no scale.
  ``relative_8bit`` says how to read them: ``"near_is_bright"`` (default; MiDaS/DPT-style outputs) or
  ``"near_is_dark"`` take the grey level v in [0, 1] as relative disparity and map it linearly onto the
  disparity range of ``relative_far_m``..``relative_near_m`` (0 -> far, 1 -> near, with the card's baseline and
  focal length), so such images land in the same value range as metric inputs; ``"error"`` refuses them.
  Colour-mapped visualisations (jet, turbo) cannot be inverted: they are read as their grey level.

Then: resize the shorter side to ``size`` (bicubic on the float map, antialiased), centre crop, and normalise
(x - mean) / std with the card's statistics (the community's 0.0418 / 0.0295; unverified, see NOTES).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from . import image as image_mod
from .sources import Source

DEFAULTS: dict[str, Any] = {
    "size": 224,
    "interpolation": "bicubic",
    "representation": "disparity",
    "baseline_m": 0.075,
    "focal_px": 518.857,
    "min_depth_m": 0.01,
    "max_depth_m": 50.0,
    "depth_unit_m": 0.001,
    "sunrgbd": False,
    "mean": 0.0418,
    "std": 0.0295,
    "relative_8bit": "near_is_bright",
    "relative_near_m": 0.5,
    "relative_far_m": 10.0,
}
_RELATIVE = ("near_is_bright", "near_is_dark", "error")


def shape(p: dict[str, Any]) -> tuple[int, ...]:
    """Shape of one preprocessed depth map: (1, size, size)."""
    return (1, int(p["size"]), int(p["size"]))


def validate(p: dict[str, Any]) -> None:
    """Raise ValueError for option values this loader cannot use."""
    if p["representation"] != "disparity":
        raise ValueError(
            f"representation must be 'disparity' (what ImageBind was trained on), got {p['representation']!r}"
        )
    if p["relative_8bit"] not in _RELATIVE:
        raise ValueError(f"relative_8bit must be one of {', '.join(_RELATIVE)}, got {p['relative_8bit']!r}")
    if not 0 < float(p["min_depth_m"]) < float(p["max_depth_m"]):
        raise ValueError("need 0 < min_depth_m < max_depth_m")
    if not 0 < float(p["relative_near_m"]) < float(p["relative_far_m"]):
        raise ValueError("need 0 < relative_near_m < relative_far_m")
    if float(p["std"]) == 0 or float(p["baseline_m"]) <= 0 or float(p["focal_px"]) <= 0:
        raise ValueError("std must be non-zero, baseline_m and focal_px positive")
    image_mod.interpolation_mode(p["interpolation"])


def _read(src: Source) -> tuple[np.ndarray, str]:
    """(2-D array, what it holds: "metric_int", "metric_m" or "relative")."""
    if src.obj is not None and not isinstance(src.obj, Image.Image):
        return _classify_array(src.obj, src)
    if src.obj is None and src.ext == ".npy":
        return _classify_array(image_mod.load_npy(src), src)
    im = image_mod.open_image(src)
    if im.mode.startswith("I;16") or im.mode == "I":
        return np.asarray(im).astype(np.int64), "metric_int"
    if im.mode == "F":
        return np.asarray(im).astype(np.float64), "metric_m"
    grey = image_mod.to_mode(im, "L", src)
    return np.asarray(grey).astype(np.float64) / 255.0, "relative"


def _classify_array(obj: Any, src: Source) -> tuple[np.ndarray, str]:
    a = obj.detach().cpu().numpy() if isinstance(obj, torch.Tensor) else np.asarray(obj)
    a = np.squeeze(a) if a.ndim == 3 and 1 in (a.shape[0], a.shape[-1]) else a
    if a.ndim != 2 or min(a.shape) == 0:
        raise src.fail(f"wrong array shape {tuple(np.shape(obj))}; expected H x W (or 1 x H x W / H x W x 1)")
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0, "relative"
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.int64), "metric_int"
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float64), "metric_m"
    raise src.fail(f"unsupported array dtype {a.dtype}")


def to_disparity(a: np.ndarray, what: str, p: dict[str, Any], src: Source) -> np.ndarray:
    """Disparity (pixels, float32 2-D) from what :func:`_read` returned."""
    bf = float(p["baseline_m"]) * float(p["focal_px"])
    if what == "relative":
        if p["relative_8bit"] == "error":
            raise src.fail("8-bit image holds relative depth only; pass metric depth (16-bit PNG in mm, .npy in "
                           "metres) or set relative_8bit='near_is_bright'")
        v = a if p["relative_8bit"] == "near_is_bright" else 1.0 - a
        near, far = bf / float(p["relative_near_m"]), bf / float(p["relative_far_m"])
        return (far + v * (near - far)).astype(np.float32)
    if what == "metric_int":
        if p["sunrgbd"]:
            d = a.astype(np.uint16)
            a = ((d >> 3) | (d << 13)).astype(np.float64) / 1000.0
        else:
            a = a.astype(np.float64) * float(p["depth_unit_m"])
    if not np.isfinite(a).all():
        raise src.fail("depth contains NaN or inf; replace missing values with 0 before embedding")
    depth = np.clip(a, float(p["min_depth_m"]), float(p["max_depth_m"]))
    return (bf / depth).astype(np.float32)


def load(src: Source, p: dict[str, Any]) -> torch.Tensor:
    """One depth map -> float32 tensor (1, size, size) of normalised disparity."""
    arr, what = _read(src)
    disp = torch.from_numpy(to_disparity(arr, what, p, src))[None]
    out = image_mod.resize_crop(int(p["size"]), str(p["interpolation"]))(disp)
    return (out - float(p["mean"])) / float(p["std"])
