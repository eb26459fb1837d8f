"""Exact text trimming: run the causal text trunk only as far as the batch's last end-of-text token.

The text encoder pools the end-of-text token, found as the argmax of the token ids (49407 is the vocabulary's
highest id), and its attention is causal: position ``i`` only ever sees positions ``<= i``. Tokens after the last
end-of-text position of a batch can therefore change no output, and cutting them off is exact — no assumption on
what the padding holds. A 12-token caption padded to 77 positions does 77/12 times less work.

The trunk sees a shorter sequence, so the position embedding is sliced to the same length (``TextStem`` adds
``pos_embed[:, :L]``) and attention uses ``is_causal`` on the trimmed ``L x L`` problem, which is the top-left
``L x L`` block of the stored ``mask`` buffer. Nothing about the module changes: the state dict keys and shapes
stay those of the checkpoint.

Large batches are sorted by end-of-text position and cut into buckets of :data:`BUCKET_ROWS` rows, each trimmed
to its own last end-of-text token; outputs come back in input order.
"""

from __future__ import annotations

from typing import Callable

import torch

#: Batches of more than ``2 * BUCKET_ROWS`` texts of unequal lengths are sorted by length and run in buckets of
#: this many rows (each trimmed on its own). 32 rows x the trimmed length keeps every matmul large.
BUCKET_ROWS = 32


def eot_positions(tokens: torch.Tensor) -> torch.Tensor:
    """Index of the pooled (end-of-text) token of every row: the first argmax of the ids, as the encoder pools."""
    return tokens.argmax(dim=-1)


def trimmed_length(tokens: torch.Tensor) -> int:
    """The number of leading positions that can influence any pooled output of ``tokens`` (N, L)."""
    return int(eot_positions(tokens).max()) + 1 if tokens.shape[0] else tokens.shape[-1]


def run_trimmed(
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    tokens: torch.Tensor,
    bucket_rows: int = BUCKET_ROWS,
) -> torch.Tensor:
    """``forward(tokens[:, :L], eot)`` on the trimmed batch (in length-sorted buckets for large batches).

    Args:
        forward: maps trimmed token ids (n, L) and their end-of-text positions (n,) to outputs (n, ...).
        tokens: token ids (N, context_length).
        bucket_rows: rows per bucket when the batch is large; 0 turns bucketing off.

    Returns:
        ``forward``'s outputs for all rows, in input order — equal to running it on the full sequences.
    """
    eot = eot_positions(tokens)
    n = tokens.shape[0]
    if bucket_rows <= 0 or n <= 2 * bucket_rows or bool((eot == eot[0]).all()):
        return forward(tokens[:, : int(eot.max()) + 1], eot)
    order = torch.argsort(eot, stable=True)
    out: torch.Tensor | None = None
    for start in range(0, n, bucket_rows):
        rows = order[start:start + bucket_rows]
        part_eot = eot[rows]
        part = forward(tokens[rows, : int(part_eot.max()) + 1], part_eot)
        if out is None:
            out = part.new_empty((n,) + tuple(part.shape[1:]))
        out[rows] = part
    assert out is not None
    return out
