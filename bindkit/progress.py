"""Progress bars: one rule for when they show, so every long job behaves the same."""

from __future__ import annotations

import sys
from typing import Any


def progress_bar(show: bool | None = None, **kwargs: Any):
    """A tqdm bar. ``show=None`` shows it only when stderr is a terminal (quiet in pipes, logs and tests);
    True or False force it on or off. ``kwargs`` go to tqdm (``total``, ``desc``, ``unit``...)."""
    from tqdm.auto import tqdm

    return tqdm(disable=not (sys.stderr.isatty() if show is None else show), **kwargs)
