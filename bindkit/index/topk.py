"""Moved to :mod:`bindkit.index.vectors.topk`; kept so old imports work."""

from bindkit.index.vectors.topk import empty_result, merge_topk, topk_exact, topk_of_scores  # noqa: F401  (moved)
