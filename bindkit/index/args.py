"""Checks of ``Index`` method arguments: a wrong type or value gets a bindkit error that is also the natural
builtin (``ArgumentTypeError`` is a TypeError, ``ArgumentError`` a ValueError), never a numpy/SQLite/FAISS one."""

from __future__ import annotations

import numbers
import operator
from typing import Any, Iterable, Sequence, TYPE_CHECKING

import numpy as np

from ..errors import ArgumentError, ArgumentTypeError

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel

#: Ids are 63-bit: ``blake2b(key) & (2**63 - 1)`` (see ``bindkit.index.store``).
MAX_ID = (1 << 63) - 1


def _whole(value: Any) -> int | None:
    """``value`` as an int when it is an integer (Python or numpy, not bool), else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def check_k(k: Any) -> int:
    """``k`` of a search: a whole number >= 1 (huge values are fine: they are clamped to the candidates)."""
    value = _whole(k)
    if value is None:
        raise ArgumentTypeError(f"k must be a whole number >= 1 (hits per modality), got {type(k).__name__} {k!r}")
    if value < 1:
        raise ArgumentError(f"k must be at least 1 (hits per modality), got {value}")
    return value


def check_ids(ids: Any, what: str = "ids") -> list[int]:
    """One id or an iterable of ids (ints or an integer numpy array) as a list of ints in [0, 2**63)."""
    if isinstance(ids, np.ndarray):
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise ArgumentTypeError(f"{what} must be integers, got an array of {ids.dtype}")
        items: Iterable[Any] = ids.ravel().tolist()
    elif isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        items = [ids]
    else:
        items = list(ids)
    out = []
    for item in items:
        value = _whole(item)
        if value is None:
            raise ArgumentTypeError(f"{what} must be whole numbers (item ids), got {type(item).__name__} {item!r}")
        if not 0 <= value <= MAX_ID:
            raise ArgumentError(f"{what} are integers in [0, 2**63), got {value}; no item has such an id")
        out.append(value)
    return out


def check_modalities(modalities: Any) -> list[str] | None:
    """``modalities`` of a search: None, a kind, a comma-separated string of kinds or a sequence of kinds."""
    if modalities is None:
        return None
    if isinstance(modalities, str):
        return [m.strip() for m in modalities.split(",") if m.strip()]
    if not isinstance(modalities, (list, tuple, set, frozenset)) or not all(isinstance(m, str) for m in modalities):
        raise ArgumentTypeError("modalities must be a kind name, a comma-separated string or a list of kind names "
                                f"(e.g. ['image', 'audio']), got {type(modalities).__name__} {modalities!r}")
    return list(modalities)


def check_model(model: "BindModel", call: str) -> None:
    """``model`` must be a bindkit model (what ``bindkit.load_model``/``build_model`` return)."""
    needed = ("card", "dim", "modalities", "fingerprint", "embed")
    if model is None or not all(hasattr(model, a) for a in needed):
        raise ArgumentTypeError(f"{call} needs model=, a bindkit model (bindkit.load_model(card, ...) or "
                                f"bindkit.build_model(card)), got {type(model).__name__}")


def check_weights(weights: Any, given: Sequence[str]) -> dict[str, float] | None:
    """Search ``weights``: a dict naming only query inputs that were given, or one number per given input
    (in the order text, image, audio, video, depth, thermal, imu, vector). Returns {kind: weight} or None."""
    if weights is None:
        return None
    if isinstance(weights, dict):
        unknown = [k for k in weights if k not in given]
        if unknown:
            raise ArgumentError(f"weights name {unknown} but the query inputs given are {list(given)}; "
                                "weight only inputs you pass")
        pairs = [(g, weights.get(g, 1.0)) for g in given]
    elif isinstance(weights, (str, bytes)) or not isinstance(weights, Iterable):
        raise ArgumentTypeError(f"weights must be a dict {{kind: number}} or a list of numbers, got "
                                f"{type(weights).__name__} {weights!r}")
    else:
        listed = list(weights)
        if len(listed) != len(given):
            raise ArgumentError(f"expected {len(given)} weights (for {', '.join(given)}), got {len(listed)}")
        pairs = list(zip(given, listed))
    out = {}
    for kind, w in pairs:
        if isinstance(w, (bool, np.bool_)) or not isinstance(w, numbers.Real):
            raise ArgumentTypeError(f"the weight of {kind} must be a number, got {type(w).__name__} {w!r}")
        if not np.isfinite(float(w)):
            raise ArgumentError(f"the weight of {kind} must be finite, got {w}")
        out[kind] = float(w)
    return out
