"""Training augmentations, one small set per modality, each driven by an explicit ``torch.Generator`` (seeded
from seed, epoch and row) so that runs, resumes and distributed ranks are reproducible.

* image: random resized crop (area 90-100 % as in open_clip, aspect 3/4-4/3, resized back to the card's size),
  then a small random affine warp (rotation up to 10 degrees, scale 0.9-1.1, shift up to 6 % of the side, edges
  extended): the pose jitter every small-data image recipe uses, which a transformer trained from scratch on a few
  thousand images needs more than a convolutional net does. No horizontal flip (open_clip uses none): a mirror
  image turns writing, digits and signs into something the caption does not describe. Video: horizontal flip of
  every frame. Wider crops (50 %) changed the apparent size of objects and cut off the marks that show motion in
  the synthetic world, which captions describe;
* depth, thermal: random resized crop (area 60-100 %) and flip;
* audio: gain (x 0.35-2, about -9 to +6 dB: recording levels vary that much), circular time shift (up to 20 % of
  the clip) and noise (SNR 20-40 dB), applied to the log-mel spectrogram in the power domain; then SpecAugment
  (Park et al. 2019): two time masks of up to 10 % of the frames and two frequency masks of up to 12 % of the
  mel bins, filled with the clip's mean; and, for a quarter of the clips, a band limit: every bin above a random
  cut-off (40-90 % of the mel range) set to the clip's floor, as a recording at 8 kHz or through a cheap
  microphone has nothing up there. Masking is what lets an encoder trained on a few thousand clips generalise
  to new speakers and microphones;
* imu: per-channel gain (x 0.9-1.1), time shift (up to 5 % of the window) and Gaussian jitter (3 % of each
  channel's standard deviation);
* text: none.

All of them work on the preprocessed tensors, so a training run decodes (and resamples, and filters) each file
once and keeps the result in memory (``cache_mb``); epochs after the first cost only the augmentation and the
model. Turn them off with ``augment="none"`` (``--no-augment``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

#: Per input kind: the augmentation settings (None: the kind is never augmented).
DEFAULTS: dict[str, dict[str, Any] | None] = {
    "image": {"crop_scale": (0.9, 1.0), "ratio": (3 / 4, 4 / 3), "flip": 0.0, "rotate": 10.0,
              "scale": (0.9, 1.1), "translate": 0.06},
    "video": {"flip": 0.5},
    "depth": {"crop_scale": (0.6, 1.0), "ratio": (3 / 4, 4 / 3), "flip": 0.5},
    "thermal": {"crop_scale": (0.6, 1.0), "ratio": (3 / 4, 4 / 3), "flip": 0.5},
    "audio": {"gain": (0.35, 2.0), "shift": 0.2, "snr_db": (20.0, 40.0), "time_masks": 2, "time_mask": 0.1,
              "freq_masks": 2, "freq_mask": 0.12, "band_limit": 0.25},
    "imu": {"gain": (0.9, 1.1), "shift": 0.05, "jitter": 0.03},
    "text": None,
}


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def crop_box(h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float],
             gen: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random resized crop (torchvision's rule, with our generator)."""
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(gen, *scale)
        aspect = math.exp(_uniform(gen, *log_r))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (), generator=gen))
            left = int(torch.randint(0, w - cw + 1, (), generator=gen))
            return top, left, ch, cw
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side, side


def _flip(gen: torch.Generator, p: float) -> bool:
    return bool(float(torch.rand((), generator=gen)) < p)


def spatial_map(x: torch.Tensor, cfg: dict, gen: torch.Generator) -> torch.Tensor:
    """Random resized crop (back to the same size, bilinear), an optional small affine warp (``rotate`` degrees,
    ``scale`` range, ``translate`` fraction) and flip of a loaded (C, H, W) map."""
    _, h, w = x.shape
    top, left, ch, cw = crop_box(h, w, cfg["crop_scale"], cfg["ratio"], gen)
    x = F.interpolate(x[None, :, top:top + ch, left:left + cw], size=(h, w), mode="bilinear",
                      align_corners=False)[0]
    if cfg.get("rotate") or cfg.get("translate") or cfg.get("scale"):
        x = affine(x, float(cfg.get("rotate", 0.0)), tuple(cfg.get("scale", (1.0, 1.0))),
                   float(cfg.get("translate", 0.0)), gen)
    return x.flip(-1) if _flip(gen, cfg["flip"]) else x


