"""Depth loader: metric depth -> disparity, SUN RGB-D bit rotation, 8-bit relative depth, clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import bindkit
from bindkit.errors import InputError
from bindkit.inputs import preprocess

CARD = bindkit.load_card("imagebind_huge").preprocess_for("depth")
BF = CARD["baseline_m"] * CARD["focal_px"]


def png16(mm: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mm.astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def normalised(disparity: float) -> float:
    return (disparity - CARD["mean"]) / CARD["std"]


def test_every_sample_loads(samples_dir):
    got = preprocess("depth", sorted(samples_dir.glob("depth/*.jpg")))
    assert got.shape == (6, 1, 224, 224) and torch.isfinite(got).all()


def test_16_bit_png_in_mm_becomes_disparity():
    got = preprocess("depth", [png16(np.full((60, 80), 2000))])[0]
    assert torch.allclose(got, torch.full_like(got, normalised(BF / 2.0)), rtol=1e-5)


def test_npy_metres_png_millimetres_and_arrays_agree(tmp_path):
    rng = np.random.default_rng(0)
    metres = rng.uniform(0.5, 8.0, size=(120, 160)).round(3)
    path = tmp_path / "d.npy"
    np.save(path, metres.astype(np.float32))
    mm = (metres * 1000).round().astype(np.uint16)
    got = preprocess("depth", [path, png16(mm), mm, torch.from_numpy(metres.astype(np.float32))[None]])
    for row in got[1:]:
        assert (row - got[0]).abs().max().item() < 1e-3 * got[0].abs().max().item()


def test_sunrgbd_bit_rotation():
    mm = np.random.default_rng(1).integers(500, 8000, size=(50, 70)).astype(np.uint16)
    stored = ((mm.astype(np.uint32) << 3) | (mm.astype(np.uint32) >> 13)) & 0xFFFF  # the format's rotation
    plain = preprocess("depth", [png16(mm)])
    rotated = preprocess("depth", [png16(stored)], sunrgbd=True)
    assert torch.allclose(plain, rotated, rtol=1e-5)
    assert not torch.allclose(plain, preprocess("depth", [png16(stored)]))


def test_depth_is_clipped_so_missing_pixels_are_nearest():
    got = preprocess("depth", [np.zeros((40, 40), np.float32)])[0]
    assert torch.allclose(got, torch.full_like(got, normalised(BF / CARD["min_depth_m"])), rtol=1e-5)


def test_options_override_the_card():
    a = preprocess("depth", [np.full((30, 30), 1.0, np.float32)], mean=0.0, std=1.0)
    b = preprocess("depth", [np.full((30, 30), 1.0, np.float32)], mean=0.0, std=1.0, baseline_m=0.095)
    assert torch.allclose(b / a, torch.full_like(a, 0.095 / CARD["baseline_m"]), rtol=1e-5)


def test_8_bit_images_are_relative_disparity():
    ramp = np.tile(np.linspace(0, 255, 224).round().astype(np.uint8), (224, 1))  # brighter to the right
    bright = preprocess("depth", [Image.fromarray(ramp)], mean=0.0, std=1.0)[0, 0]
    dark = preprocess("depth", [Image.fromarray(ramp)], mean=0.0, std=1.0, relative_8bit="near_is_dark")[0, 0]
    assert bright[:, -5:].mean() > bright[:, :5].mean()  # bright = near = large disparity
    assert dark[:, -5:].mean() < dark[:, :5].mean()
    lo, hi = BF / CARD.get("relative_far_m", 10.0), BF / CARD.get("relative_near_m", 0.5)
    assert bright.min().item() == pytest.approx(lo, rel=1e-4)  # black = relative_far_m
    assert bright.max().item() == pytest.approx(hi, rel=1e-4)  # white = relative_near_m
    with pytest.raises(InputError, match="relative depth only"):
        preprocess("depth", [Image.fromarray(ramp)], relative_8bit="error")


def test_bad_depth_raises_input_error(tmp_path):
    with pytest.raises(InputError, match="NaN"):
        preprocess("depth", [np.full((10, 10), np.nan, np.float32)])
    with pytest.raises(InputError, match="wrong array shape"):
        preprocess("depth", [np.zeros((3, 10, 10), np.float32)])
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(InputError, match="npy") as info:
        preprocess("depth", [bad])
    assert info.value.item == str(bad)
    with pytest.raises(ValueError, match="relative_8bit"):
        preprocess("depth", [np.zeros((10, 10), np.float32)], relative_8bit="maybe")
