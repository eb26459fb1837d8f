"""Schedules sized to the data: how many epochs ``bindkit train`` runs when none is given, and how long it waits
for the held-out score to improve before stopping.

Contrastive training from scratch needs a number of *updates*, not of epochs: a few thousand pairs seen ten
times is ~200 steps, far too few for encoders to learn shapes or words, while 100k pairs seen ten times is
plenty. So the default aims at a number of items seen, :data:`TARGET_ITEMS`, within :data:`MIN_EPOCHS` to
:data:`MAX_EPOCHS` passes, and early stopping (:func:`auto_patience`) ends runs that stopped improving; the best
epoch by held-out score is what gets published.
"""

from __future__ import annotations

import math

#: Items seen (pairs of the largest manifest, over all epochs) that the automatic schedule aims at.
TARGET_ITEMS = 120_000
#: Bounds on the automatic number of epochs: at least the old fixed default (10), at most 60 passes.
MIN_EPOCHS, MAX_EPOCHS = 10, 60


def auto_epochs(n_train: int, batch_size: int) -> int:
    """Epochs for ``n_train`` training pairs (the largest manifest): ``TARGET_ITEMS / n_train`` clamped to
    [MIN_EPOCHS, MAX_EPOCHS]. 1k pairs: 60 epochs; 3k: 40; 6k: 20; 12k and more: 10.

    Measured on benchmarks/bench_real_bind.py (2,340 class-level image-audio pairs): binding audio for 26 epochs
    (60k items) gave emergent audio -> text 0.75, for 52 epochs (120k) 0.87; the image-text stage early-stops
    well before its 60 epochs either way."""
    del batch_size  # items seen, not steps, is what the data size sets; kept for a schedule that needs it
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(TARGET_ITEMS / max(1, n_train)))))


def auto_patience(n_epochs: int) -> int:
    """Epochs without a better held-out score after which an automatic schedule stops: a quarter of the run,
    at least 5."""
    return max(5, math.ceil(n_epochs / 4))
