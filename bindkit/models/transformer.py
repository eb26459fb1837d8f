"""The transformer trunk shared by every encoder: pre-norm blocks with scaled_dot_product_attention.

Shapes: tokens are (B, L, D) throughout (batch first) — except for packed text (see ``trim.Packing``): (1, T, D),
the sequences' kept tokens back to back, padded apart for attention only.
"""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING, Sequence

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
        k, v = self._add_bias_kv(k, v)
        out = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v), is_causal=causal)
        if packing is not None:
            return self.proj(packing.unpad(out.transpose(1, 2)).flatten(2))
        return self.proj(out.transpose(1, 2).reshape(B, L, D))

    def forward_pooled(self, x: torch.Tensor, x_sel: torch.Tensor, pool: torch.Tensor, causal: bool,
                       packing: "Packing | None" = None) -> torch.Tensor:
        """Attention output for one query token per sequence only: ``x`` the normed tokens (B, L, D), or packed
        (1, T, D); ``x_sel`` (B, D) the normed tokens to query with, at positions ``pool`` (B,) of their
        sequences. Keys and values come from every token (causal: those at positions ``<= pool``), exactly as
        the full computation gives those rows. Returns (B, D), after the output projection.

        With one query per sequence, the key and value projections need not run on every token. Per head
        ``h``, the score of token ``t`` is ``q_h . (W_k,h x_t + b_k,h)`` = ``(W_k,h^T q_h) . x_t`` plus a term
        that is the same for every ``t`` (the key bias), which softmax removes; and the output is
        ``sum_t a_t (W_v,h x_t + b_v,h)`` = ``W_v,h (sum_t a_t x_t) + b_v,h`` (the weights sum to 1). So the
        query is taken back through the key projection (B x H rows), the scores and the weighted sums are over
        the normed tokens themselves, and the value projection runs on B x H rows: the same function,
        associated differently, for a fraction of the work (no key/value rows for the T tokens, no padded
        copy of them).
        """
        dense = dense_weight(self.qkv)
        if dense is None or self.bias_k is not None:
            return self._forward_pooled_kv(x, x_sel, pool, causal, packing, dense)
        B, D = x_sel.shape
        H = self.num_heads
        d = D // H
        w, b = dense
        q = F.linear(x_sel, w[:D], None if b is None else b[:D]).view(B, H, d) * d ** -0.5
        qk = torch.einsum("bhe,hec->bhc", q, w[D:2 * D].view(H, d, D))  # (B, H, D)
        xp = packing.pad(x) if packing is not None else x  # (B, L, D): zeros after each row's end
        scores = torch.bmm(qk, xp.transpose(1, 2))  # (B, H, L)
        if causal or packing is not None:  # the pooled token sees the positions up to its own
            keep = torch.arange(xp.shape[1], device=x.device)[None, :] <= pool[:, None]
            scores = scores.masked_fill(~keep[:, None, :], float("-inf"))
        ctx = torch.bmm(scores.softmax(dim=-1), xp).transpose(0, 1)  # (H, B, D): sum_t a_t x_t per head
        w_v = w[2 * D:].view(H, d, D).transpose(1, 2)  # (H, D, d)
        out = torch.bmm(ctx, w_v) if b is None else torch.baddbmm(b[2 * D:].view(H, 1, d), ctx, w_v)
        return self.proj(out.transpose(0, 1).reshape(B, D))

    def _forward_pooled_kv(self, x: torch.Tensor, x_sel: torch.Tensor, pool: torch.Tensor, causal: bool,
                           packing: "Packing | None", dense: "tuple[torch.Tensor, torch.Tensor | None] | None",
                           ) -> torch.Tensor:
        """``forward_pooled`` with keys and values projected for every token: for a learned bias key/value, and
        for a q/k/v layer that is no dense linear map (``dense`` None: int8, whose weight is packed), which runs
        whole."""
        D = x.shape[-1]
        if dense is not None:  # the key/value rows of the fused projection for all tokens
            w, b = dense
            kv = F.linear(x, w[D:], None if b is None else b[D:])
            q = F.linear(x_sel, w[:D], None if b is None else b[:D])
        else:
            kv = self.qkv(x)[..., D:]
            q = self.qkv(x_sel)[..., :D]
        if packing is not None:
            kv = packing.pad(kv)
        B = kv.shape[0]
        k, v = kv.chunk(2, dim=-1)
        k, v = self._add_bias_kv(k, v)
        mask = None
        if causal:  # the pooled token sees the positions up to its own (causal layers have no bias key: Trunk)
            mask = torch.arange(k.shape[1], device=x.device)[None, :] <= pool[:, None]  # (B, keys)
        out = F.scaled_dot_product_attention(self._heads(q[:, None]), self._heads(k), self._heads(v),
                                             attn_mask=None if mask is None else mask[:, None, None, :])
        return self.proj(out.reshape(B, D))

    def _add_bias_kv(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, L, D) with the learned bias key/value appended, when the layer has them."""
        if self.bias_k is None:
            return k, v
        B, D = k.shape[0], k.shape[2]
        return torch.cat([k, self.bias_k.expand(B, 1, D)], dim=1), torch.cat([v, self.bias_v.expand(B, 1, D)], dim=1)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, H, L, D/H), a view."""
        B, L, D = t.shape
        return t.view(B, L, self.num_heads, D // self.num_heads).transpose(1, 2)


def dense_weight(layer: nn.Module) -> "tuple[torch.Tensor, torch.Tensor | None] | None":
    """The (weight, bias) that a linear layer applies, for computations that use them directly rather than calling
    the layer: a plain ``nn.Linear``'s own, or what a layer that adds to them reports through a ``dense_weight()``
    method (LoRA: the weight with its unmerged adapters added, differentiably). None for layers that are no dense
    map (int8: the weight is packed), or with forward hooks (which may change the weight or the output), which
    must be called as modules."""
    if layer._forward_pre_hooks or layer._forward_hooks:  # e.g. weight_norm rebuilds the weight in a hook
        return None
    if type(layer) is nn.Linear:
        return layer.weight, layer.bias
    report = getattr(layer, "dense_weight", None)
    return report() if callable(report) else None


def pooled_rows(x: torch.Tensor, pool: torch.Tensor, packing: "Packing | None" = None) -> torch.Tensor:
    """The pooled token of each sequence, (B, D): ``x[b, pool[b]]`` of tokens (B, L, D), or, packed (1, T, D),
    each sequence's last token (``packing.last``)."""
    if packing is not None:
        return x[0, packing.last]
    return x[torch.arange(x.shape[0], device=x.device), pool]


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
        # mlp_ratio 0: an attention-only block (students: a cheap early block before a wide pooled one)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS) if mlp_ratio else None
        self.mlp = MLP(dim, mlp_ratio * dim) if mlp_ratio else None
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor, causal: bool = False, packing: "Packing | None" = None) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x), causal=causal, packing=packing), self.drop_path, self.training)
        if self.mlp is None:
            return x
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)

    def forward_pooled(self, x: torch.Tensor, pool: torch.Tensor, causal: bool = False,
                       packing: "Packing | None" = None) -> torch.Tensor:
        """The block's output at one token per sequence only — (B, D), the rows ``forward`` gives at positions
        ``pool`` (B,) (packed: the packed indices ``packing.last``, for text's end-of-text tokens). Only keys and
        values are computed for the other tokens: the query, output projection, residual and MLP run on B rows
        instead of all tokens (exact: no other output depends on them in the last block)."""
        h = self.norm1(x)
        sel_x, sel_h = pooled_rows(x, pool, packing), pooled_rows(h, pool, packing)
        y = sel_x + drop_path(self.attn.forward_pooled(h, sel_h, pool, causal, packing), self.drop_path,
                              self.training)
        if self.mlp is None:
            return y
        return y + drop_path(self.mlp(self.norm2(y)), self.drop_path, self.training)


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
        mlp_ratio: "int | Sequence[int]" = 4,
    ):
        super().__init__()
        if causal and add_bias_kv:
            # the reference's layers show a bias key to every query; nothing needs it with causal attention (text
            # has none), so it is refused rather than defined here
            raise ValueError("causal attention with a learned bias key/value (add_bias_kv) is not supported")
        self.pre_norm = nn.LayerNorm(dim, eps=LN_EPS) if pre_norm else None
        rates = torch.linspace(0, drop_path, num_blocks, device="cpu").tolist() if num_blocks else []
        ratios = [int(mlp_ratio)] * num_blocks if isinstance(mlp_ratio, (int, float)) else [int(r) for r in mlp_ratio]
        if len(ratios) != num_blocks or min(ratios, default=1) < 0:
            raise ValueError(f"mlp_ratio: one ratio for all blocks or one per block ({num_blocks}), each >= 0 "
                             f"(0: no MLP), got {mlp_ratio!r}")
        self.blocks = nn.ModuleList(Block(dim, num_heads, add_bias_kv, r, m) for r, m in zip(rates, ratios))
        self.causal = causal

    def forward(self, x: torch.Tensor, packing: "Packing | None" = None, blocks: int | None = None) -> torch.Tensor:
        """Tokens (B, L, D) -> (B, L, D); with ``packing`` (text only), packed tokens (1, T, D) -> (1, T, D).
        ``blocks``: run only the first ones (default all)."""
        if packing is not None and not self.causal:
            raise ValueError("packed sequences need causal attention (zero padding would be attended to)")
        if self.pre_norm is not None:
            x = self.pre_norm(x)
        for block in islice(self.blocks, blocks):  # (islice: slicing a ModuleList builds a new one per call)
            x = block(x, causal=self.causal, packing=packing)
        return x

    def pooled(self, x: torch.Tensor, pool: torch.Tensor, packing: "Packing | None" = None) -> torch.Tensor:
        """``forward(x)`` at one token per sequence, (B, D): the token at position ``pool[b]`` of sequence ``b``
        (packed: ``packing.last``, each sequence's last token). The last block computes only what that token's
        output needs (its query, and keys/values of the tokens it attends to): exact, and for short texts
        most of a block's work saved."""
        if not len(self.blocks):
            return pooled_rows(self(x, packing=packing), pool, packing)
        x = self(x, packing=packing, blocks=len(self.blocks) - 1)
        return self.blocks[-1].forward_pooled(x, pool, causal=self.causal, packing=packing)

    @property
    def drops_paths(self) -> bool:
        """True while stochastic depth is active (training with drop_path > 0): it drops whole rows, so the
        rows must stay apart (no packing)."""
        return self.training and any(b.drop_path > 0 for b in self.blocks)
