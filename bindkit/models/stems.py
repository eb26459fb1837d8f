"""Stems: turn a preprocessed input into a token sequence (B, L, D) with a class token and position embedding.

Token counts come from the card, so a card with another input size or patch size builds the matching layout.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .trim import Packing

# The stems normalise patch tokens with LayerNorm at its default eps (1e-5), unlike the trunk and heads (1e-6):
# the checkpoint was trained that way, and 1e-6 moves audio embeddings by ~1e-5.
STEM_LN_EPS = 1e-5


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, float)) else (int(v[0]), int(v[1]))


class _TokenStem(nn.Module):
    """Common tail of every patch stem: prepend the class token, add the (learned) position embedding."""

    def __init__(self, dim: int, num_patches: int, cls_token: bool = True):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + int(cls_token), dim))

    def _finish(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return tokens + self.pos_embed


class VisionStem(_TokenStem):
    """Images (B, 3, H, W) or clips (B, 3, T, H, W) -> (B, 1 + T/t * H/p * W/p, D) via a 3-D patch convolution.

    An image is a clip of one frame repeated ``num_frames`` times, so images and video share the encoder.

    ``conv_channels`` (bindkit's small cards only; empty for ImageBind's layout) puts an "early convolution"
    stack in front of the patch convolution: per frame, one 3x3 stride-2 convolution + GroupNorm + GELU per
    entry, so the patch convolution then cuts ``p / 2**n`` pixels of the reduced map. Same token count and
    trunk; from-scratch training on small data learns shapes and small marks far sooner with it (Xiao et
    al., "Early Convolutions Help Transformers See Better", 2021).
    """

    def __init__(self, dim: int, image_size: int, patch_size: list[int], num_frames: int = 2,
                 conv_channels: list[int] | tuple[int, ...] = ()):
        t, p, q = (int(v) for v in patch_size)
        self.num_frames = int(num_frames)
        self.image_size = int(image_size)
        n = (self.num_frames // t) * (self.image_size // p) * (self.image_size // q)
        super().__init__(dim, n)
        self.conv, c_in, factor = early_convs(3, conv_channels)
        if p % factor or q % factor:
            raise ValueError(f"patch size {p}x{q} is not divisible by the conv stem's downsampling {factor}")
        self.patch = nn.Conv3d(c_in, dim, kernel_size=(t, p // factor, q // factor),
                               stride=(t, p // factor, q // factor), bias=False)

    def _early_conv(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, C, T, H', W'), the conv stack applied to each frame."""
        b, c, t, h, w = x.shape
        y = self.conv(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.unsqueeze(2)
        if self.conv is not None:
            x = self._early_conv(x)  # before repeating a still image's frame: computed once
        if x.shape[2] == 1:
            x = x.expand(-1, -1, self.num_frames, -1, -1)
        return self._finish(self.patch(x).flatten(2).transpose(1, 2))


def early_convs(c_in: int, channels: list[int] | tuple[int, ...]) -> tuple[nn.Sequential | None, int, int]:
    """The "early convolution" stack of the small cards: per entry one 3x3 stride-2 convolution + GroupNorm +
    GELU. Returns (the stack or None, its output channels, its downsampling factor)."""
    layers: list[nn.Module] = []
    factor = 1
    for c in channels:
        c = int(c)
        layers += [nn.Conv2d(c_in, c, kernel_size=3, stride=2, padding=1, bias=False),
                   nn.GroupNorm(min(8, c), c), nn.GELU()]
        c_in, factor = c, factor * 2
    return (nn.Sequential(*layers) if layers else None), c_in, factor


class ConvStem(_TokenStem):
    """Single-channel maps (B, 1, H, W) (audio spectrogram, depth, thermal) -> tokens, via a 2-D patch
    convolution (stride may be smaller than the kernel: overlapping audio patches) and a LayerNorm.

    ``conv_channels`` (bindkit's small cards only; empty for ImageBind's layout) puts the early-convolution
    stack of :class:`VisionStem` in front: the patch convolution then cuts ``kernel / 2**n`` cells of the reduced
    map, so each token still covers ``kernel`` x ``kernel`` input cells, now seen through local filters that a
    few thousand examples can learn (a linear 16 x 16 patch of a spectrogram has 256 weights per channel and
    learns little from small data)."""

    def __init__(self, dim: int, input_size: tuple[int, int], kernel_size: int, stride: int | None = None,
                 conv_channels: list[int] | tuple[int, ...] = ()):
        k, s = int(kernel_size), int(stride or kernel_size)
        h, w = _pair(input_size)
        conv, c_in, factor = early_convs(1, conv_channels)
        if conv is not None:
            if k % factor or s % factor:
                raise ValueError(f"kernel {k} / stride {s} are not divisible by the conv stem's downsampling "
                                 f"{factor}")
            k, s = k // factor, s // factor
            for _ in range(factor.bit_length() - 1):  # factor = 2 ** (stride-2 convolutions): each halves, rounding up
                h, w = (h + 1) // 2, (w + 1) // 2
        n = ((h - k) // s + 1) * ((w - k) // s + 1)
        super().__init__(dim, n)
        self.conv = conv
        self.patch = nn.Conv2d(c_in, dim, kernel_size=k, stride=s, bias=False)
        self.norm = nn.LayerNorm(dim, eps=STEM_LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        return self._finish(self.norm(self.patch(x).flatten(2).transpose(1, 2)))


class IMUStem(_TokenStem):
    """IMU (B, C, T) -> (B, 1 + T/k, D): non-overlapping windows of ``k`` steps; each token holds all channels of
    its window, channel-major (C*k values), projected linearly and layer-normed."""

    def __init__(self, dim: int, channels: int, length: int, kernel_size: int):
        self.kernel_size = int(kernel_size)
        super().__init__(dim, int(length) // self.kernel_size)
        self.patch = nn.Linear(int(channels) * self.kernel_size, dim, bias=False)
        self.norm = nn.LayerNorm(dim, eps=STEM_LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        windows = x.unfold(-1, k, k).permute(0, 2, 1, 3)  # (B, T/k, C, k)
        return self._finish(self.norm(self.patch(windows.flatten(2))))


class TextStem(nn.Module):
    """Token ids (B, L) -> token embeddings + learned positions (B, L, D). No class token: the head pools the
    end-of-text token."""

    def __init__(self, dim: int, vocab_size: int, context_length: int):
        super().__init__()
        self.token_embedding = nn.Embedding(int(vocab_size), dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, int(context_length), dim))
        # The causal mask is part of the checkpoint layout (and of its 1,200,786,990-value count); attention uses
        # is_causal, which is the same mask, and loading checks a checkpoint's mask is this one.
        L = int(context_length)
        # Built on the CPU, then moved to the device being built on: triu on the meta device would import
        # torch._dynamo (seconds of every load_model).
        here = torch.empty(0).device
        self.register_buffer("mask", torch.full((L, L), float("-inf"), device="cpu").triu(1).to(here))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.token_embedding(tokens) + self.pos_embed[:, : tokens.shape[1]]

    def packed(self, tokens: torch.Tensor, packing: Packing) -> torch.Tensor:
        """The kept tokens of ``tokens`` (B, L) embedded back to back, (1, T, D) (see ``trim.Packing``)."""
        return (self.token_embedding(packing.pack(tokens)) + self.pos_embed[0, packing.positions])[None]
