"""Evaluation (``bindkit.eval``; ``bindkit.evaluate`` is the same API): zero-shot classification through text prompts and cross-modal retrieval, on manifests.

Scoring is separate from embedding, so it can be checked on constructed vectors::

    zero_shot_scores(embeddings, class_embeddings, labels, class_names)   # accuracy, per-class accuracy
    retrieval_scores(a, b)                                                # R@1/5/10 both ways

and the end-to-end functions take a model and a manifest::

    report = zero_shot(model, "test/audio_material.csv", classes=["metal", "wood", "glass", "rubber"],
                       templates=["a {} object"])
    report = retrieval(model, "test/image_audio.csv")

Manifests are CSV (``.tsv``: tab-separated), JSON Lines (``.jsonl``) or Parquet whose columns are named by
modality (``image``, ``audio``, ``text``...; aliases such as ``vision`` accepted); paths are relative to the
manifest's folder and a ``text`` column holds the text itself. Rows that cannot be used (missing files,
corrupt media, empty text, unknown labels) are skipped and reported, never a crash.

Conventions: class prompts are averaged over templates as CLIP does (embed every template filled with the
class name, L2-normalise each, average, renormalise). Ties go against the model: in retrieval the true match
must score strictly above every other candidate to be ranked first (a collapsed model that maps everything to
one vector gets R@1 ~ 0, not 100%), and in classification ``argmax`` takes the lowest class index.

Modules: :mod:`~bindkit.eval.metrics` (scoring on vectors), :mod:`~bindkit.eval.tasks` (zero-shot and retrieval
on a test file), :mod:`~bindkit.eval.distillation` (a student against its teacher). Test tables are read by
:mod:`bindkit.tables`, as train, distill and index build read theirs.
"""

from __future__ import annotations

from ..errors import EvalError
from .metrics import (
    DEFAULT_KS,
    average_prompts,
    normalize_rows,
    ranks,
    retrieval_scores,
    zero_shot_scores,
)
from .tasks import (
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
from .distillation import (
    distill_scores,
    distillation,
    topk_agreement,
)

__all__ = [
    "DEFAULT_KS", "DEFAULT_TEMPLATES", "EvalError", "average_prompts", "class_embeddings", "distill_scores",
    "distillation", "load_classes", "load_templates", "modality_columns", "normalize_rows", "parse_label", "ranks",
    "read_table", "retrieval", "retrieval_scores", "topk_agreement", "zero_shot", "zero_shot_scores",
]
