"""Exact text trimming: run the causal text trunk only on the positions that can change an output.

The text encoder pools the end-of-text token, found as the argmax of the token ids (49407 is the vocabulary's
highest id), and its attention is causal: position ``i`` only ever sees positions ``<= i``. Tokens after a
row's end-of-text position can therefore change none of its outputs, and leaving them out is exact — no
assumption on what the padding holds. A 12-token caption padded to 77 positions does 77/12 times less work.

Two levels:

* **Trimming**: the batch is cut to its last end-of-text position ``L`` (the trunk sees ``(B, L)``; the position
  embedding is sliced to ``L`` and attention is ``is_causal`` on the ``L x L`` problem, the top-left block of the
  stored ``mask`` buffer).
* **Packing**, when the rows' lengths differ: each row keeps only its own ``n_i`` positions and the rows are
  laid back to back, ``(1, sum n_i, D)``. Everything but attention acts on each token alone (embeddings,
  LayerNorms, the q/k/v and output projections, the MLP — nearly all the FLOPs), so it runs on the packed tokens
  as one large matmul per layer: the work is ``sum n_i`` positions, not ``B x max n_i``, with no extra calls.
  Attention alone scatters q/k/v back into ``(B, L)`` (zeros after each row's end) for the same causal kernel
  as the trimmed batch, and gathers its output. Unlike cutting a batch into length buckets (several smaller
  forward passes, each further from the matmul peak), packing keeps one call, so it is a gain at every batch
  size and for every mix of lengths.

Nothing about the module changes: the state dict keys and shapes stay those of the checkpoint.
"""

from __future__ import annotations

from typing import Callable

import torch


def eot_positions(tokens: torch.Tensor) -> torch.Tensor:
    """Index of the pooled (end-of-text) token of every row: the first argmax of the ids, as the encoder pools."""
    return tokens.argmax(dim=-1)


def trimmed_length(tokens: torch.Tensor) -> int:
    """The number of leading positions that can influence any pooled output of ``tokens`` (N, L)."""
    return int(eot_positions(tokens).max()) + 1 if tokens.shape[0] else tokens.shape[-1]


class Packing:
    """Where the kept positions of a batch of ``lengths`` (B,) lie, packed back to back and padded apart.

    ``pad`` maps packed rows (1, T, C) to the padded layout (B, L, C) (zeros after each row's end) and ``unpad``
    maps back; both are index copies, so gradients flow through them.
    """

    def __init__(self, lengths: torch.Tensor):
        self.batch, self.length = int(lengths.shape[0]), int(lengths.max())
        pos = torch.arange(self.length, device=lengths.device)
        keep = pos[None, :] < lengths[:, None]  # (B, L)
        #: Flat index into (B * L) of each packed token, and its position in its own sequence.
        self.slots = keep.flatten().nonzero().squeeze(1)
        self.positions = pos.expand(self.batch, -1)[keep]
        #: Packed index of each row's last kept token (its end of text).
        self.last = torch.cumsum(lengths, 0) - 1
        #: Row of each packed token in the padded layout (its column is ``positions``).
        self.rows = self.slots // self.length

    @property
    def tokens(self) -> int:
        """T, the number of packed positions."""
        return int(self.slots.shape[0])

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, ...) -> the kept entries (T, ...)."""
        return x.flatten(0, 1).index_select(0, self.slots)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Packed (1, T, C) -> padded (B, L, C)."""
        out = x.new_zeros(self.batch * self.length, x.shape[-1])
        out.index_copy_(0, self.slots, x[0])  # in place: the out-of-place form copies the zeros once more
        return out.view(self.batch, self.length, -1)

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """Padded (B, L, ...) -> packed (1, T, ...): one gather, also from a strided view such as attention's
        per-head output transposed to (B, L, H, d)."""
        return x[self.rows, self.positions][None]


def run_trimmed(
    forward: Callable[[torch.Tensor, torch.Tensor, "Packing | None"], torch.Tensor],
    tokens: torch.Tensor,
    pack: bool = True,
) -> torch.Tensor:
    """``forward(tokens[:, :L], eot, packing)`` on the batch trimmed to its last end-of-text position ``L``.

    Args:
        forward: maps trimmed token ids (N, L), their end-of-text positions (N,) and a :class:`Packing` (None:
            run the padded batch) to outputs (N, ...), in row order.
        tokens: token ids (N, context_length).
        pack: pack the rows when their lengths differ; False runs the trimmed, padded batch.

    Returns:
        ``forward``'s outputs for all rows, in input order — equal to running it on the full sequences.
    """
    eot = eot_positions(tokens)
    trimmed = tokens[:, : int(eot.max()) + 1] if tokens.shape[0] else tokens
    if not pack or tokens.shape[0] < 2 or bool((eot == eot[0]).all()):
        return forward(trimmed, eot, None)
    return forward(trimmed, eot, Packing(eot + 1))
