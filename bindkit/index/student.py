"""Distilled students in an index built with their teacher.

``bindkit distill`` trains a small *student* encoder to reproduce a *teacher*'s unit vectors for one modality
and records that in the student's card, under ``weights["distilled"]``::

    {"teacher": "bindkit_toy", "teacher_dim": 128, "modality": "text", "encoder": "text",
     "teacher_fingerprint": "<the teacher's text encoder fingerprint>",
     "teacher_fingerprints": {"text": "...", "vision": "...", ...}, ...}

``Index.open(index_built_with_teacher, model=student)`` accepts such a model for **queries of that modality
only** (:func:`check_student`): the index must have been built with the teacher's card and dimension, and every
teacher fingerprint the index and the student both know must agree (a student of other weights is refused).
Adding items with a student is refused (its vectors approximate the teacher's; one index keeps one model's
vectors), and so are queries of other modalities. This module is the one place that reads the record, so the
index never imports the distillation package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from ..errors import IndexStoreError, StudentModelError
from ..modality import encoder_of, input_kind
from ..models.quantize import split_fingerprint

#: The key of the record in a student card's ``weights`` section.
RECORD_KEY = "distilled"


def served_space(model: Any) -> dict[str, Any] | None:
    """The distillation record of ``model``'s card (see the module docstring), or None for any other model."""
    return card_record(getattr(model, "card", None))


def card_record(card: Any) -> dict[str, Any] | None:
    """The distillation record of a :class:`~bindkit.cards.Card`, or None when it describes no student."""
    weights = getattr(card, "weights", None) or {}
    record = weights.get(RECORD_KEY) if isinstance(weights, dict) else None
    if not isinstance(record, dict) or not record.get("teacher") or not record.get("modality"):
        return None
    return record


def _short(fp: str) -> str:
    base, sep, rest = str(fp).partition("~")
    return base[:16] + (sep + rest if sep else "")


def check_student(path: Path, stored: dict[str, Any], model: Any) -> dict[str, Any] | None:
    """The record of ``model`` when it is a distilled student being used on an index built with its teacher;
    None when it is not a student, or when the index was built with the student itself (then it is an ordinary
    model there).

    Raises:
        IndexStoreError: the index was built with another model than the student's teacher, or with other
            weights of it (fingerprints differ), or the student lacks the encoder it was distilled into.
    """
    record = served_space(model)
    if record is None or stored.get("card") == model.card.name:
        return None
    teacher, kind = str(record["teacher"]), input_kind(record["modality"])
    enc = encoder_of(kind)
    if stored.get("card") != teacher or int(stored.get("dim", -1)) != int(record.get("teacher_dim", model.dim)):
        raise IndexStoreError(
            f"index {path} was built with model {stored.get('card')!r} (dim {stored.get('dim')}), but "
            f"{model.card.name!r} is a student distilled from {teacher!r} (dim {record.get('teacher_dim')}): it can "
            f"query only indexes built with {teacher!r}; open this one with bindkit.load_model({stored.get('card')!r})")
    if enc not in model.modalities:
        raise IndexStoreError(
            f"{model.card.name!r} is a student of {teacher!r} for {kind} queries, but it was loaded without its "
            f"{enc} encoder (it has: {', '.join(model.modalities) or 'none'}); load it with bindkit.load_model(DIR)")
    known = dict(record.get("teacher_fingerprints") or {})
    if record.get("teacher_fingerprint"):
        known[enc] = record["teacher_fingerprint"]
    for e in sorted(set(known) & set(stored.get("fingerprints") or {})):
        theirs, mine = known[e], stored["fingerprints"][e]
        if split_fingerprint(theirs)[0] != split_fingerprint(mine)[0]:
            raise IndexStoreError(
                f"index {path} was built with {teacher!r} weights whose {e} encoder has fingerprint {_short(mine)}, "
                f"but {model.card.name!r} was distilled from {teacher!r} weights with {_short(theirs)} (other "
                f"weights): a student serves only the teacher it learnt from; distil one from these weights")
    return record


def _teacher_hint(record: dict[str, Any]) -> str:
    return f"bindkit.load_model({record.get('teacher_source') or record['teacher']!r})"


def refuse_add(path: Path, model: Any, record: dict[str, Any]) -> StudentModelError:
    """The error for adding items to a teacher's index with its student."""
    return StudentModelError(
        f"index {path}: {model.card.name!r} is a student distilled from {record['teacher']!r} and serves "
        f"{record['modality']} queries only; its vectors approximate the teacher's, so adding items with it is "
        f"refused: add them with the teacher ({_teacher_hint(record)}) and search with the student")


def refuse_other_kinds(path: Path, model: Any, record: dict[str, Any], kinds: Iterable[str]) -> None:
    """StudentModelError when a query uses an input kind the student does not serve."""
    served = input_kind(record["modality"])
    other = [k for k in kinds if encoder_of(k) != encoder_of(served)]
    if other:
        raise StudentModelError(
            f"index {path}: {model.card.name!r} is a student distilled from {record['teacher']!r} for {served} "
            f"queries only; {other[0]} queries need the teacher (open the index with {_teacher_hint(record)})")
