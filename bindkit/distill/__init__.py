"""``bindkit.distill``: a small student that reproduces a teacher's vectors for one modality, in its space.

Call it like a function — ``bindkit.distill("bindkit_toy", "captions.txt", "student", student_card=
"bindkit_toy_text_student")`` — or use the parts: :mod:`.data` (unpaired items from files, manifests, folders),
:mod:`.cache` (the teacher's vectors, computed once, resumable), :mod:`.loss` (1 - cosine + InfoNCE),
:mod:`.student` (the student's card and record), :mod:`.options` (the arguments as a dataclass) and :mod:`.loop`
(:func:`distill`, built on the run shell of :mod:`bindkit.train.run`). The CLI is ``bindkit
distill``; ``bindkit eval STUDENT --distill HELDOUT`` measures it (:func:`bindkit.evaluate.distillation`).

The student's card records the teacher it serves, so ``bindkit.Index.open(teacher_index, model=student)``
accepts it for queries of that modality (and refuses it for adding items): see :mod:`bindkit.index.student`.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .data import DistillError
from .loop import DistillResult, distill, distill_with
from .options import DistillArgumentError, DistillOptions

__all__ = ["DistillArgumentError", "DistillError", "DistillOptions", "DistillResult", "distill", "distill_with"]


class _CallableModule(types.ModuleType):
    """``bindkit.distill`` is both this package and the function (as ``bindkit.train``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> DistillResult:
        return distill(*args, **kwargs)


# Why this stays: as in bindkit.train, the function and the package share one name; importing a submodule
# (``bindkit.distill.data``) rebinds ``bindkit.distill`` to the package, so the package itself must be callable.
sys.modules[__name__].__class__ = _CallableModule
