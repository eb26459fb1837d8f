"""Query vectors for ``Index.search``: embed each query input, weight, sum, renormalise (the paper's
"embedding arithmetic" for composing modalities)."""

from __future__ import annotations

from typing import Any, TYPE_CHECKING

import numpy as np

from ..errors import ArgumentError, InputError
from .args import check_weights

from ..modality import QUERY_KINDS  # noqa: E402,F401  (re-exported: Index.search's keyword order)

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel


def _unit_rows(x: np.ndarray, what: str) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    bad = ~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0)
    if bad.any():
        raise InputError(what, "query", f"query {int(np.argmax(bad))} is a zero or non-finite vector; it has no direction")
    return (x / norms).astype(np.float32)


def _as_vectors(vector: Any, dim: int) -> tuple[np.ndarray, bool]:
    arr = np.asarray(vector, dtype=np.float32)
    if arr.ndim not in (1, 2) or arr.shape[-1] != dim:
        raise InputError("vector", "query", f"expected a vector of shape ({dim},) or a batch (q, {dim}), got shape "
                         f"{tuple(arr.shape)}")
    return _unit_rows(arr.reshape(-1, dim), "vector"), arr.ndim == 2


def compose(model: "BindModel", inputs: dict[str, Any], vector: Any, weights: Any, dim: int) -> tuple[np.ndarray, bool]:
    """Query matrix (q, dim) float32 of unit vectors, and whether the call was a batch.

    ``inputs`` maps kind -> one item or a list of items (a batch); ``vector`` raw vectors (D,) or (q, D).
    ``weights`` (see :func:`bindkit.index.args.check_weights`) may name only the inputs given.
    Raises InputError when a query input cannot be embedded (the message names it).
    """
    if not inputs and vector is None:
        raise ArgumentError("search needs a query: text=, image=, audio=, video=, depth=, thermal=, imu= or vector=")
    given = [k for k in QUERY_KINDS if k in inputs] + (["vector"] if vector is not None else [])
    w = check_weights(weights, given)  # checked before anything is embedded
    parts: dict[str, np.ndarray] = {}
    sizes: dict[str, int] = {}
    batched = False
    if inputs:
        lists = {k: (v if isinstance(v, list) else [v]) for k, v in inputs.items()}
        batched = any(isinstance(v, list) for v in inputs.values())
        if len({len(v) for v in lists.values()}) > 1:
            raise ArgumentError(f"batch queries need lists of one length; got {({k: len(v) for k, v in lists.items()})}")
        emb = model.embed(**lists, show_progress_bar=False, strict=False)
        if emb.errors:
            e = emb.errors[0]
            raise InputError(e.item, e.kind, f"query input cannot be embedded: {e.reason}")
        for kind in lists:
            parts[kind] = _unit_rows(np.asarray(emb[kind], dtype=np.float32), kind)
            sizes[kind] = len(lists[kind])
    if vector is not None:
        parts["vector"], vec_batched = _as_vectors(vector, dim)
        sizes["vector"] = len(parts["vector"])
        batched = batched or vec_batched
    if len(set(sizes.values())) > 1:
        raise ArgumentError(f"batch queries need lists of one length; got {sizes}")
    if parts and next(iter(parts.values())).shape[1] != dim:
        raise InputError("query", "query", f"the model gives {next(iter(parts.values())).shape[1]}-d vectors but "
                         f"the index holds {dim}-d ones")
    if len(parts) == 1 and w is None:
        return next(iter(parts.values())), batched
    w = w or {k: 1.0 for k in parts}
    total = sum(w[k] * parts[k] for k in parts)
    return _unit_rows(total, "+".join(parts)), batched
