"""``bindkit.evaluate``: the evaluation API, kept under its first name. The code lives in the package
:mod:`bindkit.eval` (``metrics``, ``tasks``, ``distillation``); every name is re-exported here unchanged."""

from __future__ import annotations

# moved: EvalError to bindkit.errors, the rest to the package bindkit.eval
from .errors import EvalError
from .eval.metrics import (
    DEFAULT_KS,
    average_prompts,
    normalize_rows,
    ranks,
    retrieval_scores,
    zero_shot_scores,
)
from .eval.tasks import (
    DEFAULT_TEMPLATES,
    class_embeddings,
    load_classes,
    load_templates,
    modality_columns,
    parse_label,
    read_table,
    retrieval,
    zero_shot,
)
from .eval.distillation import (
    distill_scores,
    distillation,
    topk_agreement,
)

__all__ = [
    "DEFAULT_KS", "DEFAULT_TEMPLATES", "EvalError", "average_prompts", "class_embeddings", "distill_scores",
    "distillation", "load_classes", "load_templates", "modality_columns", "normalize_rows", "parse_label", "ranks",
    "read_table", "retrieval", "retrieval_scores", "topk_agreement", "zero_shot", "zero_shot_scores",
]
