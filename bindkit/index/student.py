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

import warnings
from pathlib import Path
from typing import Any, Iterable, TYPE_CHECKING

from ..errors import IndexStoreError, StudentModelError
from ..modality import encoder_of, input_kind
from ..models.quantize import split_fingerprint

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel

#: The key of the record in a student card's ``weights`` section.
RECORD_KEY = "distilled"


def served_space(model: "BindModel") -> dict[str, Any] | None:
    """The distillation record of ``model``'s card (see the module docstring), or None for any other model."""
    return card_record(getattr(model, "card", None))


def card_record(card: Any) -> dict[str, Any] | None:
    """The distillation record of a :class:`~bindkit.cards.Card`, or None when it describes no student."""
    weights = getattr(card, "weights", None) or {}
    record = weights.get(RECORD_KEY) if isinstance(weights, dict) else None
    if not isinstance(record, dict) or not record.get("teacher") or not record.get("modality"):
        return None
    return record


def _short(fingerprint: str) -> str:
    """A fingerprint for messages: 16 digits of the base, and a LoRA suffix (``~lora:<digest>``) in full."""
    base, sep, rest = str(fingerprint).partition("~")
    return base[:16] + (sep + rest if sep else "")


def check_same_model(path: Path, stored: dict[str, Any], model: "BindModel") -> dict[str, tuple[str, str]]:
    """Refuse another card or other weights than the index at ``path`` records (``stored``: its ``model`` info);
    for the same weights computed another way (fp32 vs int8, the fingerprint's ``+int8`` suffix) warn and return
    {encoder: (stored variant, model's variant)}: queries are fine (cosine to fp32 ~0.998), adding such vectors
    is refused (see :meth:`bindkit.index.writer.IndexWriter.refuse_mixed_variants`).

    Raises:
        IndexStoreError: another card, dimension or weights (the message names both).
    """
    if stored["card"] != model.card.name or int(stored["dim"]) != int(model.dim):
        raise IndexStoreError(
            f"index {path} was built with model {stored['card']!r} (dim {stored['dim']}), but the model given "
            f"is {model.card.name!r} (dim {model.dim}); vectors of different models never mix: open it with "
            f"bindkit.load_model({stored['card']!r}, ...) or build a new index"
        )
    mixed: dict[str, tuple[str, str]] = {}
    for enc in sorted(set(stored["fingerprints"]) & set(model.modalities)):
        mine, theirs = stored["fingerprints"][enc], model.fingerprint(enc)
        (mine_base, mine_var), (theirs_base, theirs_var) = split_fingerprint(mine), split_fingerprint(theirs)
        if mine_base == theirs_base and mine_var != theirs_var:
            mixed[enc] = (mine_var or "fp32", theirs_var or "fp32")
        elif mine != theirs:
            raise IndexStoreError(
                f"index {path} was built with {stored['card']!r} weights whose {enc} encoder has fingerprint "
                f"{_short(mine)}, but the model given has {_short(theirs)} (other weights of {model.card.name!r}); "
                "open it with the weights it was built with, or build a new index"
            )
    if mixed:
        for stored_var, given in sorted(set(mixed.values())):
            encs = [e for e, v in mixed.items() if v == (stored_var, given)]
            warnings.warn(
                f"index {path} holds {stored_var} vectors of the {', '.join(encs)} encoder(s) and the model "
                f"given computes {given} (same weights): searching works (cosine to fp32 is typically >= 0.998 "
                f"for int8, >= 0.9999 for bf16), but adding such items with this model is refused",
                RuntimeWarning, stacklevel=3)
    return mixed


def check_student(path: Path, stored: dict[str, Any], model: "BindModel") -> dict[str, Any] | None:
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


def refuse_add(path: Path, model: "BindModel", record: dict[str, Any]) -> StudentModelError:
    """The error for adding items to a teacher's index with its student."""
    return StudentModelError(
        f"index {path}: {model.card.name!r} is a student distilled from {record['teacher']!r} and serves "
        f"{record['modality']} queries only; its vectors approximate the teacher's, so adding items with it is "
        f"refused: add them with the teacher ({_teacher_hint(record)}) and search with the student")


def refuse_other_kinds(path: Path, model: "BindModel", record: dict[str, Any], kinds: Iterable[str]) -> None:
    """StudentModelError when a query uses an input kind the student does not serve."""
    served = input_kind(record["modality"])
    other = [k for k in kinds if encoder_of(k) != encoder_of(served)]
    if other:
        raise StudentModelError(
            f"index {path}: {model.card.name!r} is a student distilled from {record['teacher']!r} for {served} "
            f"queries only; {other[0]} queries need the teacher (open the index with {_teacher_hint(record)})")
