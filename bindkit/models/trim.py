"""Exact text trimming: run the causal text trunk only as far as the batch's last end-of-text token.

The text encoder pools the end-of-text token, found as the argmax of the token ids (49407 is the vocabulary's
highest id), and its attention is causal: position ``i`` only ever sees positions ``<= i``. Tokens after the last
end-of-text position of a batch can therefore change no output, and cutting them off is exact — no assumption on
what the padding holds. A 12-token caption padded to 77 positions does 77/12 times less work.

The trunk sees a shorter sequence, so the position embedding is sliced to the same length (``TextStem`` adds
``pos_embed[:, :L]``) and attention uses ``is_causal`` on the trimmed ``L x L`` problem, which is the top-left
``L x L`` block of the stored ``mask`` buffer. Nothing about the module changes: the state dict keys and shapes
stay those of the checkpoint.

A batch of unequal lengths is sorted by end-of-text position and cut into buckets, each trimmed to its own last
end-of-text token (outputs come back in input order). Where to cut is chosen exactly by a small dynamic programme
over the distinct lengths: minimise the positions computed, ``sum(rows x bucket length)``, plus
:data:`BUCKET_PENALTY` positions per extra call (what a separate, smaller forward pass costs in efficiency).
"""

from __future__ import annotations

from typing import Callable

import torch

#: Positions a bucket must save to be worth its own forward pass (rows x padded length). Measured on
#: imagebind_huge's text encoder (2-core AVX2, fp32): two buckets 17x12 + 15x20 ran 1.35x slower than one 32x20
#: call, as smaller matmuls run further from the peak — a second call costs about 350 positions' work. So a batch
#: of 32 short captions runs as one trimmed call, while 256 texts of 5..77 tokens still split into several.
BUCKET_PENALTY = 384


def eot_positions(tokens: torch.Tensor) -> torch.Tensor:
    """Index of the pooled (end-of-text) token of every row: the first argmax of the ids, as the encoder pools."""
    return tokens.argmax(dim=-1)


def trimmed_length(tokens: torch.Tensor) -> int:
    """The number of leading positions that can influence any pooled output of ``tokens`` (N, L)."""
    return int(eot_positions(tokens).max()) + 1 if tokens.shape[0] else tokens.shape[-1]


def plan_buckets(lengths: list[int], penalty: int = BUCKET_PENALTY) -> list[int]:
    """Cut points for rows sorted by ``lengths`` (ascending): bucket ``b`` holds sorted rows
    ``cuts[b-1]:cuts[b]`` (``cuts[-1] == len(lengths)``), minimising ``sum(rows x max length) + penalty x buckets``.
    Cuts fall only between distinct lengths, so the programme is O(distinct lengths^2) whatever the batch size."""
    ends: list[int] = []  # sorted-row index after the last row of each distinct length
    for i, n in enumerate(lengths):
        if ends and lengths[ends[-1] - 1] == n:
            ends[-1] = i + 1
        else:
            ends.append(i + 1)
    best = [0.0] + [float("inf")] * len(ends)
    prev = [0] * (len(ends) + 1)
    starts = [0] + ends
    for j in range(1, len(ends) + 1):
        length = lengths[ends[j - 1] - 1]
        for i in range(j):
            cost = best[i] + (ends[j - 1] - starts[i]) * length + penalty
            if cost < best[j]:
                best[j], prev[j] = cost, i
    cuts, j = [], len(ends)
    while j:
        cuts.append(ends[j - 1])
        j = prev[j]
    return cuts[::-1]


def run_trimmed(
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    tokens: torch.Tensor,
    penalty: int | None = BUCKET_PENALTY,
) -> torch.Tensor:
    """``forward(tokens[:, :L], eot)`` on the trimmed batch, in length-sorted buckets where that saves work.

    Args:
        forward: maps trimmed token ids (n, L) and their end-of-text positions (n,) to outputs (n, ...).
        tokens: token ids (N, context_length).
        penalty: see :data:`BUCKET_PENALTY`; None turns bucketing off (one call, trimmed to the batch's longest).

    Returns:
        ``forward``'s outputs for all rows, in input order — equal to running it on the full sequences.
    """
    eot = eot_positions(tokens)
    if penalty is None or tokens.shape[0] < 2 or bool((eot == eot[0]).all()):
        return forward(tokens[:, : int(eot.max()) + 1], eot)
    order = torch.argsort(eot, stable=True)
    lengths = (eot[order] + 1).tolist()
    cuts = plan_buckets(lengths, penalty)
    if len(cuts) == 1:
        return forward(tokens[:, : lengths[-1]], eot)
    out: torch.Tensor | None = None
    start = 0
    for stop in cuts:
        rows = order[start:stop]
        part = forward(tokens[rows, : lengths[stop - 1]], eot[rows])
        if out is None:
            out = part.new_empty((tokens.shape[0],) + tuple(part.shape[1:]))
        out[rows] = part
        start = stop
    assert out is not None
    return out
