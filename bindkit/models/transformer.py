"""The transformer trunk shared by every encoder: pre-norm blocks with scaled_dot_product_attention.

Shapes: tokens are (B, L, D) throughout (batch first) — except for packed text (see ``trim.Packing``): (1, T, D),
the sequences' kept tokens back to back, padded apart for attention only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6  # every LayerNorm of the ImageBind family uses eps=1e-6

if TYPE_CHECKING:
    from .trim import Packing


class Attention(nn.Module):
    """Multi-head self-attention with a fused q/k/v projection.

    ``add_bias_kv`` appends one learned key and one learned value (in projected space) to every sequence,
    as the audio/depth/thermal/IMU encoders of the checkpoint were trained with.
    """

    def __init__(self, dim: int, num_heads: int, add_bias_kv: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.zeros(1, 1, dim))
            self.bias_v = nn.Parameter(torch.zeros(1, 1, dim))
        else:
            self.bias_k = self.bias_v = None

    def forward(self, x: torch.Tensor, causal: bool = False, packing: "Packing | None" = None) -> torch.Tensor:
        """``x`` (B, L, D); with ``packing``, ``x`` is (1, T, D), the sequences' tokens back to back: the
        projections run on the packed tokens and attention on the sequences padded apart (see ``trim.Packing``)."""
        qkv = self.qkv(x)
        if packing is not None:
            qkv = packing.pad(qkv)
        B, L, D = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
        q, k, v = qkv.chunk(3, dim=-1)
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.expand(B, 1, D)], dim=1)
            v = torch.cat([v, self.bias_v.expand(B, 1, D)], dim=1)
        H = self.num_heads

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, H, L, D/H)
            return t.view(B, t.shape[1], H, D // H).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=causal)
        out = out.transpose(1, 2).reshape(B, L, D)
        return self.proj(out if packing is None else packing.unpad(out))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the whole residual branch per sample with probability ``p`` (training only)."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


class Block(nn.Module):
    """x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, add_bias_kv: bool, drop_path: float = 0.0, mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads, add_bias_kv)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = MLP(dim, mlp_ratio * dim)
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor, causal: bool = False, packing: "Packing | None" = None) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x), causal=causal, packing=packing), self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class Trunk(nn.Module):
    """Optional LayerNorm on the input tokens (vision only), then ``num_blocks`` blocks.

    Drop-path rates rise linearly from 0 to ``drop_path`` over depth.
    """

    def __init__(
        self,
        dim: int,
        num_blocks: int,
        num_heads: int,
        *,
        pre_norm: bool = False,
        add_bias_kv: bool = False,
        drop_path: float = 0.0,
        causal: bool = False,
        mlp_ratio: int = 4,
    ):
        super().__init__()
        self.pre_norm = nn.LayerNorm(dim, eps=LN_EPS) if pre_norm else None
        rates = torch.linspace(0, drop_path, num_blocks, device="cpu").tolist() if num_blocks else []
        self.blocks = nn.ModuleList(Block(dim, num_heads, add_bias_kv, r, mlp_ratio) for r in rates)
        self.causal = causal

    def forward(self, x: torch.Tensor, packing: "Packing | None" = None) -> torch.Tensor:
        """Tokens (B, L, D) -> (B, L, D); with ``packing`` (text only), packed tokens (1, T, D) -> (1, T, D)."""
        if packing is not None and not self.causal:
            raise ValueError("packed sequences need causal attention (zero padding would be attended to)")
        if self.pre_norm is not None:
            x = self.pre_norm(x)
        for block in self.blocks:
            x = block(x, causal=self.causal, packing=packing)
        return x

    @property
    def drops_paths(self) -> bool:
        """True while stochastic depth is active (training with drop_path > 0): it drops whole rows, so the
        rows must stay apart (no packing)."""
        return self.training and any(b.drop_path > 0 for b in self.blocks)
