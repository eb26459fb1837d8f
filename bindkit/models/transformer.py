"""The transformer trunk shared by every encoder: pre-norm blocks with scaled_dot_product_attention.

Shapes: tokens are (B, L, D) throughout (batch first).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6  # every LayerNorm of the ImageBind family uses eps=1e-6


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

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.expand(B, 1, D)], dim=1)
            v = torch.cat([v, self.bias_v.expand(B, 1, D)], dim=1)
        H = self.num_heads

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, H, L, D/H)
            return t.view(B, t.shape[1], H, D // H).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=causal)
        return self.proj(out.transpose(1, 2).reshape(B, L, D))


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

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x), causal=causal), self.drop_path, self.training)
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
    ):
        super().__init__()
        self.pre_norm = nn.LayerNorm(dim, eps=LN_EPS) if pre_norm else None
        rates = torch.linspace(0, drop_path, num_blocks, device="cpu").tolist() if num_blocks else []
        self.blocks = nn.ModuleList(Block(dim, num_heads, add_bias_kv, r) for r in rates)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_norm is not None:
            x = self.pre_norm(x)
        for block in self.blocks:
            x = block(x, causal=self.causal)
        return x
