"""``bindkit.Index``: a directory holding one FAISS index per modality plus a SQLite metadata store.

    index = bindkit.Index.create("my_index", model=model)
    index.add(["dog.jpg", "bark.wav"], metadata={"source": "samples"})
    index.add(["a dog barking"], modality="text")
    hits = index.search(text="a dog", k=5, modalities=["image", "audio"], where={"source": "samples"})
    hits["image"][0].uri, hits["image"][0].score

SQLite is the source of truth (one transaction per add/remove); the FAISS files are a cache repaired on open,
so killing a process at any point leaves an index that opens with the state before or after the interrupted
call. See ``bindkit/index/store.py``.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TYPE_CHECKING, TypeVar

import numpy as np

from ..errors import (ArgumentError, CardError, CheckpointError, IndexClosedError, IndexStoreError, InputError,
                      ReadOnlyIndexError)
from ..fileio import disk_usage
from ..modality import encoder_of, input_kind
from .args import check_ids, check_k, check_model, check_modalities
from .cache import Caches
from .diskio import can_write, is_out_of_space, storage_full
from .ingest import AddResult, ingest, item_error
from .items import Prepared, check_metadata, prepare
from .query import QUERY_KINDS, compose
from .store import DB_FILES, DB_NAME, FORMAT_VERSION, ItemRow, Store
from .student import check_same_model, check_student, refuse_add, refuse_other_kinds
from .where import compile_where
from .writer import IndexWriter

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel


@dataclass(frozen=True)
class Hit:
    """One search result. ``score`` is the inner product of unit vectors (cosine similarity, in [-1, 1]);
    ``text`` holds the text of items added as strings (None otherwise)."""

    id: int
    score: float
    modality: str
    uri: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    text: str | None = None


#: One query's hits: {result modality: [Hit, ...] best first}.
Hits = dict[str, list[Hit]]

_F = TypeVar("_F", bound=Callable[..., Any])


def _open_only(method: _F) -> _F:
    """Make ``method`` raise IndexClosedError ("index is closed") once the index was closed, instead of
    whatever SQLite or FAISS would say — also in a thread that was inside the method when another thread
    called :meth:`Index.close` (SQLite's "Cannot operate on a closed database" becomes IndexClosedError)."""

    @functools.wraps(method)
    def wrapper(self: "Index", *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise IndexClosedError(f"index {self.path} is closed; open it again with bindkit.Index.open(path)")
        try:
            return method(self, *args, **kwargs)
        except IndexClosedError:
            raise
        except Exception:
            if self._closed:  # closed by another thread while this call ran
                raise IndexClosedError(f"index {self.path} was closed by another thread during "
                                       f"{method.__name__}(); open it again with bindkit.Index.open(path)") from None
            raise

    return wrapper  # type: ignore[return-value]


def _identity(model: "BindModel") -> dict[str, Any]:
    return {"card": model.card.name, "dim": int(model.dim),
            "fingerprints": {enc: model.fingerprint(enc) for enc in model.modalities}}


class Index:
    """A searchable collection of embeddings from one model. Create with :meth:`create`, open with :meth:`open`."""

    def __init__(self, path: Path, store: Store, model: "BindModel | None", mmap: bool, read_only: str | None = None, *,
                 student: dict[str, Any] | None = None, mixed_variants: dict[str, tuple[str, str]] | None = None):
        self.path = path
        self.model = model
        self._store = store
        self._mmap = mmap
        self._lock = threading.RLock()
        self._dim = int(store.get_info("dim"))
        self._caches = Caches(path, store, self._dim, mmap, read_only=read_only is not None)
        self._closed = False
        # student: a distilled student of the index's model (see bindkit.index.student); mixed_variants: see
        # bindkit.index.student.check_same_model
        self._writer = IndexWriter(path, store, self._caches, self._lock, model, read_only, student, mixed_variants)
        self._recorded_model: Any | None = None  # opened without a model: the one it records, once a query needs it

    # ---- life cycle -----------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, model: "BindModel", *, exist_ok: bool = False) -> "Index":
        """Create an empty index at ``path`` (a directory) for vectors of ``model``.

        Raises:
            IndexStoreError: ``path`` already holds an index (unless ``exist_ok``, which opens it instead and
                checks the model), or is a non-empty directory that is not an index.
        """
        check_model(model, "Index.create")
        path = Path(path)
        if (path / DB_NAME).is_file():
            store = Store(path)
            complete = store.get_info("model") is not None
            store.close()
            if complete:
                if not exist_ok:
                    raise IndexStoreError(f"{path} already holds an index; open it with bindkit.Index.open(path, "
                                          "model=...) or pass exist_ok=True")
                return cls.open(path, model=model)
        elif path.is_dir() and any(path.iterdir()):
            raise IndexStoreError(f"{path} is a non-empty directory that is not an index; choose a new path")
        store = Store(path, create=True)
        with store.transaction():
            store.set_info("format_version", FORMAT_VERSION)
            store.set_info("dim", int(model.dim))
            store.set_info("model", _identity(model))
            store.set_info("indexes", {})
        index = cls(path, store, model, mmap=False)
        index._caches.synced = store.version()
        index._caches.write_manifest()
        return index

    @classmethod
    def open(cls, path: str | os.PathLike, model: "BindModel | None" = None, mmap: bool = False,
             read_only: bool | None = None) -> "Index":
        """Open an index. Without ``model``, the first search by text or media loads the model the index
        records, as ``bindkit search`` does: its card and the weights recorded at build time (or the card's own,
        found locally; nothing is downloaded), only the encoders the queries need, once (a later query of another
        kind adds its encoder). Search by ``vector=``, ``remove``, ``compact`` and ``stats`` need no model;
        ``add`` needs ``model``. A student distilled from the index's model (``bindkit distill``) may be given: it
        searches with queries of the modality it was distilled for, and adding items with it raises
        StudentModelError.

        Args:
            mmap: memory-map the FAISS files read-only (large indexes); such an index cannot be changed.
            read_only: open without writing anything to the folder (search, get, stats work; writes raise
                ReadOnlyIndexError). None (default): read-only when ``mmap`` or when this process cannot write
                the folder or its ``meta.sqlite`` (a read-only mount or copy). A stale FAISS cache is then
                rebuilt in memory (with a warning) instead of being saved.

        Raises:
            IndexStoreError: not an index, an unknown format, or ``model`` differs from the one it was built
                with (the message names both).
            ReadOnlyIndexError: ``read_only=False`` on an index this process cannot write.

        Example::

            with bindkit.Index.open("my_index") as index:       # no model: loaded by the first text query
                hits = index.search(text="a dog", k=5)
        """
        if model is not None:
            check_model(model, "Index.open")
        path = Path(path)
        why = cls._read_only_reason(path, mmap, read_only)
        store = Store(path, read_only=why is not None)
        why = why or store.read_only_reason
        stored = store.get_info("model")
        if stored is None:
            store.close()
            raise IndexStoreError(f"{path} holds an unfinished index (its creation was interrupted); delete it "
                                  "and create it again")
        version = store.get_info("format_version", 0)
        if version > FORMAT_VERSION:
            store.close()
            raise IndexStoreError(f"{path} was written by a newer bindkit (format {version}, this one reads "
                                  f"{FORMAT_VERSION}); upgrade bindkit to open it")
        mixed: dict[str, tuple[str, str]] = {}
        student = None
        if model is not None:
            try:  # a student of the index's model (bindkit distill) may query it: see bindkit.index.student
                student = check_student(path, stored, model)
                mixed = check_same_model(path, stored, model) if student is None else {}
            except IndexStoreError:
                store.close()
                raise
            extra = {e for e in model.modalities if e not in stored["fingerprints"]}
            # an encoder the index had not seen: its vectors belong to this model now (never to a student)
            if extra and why is None and student is None:
                with store.transaction():
                    stored["fingerprints"].update({e: model.fingerprint(e) for e in extra})
                    store.set_info("model", stored)
        index = cls(path, store, model, mmap=mmap, read_only=why, student=student, mixed_variants=mixed)
        with index._lock:
            index._caches.load()
        return index

    @staticmethod
    def _read_only_reason(path: Path, mmap: bool, read_only: bool | None) -> str | None:
        """Why an index opened so must not be written, or None when it may be."""
        if (path / DB_NAME).is_file() and not can_write(path, *DB_FILES):
            if read_only is False:
                raise ReadOnlyIndexError(f"{path} cannot be opened for writing: this process may not write the "
                                         f"folder or its {DB_NAME} (read-only mount or permissions); fix the "
                                         "permissions, work on a writable copy, or open it with read_only=True")
            return (f"this process may not write the folder or its {DB_NAME} (read-only mount or permissions); "
                    "fix the permissions or work on a writable copy")
        if read_only:
            return "it was opened with read_only=True; reopen it without to change it"
        if mmap:
            return "it was opened with mmap=True; reopen it without mmap to change it"
        return None

    _check_model = staticmethod(check_same_model)  # (moved to bindkit.index.student)

    def _refuse_mixed_variants(self, kinds: Iterable[str]) -> None:
        """See :meth:`IndexWriter.refuse_mixed_variants`."""
        self._writer.refuse_mixed_variants(kinds)

    @_open_only
    def _record_model_hint(self, weights: str) -> None:
        """See :meth:`IndexWriter.record_model_hint`."""
        self._writer.record_model_hint(weights)

    def close(self) -> None:
        """Write pending FAISS caches and close the SQLite connection."""
        with self._lock:
            if self._closed:
                return
            try:
                with self._lock:
                    self._caches.save_quietly()  # after the commits: a failure here loses nothing
            finally:
                self._closed = True
                self._recorded_model = None
                self._store.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (every other method then raises IndexClosedError)."""
        return self._closed

    @_open_only
    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @_open_only
    def __len__(self) -> int:
        with self._lock:
            return self._store.count()

    def __repr__(self) -> str:
        if self._closed:
            return f"<Index {str(self.path)!r} (closed)>"
        return f"Index({str(self.path)!r}, items={len(self)}, modalities={self.modalities})"

    @property
    def dim(self) -> int:
        """Dimension of the stored vectors."""
        return self._dim

    @property
    @_open_only
    def modalities(self) -> list[str]:
        """Input kinds that have items in this index."""
        with self._lock:
            return sorted(self._store.modality_counts())

    # ---- writes -----------------------------------------------------------------------------------------------
    def _require_writable(self) -> None:
        self._writer.require_writable()

    def _commit(self, rows: Sequence[ItemRow], delete: Sequence[int] = (), embedded: int = 0,
                failures: Sequence[tuple[str, str | None, str | None, str]] = (),
                metadata: Sequence[tuple[int, dict[str, Any]]] = (), save: bool = True,
                file_stats: Sequence[tuple[int, int | None, int | None]] = ()) -> list[int]:
        """See :meth:`IndexWriter.commit`."""
        return self._writer.commit(rows, delete, embedded, failures, metadata, save, file_stats)

    @_open_only
    def flush(self) -> None:
        """Write every FAISS cache changed since it was last written (``close`` does this too). Writes save
        small caches at once and big ones every so often; either way nothing is lost, since SQLite holds it."""
        with self._lock:
            self._caches.save()

    @_open_only
    def add(self, items: Any, modality: str | Sequence[str] | None = None,
            metadata: dict[str, Any] | Sequence[dict[str, Any] | None] | None = None, *, strict: bool = True,
            batch_size: int = 32, show_progress_bar: bool | None = None) -> AddResult:
        """Embed and store items; returns their ids (stable: an item keeps its id when re-added or changed).

        Args:
            items: a list of paths (``str``/``Path``), texts (with ``modality="text"``) or in-memory items
                (bytes, arrays, PIL images, tensors, with a modality); anything but a list is one item.
            modality: one kind for all items, one per item, or None to infer files' kinds from extension and
                folder names (``depth/``, ``thermal/``, ``imu/``).
            metadata: one dict for all items, one per item, or None (keeps stored metadata of re-added items).
            strict: raise InputError when any item fails (and add nothing); False adds the others and lists
                failures in ``result.errors``.

        Files already stored with the same content are not embedded again (their metadata is updated when
        given). The whole call is one transaction: a crash leaves the index as before or after it.
        """
        with self._lock:
            if self.model is None:
                raise IndexStoreError(f"{self.path} was opened without a model; pass model= to Index.open to add items")
            if self._writer.student is not None:
                raise refuse_add(self.path, self.model, self._writer.student)
            self._require_writable()
            if not isinstance(items, list):  # one item (a tuple may be one item: (waveform, sample_rate))
                items = [items]
            n = len(items)
            kinds = list(modality) if isinstance(modality, (list, tuple)) else [modality] * n
            metas = list(metadata) if isinstance(metadata, (list, tuple)) else [metadata] * n
            if len(kinds) != n or len(metas) != n:
                raise ArgumentError(f"got {n} items but {len(kinds)} modalities and {len(metas)} metadata entries")
            prepared: list[Prepared | None] = []
            errors = []
            for pos, (item, kind, meta) in enumerate(zip(items, kinds, metas)):
                try:
                    prepared.append(prepare(item, kind, check_metadata(meta, f"#{pos}"), pos))
                except InputError as exc:
                    if strict:
                        raise
                    prepared.append(None)
                    errors.append(item_error(exc.modality, pos, exc.item, exc.reason))
            result = ingest(self._writer, prepared, strict=strict, batch_size=batch_size, show_progress_bar=show_progress_bar)
            result.errors[:0] = errors
            result.errors.sort(key=lambda e: e.index)
            return result

    @_open_only
    def select(self, ids: int | Iterable[int] | None = None, *, where: dict[str, Any] | None = None) -> list[int]:
        """The ids of stored items that :meth:`remove` with the same arguments would delete (ascending); a dry
        run that changes nothing."""
        with self._lock:
            self._require_writable()
            if ids is None and where is None:
                raise ArgumentError("remove() and select() need ids=... or where=...; refusing to remove everything")
            chosen = None if ids is None else np.asarray(check_ids(ids), dtype=np.int64)
            if where is not None:
                matching = self._store.ids(where=compile_where(where))
                chosen = matching if chosen is None else np.intersect1d(chosen, matching)
            return sorted(self._store.rows(np.unique(chosen).tolist()))

    @_open_only
    def remove(self, ids: int | Iterable[int] | None = None, *, where: dict[str, Any] | None = None) -> int:
        """Delete items by id and/or metadata filter (both given: the ids that also match). Returns how many
        were removed. Other items keep their ids. :meth:`select` tells which ids would go, removing nothing.

        Raises:
            ArgumentTypeError / ArgumentError: an id that is not a whole number / not in [0, 2**63).
            FilterError: ``where`` does not follow the grammar of ``bindkit.index.where``.
        """
        with self._lock:
            present = self.select(ids, where=where)
            if not present:
                return 0
            self._writer.commit([], delete=present)
            return len(present)

    # ---- reads ------------------------------------------------------------------------------------------------
    @_open_only
    def search(self, text: Any = None, image: Any = None, audio: Any = None, video: Any = None, depth: Any = None,
               thermal: Any = None, imu: Any = None, *, vector: Any = None,
               weights: dict[str, float] | Sequence[float] | None = None, k: int = 10,
               modalities: str | Sequence[str] | None = None, where: dict[str, Any] | None = None
               ) -> Hits | list[Hits]:
        """Top-``k`` hits per result modality for a query built from one or several inputs.

        Each query input is embedded to a unit vector; several inputs are combined by embedding arithmetic
        (weighted sum of unit vectors, renormalised). ``vector`` takes raw query vectors (D,) or (q, D).
        A *list* of inputs (or a 2-D ``vector``) is a batch of queries: all lists must have the same length,
        query i combines the i-th element of each.

        Args:
            weights: per input kind (``{"text": 0.3, "image": 1.0}``) or a list in the order text, image, audio,
                video, depth, thermal, imu, vector (of the inputs given); default 1 each.
            k: hits per modality, a whole number >= 1 (fewer only when fewer items match; any larger ``k`` is
                clamped to the number of candidates, so ``k=10**20`` costs no more than "all of them").
            modalities: result kinds to search (default: every kind the index holds).
            where: metadata filter applied *before* ranking (see ``bindkit.index.where``).

        Returns:
            ``{modality: [Hit, ...]}`` best first, or a list of those for a batch of queries.

        Raises:
            ArgumentTypeError / ArgumentError: a ``k``, ``modalities`` or ``weights`` of the wrong type / value
                (e.g. a weight for an input that was not given).
        """
        k = check_k(k)
        modalities = check_modalities(modalities)
        inputs = {kind: value for kind, value in zip(QUERY_KINDS, (text, image, audio, video, depth, thermal, imu))
                  if value is not None}
        if inputs and self._writer.student is not None:
            refuse_other_kinds(self.path, self.model, self._writer.student, inputs)
        model = self._query_model(inputs) if inputs else self.model
        queries, batched = compose(model, inputs, vector, weights, self._dim)
        with self._lock:
            self._caches.catch_up()
            kinds = self._result_kinds(modalities)
            flt = compile_where(where) if where is not None else None
            results: list[Hits] = [{} for _ in range(len(queries))]
            for kind in kinds:
                vi = self._caches.vi.get(kind)
                allowed = self._store.ids(kind, flt) if flt is not None else None
                if vi is None or not len(vi) or (allowed is not None and not len(allowed)):
                    for r in results:
                        r[kind] = []
                    continue
                # never more hits than candidates: a huge k must not size the result arrays
                kk = min(k, len(vi) if allowed is None else len(allowed))
                scores, found = vi.search(queries, kk, allowed_ids=allowed)
                rows = self._store.rows(np.unique(found[found >= 0]).tolist())
                for r, srow, irow in zip(results, scores, found):
                    r[kind] = [Hit(int(i), float(s), kind, rows[int(i)]["uri"], rows[int(i)]["metadata"],
                                   rows[int(i)]["text"]) for s, i in zip(srow, irow) if i >= 0 and int(i) in rows]
        return results if batched else results[0]

    def _query_model(self, inputs: dict[str, Any]) -> Any:
        """The model that embeds query ``inputs``: the one given to :meth:`open`/:meth:`create`, else the one
        the index records, loaded on first need with the encoders asked for so far (see :meth:`open`)."""
        if self.model is not None:
            return self.model
        needed = {encoder_of(kind) for kind in inputs}
        with self._lock:
            loaded = self._recorded_model
            if loaded is None or not needed <= set(loaded.modalities):
                have = set(loaded.modalities) if loaded is not None else set()
                self._recorded_model = self._load_recorded_model(sorted(needed | have), sorted(inputs))
            return self._recorded_model

    def _load_recorded_model(self, encoders: list[str], kinds: list[str]) -> Any:
        """The index's own model (card + recorded weights, as ``bindkit search`` resolves it), with ``encoders``;
        refused like any other model when its weights are not the ones the index was built with."""
        from ..cards import model_dir
        from ..factory import auto_device, load_model

        stored = self._store.get_info("model")
        card, weights = stored["card"], stored.get("weights")
        spec = weights if weights and model_dir(weights) is not None else card  # a model directory is its own card
        try:
            model = load_model(spec, weights=None if spec is weights else weights, modalities=encoders,
                               device=str(auto_device()), download=False)
        except (CardError, CheckpointError) as exc:  # WeightsNotFoundError is a CheckpointError
            where = f" (weights {weights})" if weights else ""
            raise type(exc)(
                f"{self.path} was opened without a model, so the {'/'.join(kinds)} query needs the model the index "
                f"records, {card!r}{where}, which could not be loaded: {exc} (or pass "
                f"model=bindkit.load_model(...) to Index.open, or search by vector=)") from None
        check_same_model(self.path, stored, model)  # other weights than the index's are refused, naming both
        return model

    def _result_kinds(self, modalities: str | Sequence[str] | None) -> list[str]:
        modalities = check_modalities(modalities)
        if modalities is None:
            return sorted(self._store.modality_counts())
        return list(dict.fromkeys(input_kind(m) for m in modalities))

    @_open_only
    def get(self, ids: int | Iterable[int]) -> list[Hit | None]:
        """Stored records (as hits with score nan) for ids, in order; None for unknown ids."""
        with self._lock:
            wanted = check_ids(ids)
            rows = self._store.rows(wanted)
            return [Hit(i, float("nan"), rows[i]["modality"], rows[i]["uri"], rows[i]["metadata"], rows[i]["text"])
                    if i in rows else None for i in wanted]

    @_open_only
    def vectors(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """All stored (ids int64 (n,), vectors float32 (n, dim)) of one modality, ordered by id."""
        with self._lock:
            parts = list(self._store.vectors(input_kind(modality)))
        if not parts:
            return np.zeros(0, np.int64), np.zeros((0, self._dim), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    # ---- maintenance ------------------------------------------------------------------------------------------
    @_open_only
    def stats(self) -> dict[str, Any]:
        """Counts per modality, index types/parameters/recall, model identity, sizes on disk (bytes)."""
        with self._lock:
            self._caches.catch_up()
            counts = self._store.modality_counts()
            disk = disk_usage(self.path, skip_suffixes=("-shm",))
            return {
                "path": str(self.path),
                "count": sum(counts.values()),
                "dim": self._dim,
                "model": self._store.get_info("model"),
                "modalities": {k: {**self._caches.vi[k].info(), "count": counts.get(k, 0)}
                               for k in sorted(self._caches.vi) if k in counts or len(self._caches.vi[k])},
                "embedded_total": self._store.embedded_total(),
                "failures": len(self._store.failures()),
                "version": self._store.version(),
                "disk_bytes": disk,
            }

    @_open_only
    def optimize(self, modalities: str | Sequence[str] | None = None, *, memory_budget_bytes: int | None = None,
                 index_key: str | None = None, recall_target: float = 0.95, progress: bool = True) -> dict[str, Any]:
        """Choose (or force, ``index_key``) each modality's FAISS index type for its size and a memory budget,
        train it and tune its search parameters to ``recall_target``; returns {kind: info}."""
        with self._lock:
            self._require_writable()
            self._caches.catch_up()
            infos = {}
            for kind in self._result_kinds(modalities):
                vi = self._caches.vi.get(kind)
                if vi is None or not len(vi):
                    continue
                infos[kind] = vi.optimize(memory_budget_bytes=memory_budget_bytes, index_key=index_key,
                                          recall_target=recall_target, progress=progress)
                self._caches.dirty.add(kind)
            with self._store.transaction():
                chosen = self._store.get_info("indexes", {}) or {}
                chosen.update({k: {"key": self._caches.vi[k].info().get("key")} for k in infos})
                self._store.set_info("indexes", chosen)
            self._caches.save()
            return infos

    @_open_only
    def compact(self) -> dict[str, Any]:
        """Rebuild every FAISS cache from SQLite (dropping tombstones, retraining IVF/PQ), prune the change log,
        drop caches of emptied modalities and VACUUM SQLite. Ids do not change. Returns :meth:`stats`."""
        with self._lock:
            self._require_writable()
            counts = self._store.modality_counts()
            with self._store.transaction():
                self._caches.catch_up()
                version = self._store.version()
                fresh = {kind: self._caches.rebuild(kind) for kind in counts}
            for kind in set(self._caches.vi) - set(counts):
                shutil.rmtree(self.path / kind, ignore_errors=True)
            self._caches.vi = fresh
            self._caches.synced = version
            self._caches.dirty.clear()
            self._caches.save(fresh)
            with self._store.transaction():  # every cache now reflects `version`: older changes are history
                self._store.prune_changes(version)
            try:
                self._store.conn.execute("VACUUM")
                # In WAL mode VACUUM writes the whole new database to the WAL: fold it in now, or the size reported
                # below counts the database twice (what `du` sees only once this process has closed the index).
                self._store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # the rebuilt caches are saved: only the space is not reclaimed
                if is_out_of_space(exc):
                    raise storage_full(self._store.path, self._store.path.stat().st_size, exc, "VACUUM") from None
                raise
            return self.stats()



def writer(index: Index) -> IndexWriter:
    """The write interface of an open ``index`` (:class:`~bindkit.index.writer.IndexWriter`), for bindkit's own
    pipelines (offline builds, merges); applications write with :meth:`Index.add` and :meth:`Index.remove`.

    Raises:
        IndexClosedError: ``index`` was closed.
    """
    if index.closed:
        raise IndexClosedError(f"index {index.path} is closed; open it again with bindkit.Index.open(path)")
    return index._writer
