"""Thermal loader: one channel in [0, 1], optional normalisation, 16-bit radiometric images stretched."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from bindkit.inputs import preprocess


def test_every_sample_loads_as_one_channel(samples_dir):
    got = preprocess("thermal", sorted(samples_dir.glob("thermal/*.jpg")))
    assert got.shape == (6, 1, 224, 224)
    assert got.min() >= 0 and got.max() <= 1  # card default: no normalisation


def test_normalize_option_applies_mean_and_std(samples_dir):
    path = sorted(samples_dir.glob("thermal/*.jpg"))[0]
    plain = preprocess("thermal", [path])
    norm = preprocess("thermal", [path], normalize=True, mean=[0.5], std=[0.25])
    assert torch.allclose(norm, (plain - 0.5) / 0.25, atol=1e-6)


def test_rgb_renderings_become_grey():
    grey = np.random.default_rng(0).integers(0, 256, (240, 320), dtype=np.uint8)
    rgb = Image.fromarray(np.repeat(grey[..., None], 3, axis=2))
    got = preprocess("thermal", [rgb, Image.fromarray(grey)])
    assert torch.equal(got[0], got[1])


def test_16_bit_radiometric_counts_are_stretched():
    counts = np.tile(np.linspace(7200, 7600, 240).astype(np.uint16), (240, 1))  # a narrow band of 16 bits
    stretched = preprocess("thermal", [counts])[0]
    assert stretched.min().item() < 0.01 and stretched.max().item() > 0.99
    scaled = preprocess("thermal", [counts], high_bit_depth="scale")[0]
    assert scaled.max().item() - scaled.min().item() < 0.01