def affine(x: torch.Tensor, rotate: float, scale: tuple[float, float], translate: float,
           gen: torch.Generator) -> torch.Tensor:
    """A random rotation (+- ``rotate`` degrees), zoom (``scale``) and shift (+- ``translate`` of the side) of a
    (C, H, W) map, bilinear, edges extended."""
    a = math.radians(_uniform(gen, -rotate, rotate))
    z = _uniform(gen, *scale)
    tx, ty = (_uniform(gen, -translate, translate) * 2 for _ in range(2))
    theta = torch.tensor([[math.cos(a) / z, -math.sin(a) / z, tx],
                          [math.sin(a) / z, math.cos(a) / z, ty]], dtype=x.dtype)[None]
    grid = F.affine_grid(theta, [1, *x.shape], align_corners=False)
    return F.grid_sample(x[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]


def spectrogram(x: torch.Tensor, params: dict, cfg: dict, gen: torch.Generator) -> torch.Tensor:
    """Gain, circular time shift and white noise on a loaded (clips, 1, mel, frames) log-mel batch, applied in
    the log-power domain (so the preprocessed spectrogram can be cached): gain g adds 2 ln g to every bin, noise
    adds power at ``snr_db`` below the clip's mean power, the shift rolls the frames."""
    mean, std = float(params["mean"]), float(params["std"])
    logp = x * std + mean
    logp = logp + 2.0 * math.log(_uniform(gen, *cfg["gain"]))
    frames = x.shape[-1]
    max_shift = int(cfg["shift"] * frames)
    if max_shift > 0:
        logp = torch.roll(logp, int(torch.randint(-max_shift, max_shift + 1, (), generator=gen)), dims=-1)
    power = logp.exp()
    noise = power.mean(dim=(-2, -1), keepdim=True) / 10 ** (_uniform(gen, *cfg["snr_db"]) / 10)
    noisy = power + noise * torch.rand(power.shape, generator=gen) * 2
    logp = noisy.log()
    mels = logp.shape[-2]
    if cfg.get("band_limit") and float(torch.rand((), generator=gen)) < cfg["band_limit"]:
        cut = int(mels * _uniform(gen, 0.4, 0.9))
        logp[..., cut:, :] = logp.amin(dim=(-2, -1), keepdim=True)
    fill = logp.mean(dim=(-2, -1), keepdim=True).expand_as(logp)
    for axis, count, width in ((-1, cfg.get("time_masks", 0), cfg.get("time_mask", 0.0)),
                               (-2, cfg.get("freq_masks", 0), cfg.get("freq_mask", 0.0))):
        size = logp.shape[axis]
        for _ in range(int(count)):
            w = int(torch.randint(0, int(width * size) + 1, (), generator=gen))
            if w == 0:
                continue
            a = int(torch.randint(0, size - w + 1, (), generator=gen))
            idx = [slice(None)] * logp.ndim
            idx[axis] = slice(a, a + w)
            logp[tuple(idx)] = fill[tuple(idx)]
    return (logp - mean) / std


def imu(x: torch.Tensor, cfg: dict, gen: torch.Generator) -> torch.Tensor:
    """Per-channel gain, time shift (zero-filled) and jitter on a (channels, length) window."""
    c, n = x.shape
    gains = torch.empty(c, 1).uniform_(cfg["gain"][0], cfg["gain"][1], generator=gen)
    x = x * gains
    max_shift = int(cfg["shift"] * n)
    if max_shift > 0:
        s = int(torch.randint(-max_shift, max_shift + 1, (), generator=gen))
        if s:
            x = torch.roll(x, s, dims=1)
            if s > 0:
                x[:, :s] = 0
            else:
                x[:, s:] = 0
    std = x.std(dim=1, keepdim=True).clamp_min(1e-6)
    return x + torch.randn(x.shape, generator=gen) * std * cfg["jitter"]


def apply(kind: str, x: torch.Tensor, params: dict, cfg: dict, gen: torch.Generator) -> torch.Tensor:
    """Augment one loaded (preprocessed) item of ``kind`` with settings ``cfg``; returns a new tensor (``x``, which
    may be cached, is never modified)."""
    if kind in ("image", "depth", "thermal"):
        return spatial_map(x, cfg, gen)
    if kind == "audio":
        return spectrogram(x, params, cfg, gen)
    if kind == "imu":
        return imu(x, cfg, gen)
    if kind == "video":  # (clips, 3, frames, H, W)
        return x.flip(-1) if _flip(gen, cfg["flip"]) else x.clone()
    return x
