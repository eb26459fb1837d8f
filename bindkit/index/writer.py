"""The write side of an open :class:`~bindkit.index.api.Index`: what the add pipeline (:mod:`.ingest`), offline
builds (:mod:`.build`) and merges (:mod:`.merge`) write through, instead of the Index's privates.

``Index`` makes one :class:`IndexWriter` when it opens and hands it out with :func:`bindkit.index.api.writer`.
Every write is :meth:`IndexWriter.commit`: one SQLite transaction, then the in-memory FAISS indexes mirror it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Iterable, Sequence, TYPE_CHECKING

from ..errors import ModelRefusedError, ReadOnlyIndexError
from ..modality import encoder_of
from .cache import Caches
from .store import ItemRow, Store, crash_point
from .student import refuse_add

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel


class IndexWriter:
    """Writes to one open index: items, deletions, failures, metadata, the model hint.

    Attributes:
        path: the index folder.
        store: its SQLite metadata store (read it freely; write only through :meth:`commit`).
        caches: the in-memory FAISS indexes per modality.
        model: the model items are embedded with (None when opened without one).
        read_only: why the index may not be written, or None when it may.
        student: the distillation record when ``model`` is a student of the index's model (it may never add).
        mixed_variants: ``{encoder: (stored variant, model's variant)}`` where the model computes the same weights
            another way (fp32/int8/bf16): adding such vectors is refused.
    """

    def __init__(self, path: Path, store: Store, caches: Caches, lock: threading.RLock, model: "BindModel | None",
                 read_only: str | None, student: dict[str, Any] | None = None,
                 mixed_variants: dict[str, tuple[str, str]] | None = None):
        self.path = path
        self.store = store
        self.caches = caches
        self.lock = lock
        self.model = model
        self.read_only = read_only
        self.student = student
        self.mixed_variants = dict(mixed_variants or {})

    def require_writable(self) -> None:
        """ReadOnlyIndexError when the index was opened read-only (the message says why)."""
        if self.read_only is not None:
            raise ReadOnlyIndexError(f"{self.path} is open read-only: {self.read_only}")

    def refuse_mixed_variants(self, kinds: Iterable[str]) -> None:
        """ModelRefusedError before embedding items of ``kinds`` with a model whose variant (fp32/int8/bf16) differs
        from the one the index's vectors of that encoder came from: one index keeps one kind of vectors.
        StudentModelError for a distilled student of the index's model (it may search, never add)."""
        if self.student is not None:
            raise refuse_add(self.path, self.model, self.student)
        for kind in kinds:
            enc = encoder_of(kind)
            if enc in self.mixed_variants:
                stored, given = self.mixed_variants[enc]
                raise ModelRefusedError(
                    f"index {self.path} holds {stored} vectors of the {enc} encoder; the model given computes "
                    f"{given}, and one index never mixes the two: add with the {stored} model "
                    f"({'no --quantize' if stored == 'fp32' else '--quantize ' + stored}), or build a new index "
                    f"(searching this one with the {given} model is fine)")

    def record_model_hint(self, weights: str) -> None:
        """Remember where the weights came from, so CLI searches can load the same model by default."""
        with self.lock, self.store.transaction():
            info = self.store.get_info("model")
            info["weights"] = os.path.abspath(weights) if os.path.exists(weights) else weights
            self.store.set_info("model", info)

    def commit(self, rows: Sequence[ItemRow], delete: Sequence[int] = (), embedded: int = 0,
               failures: Sequence[tuple[str, str | None, str | None, str]] = (),
               metadata: Sequence[tuple[int, dict[str, Any]]] = (), save: bool = True,
               file_stats: Sequence[tuple[int, int | None, int | None]] = ()) -> list[int]:
        """One transaction: upsert ``rows``, delete ids, count embeddings, record failures, update metadata
        and file stats;
        then mirror it into the in-memory FAISS indexes and (``save``) their files. Returns the ids of ``rows``."""
        with self.lock:
            self.require_writable()
            needed = sum(r.vector.size * 2 + len(r.key) * 2 + len(str(r.metadata)) + 200 for r in rows)
            with self.store.transaction(needed=2 * needed + 64 * len(delete)):
                self.caches.catch_up()
                version = self.store.bump_counter("version")
                crash_point("add:begin")
                ids, replaced = self.store.upsert(rows, version)
                crash_point("add:rows")
                gone = self.store.delete(delete, version)
                if embedded:
                    self.store.bump_counter("embedded", embedded)
                if failures:
                    self.store.record_failures(failures)
                if metadata:
                    self.store.update_metadata([i for i, _ in metadata], [m for _, m in metadata])
                if file_stats:
                    self.store.update_file_stats(file_stats)
            crash_point("add:committed")
            self.caches.mirror(rows, ids, list(replaced) + list(gone), version)
            if save:  # committed: a cache that cannot be written now is repaired from SQLite later
                self.caches.save_quietly(self.caches.due())
            return ids
