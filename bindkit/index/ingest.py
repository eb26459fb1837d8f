"""The add pipeline: decide which prepared items need embedding (new or changed content), embed them with
the model, and hand the rows to one transaction. Shared by ``Index.add`` and offline builds."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from ..errors import InputError
from .items import Prepared
from .store import ItemRow

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel

if TYPE_CHECKING:  # pragma: no cover
    from .writer import IndexWriter


class AddResult(list):
    """The ids of the added items in input order (None where an item failed), with ``.errors`` (ItemError
    records: kind, index, item, reason), ``.embedded`` (items embedded now) and ``.unchanged`` (items already
    stored with the same content, not re-embedded)."""

    def __init__(self, ids: Iterable[int | None], errors: list, embedded: int, unchanged: int):
        super().__init__(ids)
        self.errors = errors
        self.embedded = embedded
        self.unchanged = unchanged


def item_error(kind: str, index: int, item: object, reason: str):
    """An ``ItemError`` record (the type ``model.embed`` reports failures with)."""
    from ..inputs.batch import ItemError

    return ItemError(kind, index, item, reason)


def _embed(model: "BindModel", prepared: Sequence[Prepared | None], todo: dict[str, list[int]], batch_size: int,
           show_progress_bar: bool | None, workers: int | None) -> tuple[dict[int, np.ndarray], list]:
    kwargs: dict[str, Any] = {k: [prepared[p].payload for p in pos] for k, pos in todo.items()}
    if workers is not None:
        kwargs["num_workers"] = workers
    emb = model.embed(**kwargs, batch_size=batch_size, show_progress_bar=show_progress_bar, strict=False)
    failed = {(e.kind, e.index): e.reason for e in emb.errors}
    vectors: dict[int, np.ndarray] = {}
    errors = []
    for kind, positions in todo.items():
        for row, pos in enumerate(positions):
            reason = failed.get((kind, row))
            vec = emb[kind][row]
            if reason is None and not np.all(np.isfinite(vec)):
                reason = "the model returned a non-finite embedding"
            if reason is None:
                vectors[pos] = vec
            else:
                errors.append(item_error(kind, pos, prepared[pos].uri or f"#{pos}", reason))
    return vectors, errors


def ingest(writer: "IndexWriter", prepared: Sequence[Prepared | None], *, strict: bool, batch_size: int = 32,
           show_progress_bar: bool | None = False, save: bool = True, workers: int | None = None,
           failed: Sequence[tuple[str, str | None, str | None, str]] = ()) -> AddResult:
    """Embed what is new or changed among ``prepared`` (None entries are items that already failed; ``failed``
    lists them as (key, kind, uri, reason) to record) and commit it, with metadata updates of unchanged items
    and the failures, in one transaction through ``writer`` (:func:`bindkit.index.api.writer`)."""
    stored = writer.store.lookup([p.key for p in prepared if p is not None])
    todo: dict[str, list[int]] = defaultdict(list)
    first_of: dict[str, int] = {}  # key -> first position needing an embedding (duplicates embed once)
    dup_of: dict[int, int] = {}
    unchanged: list[tuple[int, dict[str, Any]]] = []
    touched: list[tuple[int, int | None, int | None]] = []  # same content, new size/mtime (copied, touched)
    ids: list[int | None] = [None] * len(prepared)
    n_unchanged = 0
    for pos, p in enumerate(prepared):
        if p is None:
            continue
        old = stored.get(p.key)
        if old and old[1] == p.kind and old[2] == p.content_hash:
            ids[pos] = old[0]
            n_unchanged += 1
            if p.metadata is not None:
                unchanged.append((old[0], p.metadata))
            if p.file_size is not None and (old[3], old[4]) != (p.file_size, p.file_mtime_ns):
                touched.append((old[0], p.file_size, p.file_mtime_ns))
        elif p.key in first_of:
            dup_of[pos] = first_of[p.key]
        else:
            first_of[p.key] = pos
            todo[p.kind].append(pos)
    if todo:
        writer.refuse_mixed_variants(todo)  # before any embedding: one index never mixes fp32 and int8 vectors
    vectors, errors = _embed(writer.model, prepared, todo, batch_size, show_progress_bar, workers) if todo else ({}, [])
    if errors and strict:
        e = errors[0]
        raise InputError(e.item, e.kind, f"{e.reason} ({len(errors)} of {len(prepared)} items failed; nothing "
                         "was added; pass strict=False to add the others)")
    rows: list[ItemRow] = []
    for pos, vec in vectors.items():
        p = prepared[pos]
        meta = p.metadata
        if meta is None:  # a changed file re-added without metadata keeps what it had
            old = stored.get(p.key)
            meta = writer.store.rows([old[0]])[old[0]]["metadata"] if old else {}
        rows.append(ItemRow(key=p.key, modality=p.kind, content_hash=p.content_hash, vector=vec, uri=p.uri,
                            metadata=meta, text=p.text, file_size=p.file_size, file_mtime_ns=p.file_mtime_ns))
    failures = list(failed) + [(prepared[e.index].key, e.kind, prepared[e.index].uri, e.reason) for e in errors]
    if rows or unchanged or failures or touched:
        new_ids = writer.commit(rows, embedded=len(vectors), failures=failures, metadata=unchanged, save=save,
                                file_stats=touched)
        for pos, item_id in zip(vectors, new_ids):
            ids[pos] = item_id
    for pos, first in dup_of.items():
        ids[pos] = ids[first]
    return AddResult(ids, errors, embedded=len(vectors), unchanged=n_unchanged)
