"""Offline builds: scan sources, embed what is new or changed, commit in batches, write a build report.

    report = build(["photos/", "clips.csv"], "my_index", model, batch_size=32)

- Sources are folders (recursive; kind from ``modality=``, else by extension and folder names such as
  ``depth/``, ``thermal/``, ``imu/``), manifests (``.jsonl``, ``.parquet``, or ``.csv`` with a ``path`` or
  ``text`` column; optional ``modality``; other columns become metadata; relative paths are relative to the
  manifest) and single files.
- Resumable and incremental: every batch is one transaction (vectors + metadata + content hashes + the count of
  embedded items), and items whose content hash is stored are skipped, so rerunning a killed or finished build
  embeds only what is missing, new or changed. ``sync=True`` also drops items whose source vanished.
- A bad file never aborts a build: it is skipped, remembered, and listed in ``build_report.json``. So is a bad
  ``.jsonl`` line (``file:line``); a ``.csv`` that is not UTF-8 or a ``.parquet`` Arrow cannot read is refused
  before anything is embedded (see :mod:`bindkit.index.manifests`).
- Symlinked folders are followed; one leading back to a folder already walked (a loop) is not walked again and
  is listed under ``skipped`` in the report, as is a folder that cannot be listed.
- File names that are not valid UTF-8 are indexed too (stored losslessly, see :mod:`bindkit.index.store`).
- Sharding: ``shard=(i, n)`` keeps the items whose id hash is ``i`` modulo ``n`` and writes the partial index
  to ``<out>/part-i-of-n``; under ``torchrun`` (``RANK``/``WORLD_SIZE`` set) the shard is the rank.
  :func:`bindkit.index.merge.merge` joins the parts.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence, TYPE_CHECKING

from ..errors import (InputError, ModalityError, ModelRefusedError, ReadOnlyIndexError, StorageFullError,
                      describe_exc)
from ..fileio import atomic_write_bytes
from ..modality import INPUT_KINDS, input_kind
from ..progress import progress_bar
from .api import Index, writer
from .diskio import is_out_of_space, storage_full
from .ingest import ingest
from .items import Prepared, check_metadata, check_text, prepare_file
from .manifests import Row, manifest_rows
from .store import hash_object, id_for
from .writer import IndexWriter

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel

REPORT_NAME = "build_report.json"
_RESERVED = ("path", "modality", "text")


@dataclass
class Candidate:
    """An item found in the sources. ``kind`` None: inferred from the file when prepared."""

    key: str
    kind: str | None
    path: str | None = None
    text: str | None = None
    metadata: dict[str, Any] | None = None


def shard_from_env() -> tuple[int, int] | None:
    """(rank, world size) when running under torchrun (or another launcher setting RANK/WORLD_SIZE)."""
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if rank is None or world is None:
        return None
    try:
        shard = int(rank), int(world)
    except ValueError:
        raise ValueError(f"RANK={rank!r} and WORLD_SIZE={world!r} must be integers (as torchrun sets them)") from None
    if shard[1] <= 1:
        return None
    if not 0 <= shard[0] < shard[1]:
        raise ValueError(f"RANK={rank} is outside 0..WORLD_SIZE-1 (WORLD_SIZE={world})")
    return shard


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"expected a shard as I/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"shard {text}: need 0 <= I < N")
    return i, n


def part_dir(out: str | os.PathLike, shard: tuple[int, int]) -> Path:
    return Path(out) / f"part-{shard[0]}-of-{shard[1]}"


def _text_candidate(text: str, metadata: dict[str, Any] | None) -> Candidate:
    # the same key Index.add gives a text, so a text added both ways is one item
    return Candidate(key=f"text:{hash_object(text)}", kind="text", text=text, metadata=metadata)


def _absent(v: Any) -> bool:
    return v is None or v == "" or (isinstance(v, float) and math.isnan(v))


def _from_manifest(path: Path, rows: Iterator[Row], modality: str | None,
                   problems: list[dict[str, Any]]) -> Iterator[Candidate]:
    """Candidates of a manifest's rows; a bad row is recorded in ``problems`` (``file:line``) and skipped."""
    for where, row, problem in rows:
        kind = modality
        try:
            if row is None:
                raise InputError(where, "manifest", problem or "unreadable row")
            kind = row.get("modality") if not _absent(row.get("modality")) else modality
            meta = check_metadata({k: v for k, v in row.items() if k not in _RESERVED and not _absent(v)}, where)
            if not _absent(row.get("path")):
                given = row["path"]
                # bytes: a file name stored losslessly (e.g. the path_bytes column `bindkit embed` writes)
                name = os.fsdecode(given) if isinstance(given, bytes) else str(given)
                full = os.path.abspath(path.parent / name)
                yield Candidate(key=full, kind=input_kind(kind) if kind else None, path=full, metadata=meta)
            elif not _absent(row.get("text")):
                check_text(str(row["text"]), where)
                yield _text_candidate(str(row["text"]), meta)
            else:
                raise InputError(where, "manifest", "row has neither a 'path' nor a 'text' value")
        except (InputError, ModalityError) as exc:
            problems.append({"item": where, "modality": kind if kind in INPUT_KINDS else "manifest",
                             "reason": getattr(exc, "reason", str(exc))})


def _walk(top: Path, excluded: str | None, skipped: list[dict[str, str]]) -> Iterator[str]:
    """Absolute paths of the files under ``top`` (sorted, hidden names left out). Symlinked folders are followed
    once: one that leads back to a folder already walked (a loop, or a second way into the same folder) is
    listed in ``skipped`` with the reason, as is a folder that cannot be listed."""
    seen: dict[tuple[int, int], str] = {}

    def on_error(exc: OSError) -> None:
        skipped.append({"item": str(exc.filename or top), "reason": f"cannot list it ({exc.strerror or exc})"})

    for root, dirs, files in os.walk(top, followlinks=True, onerror=on_error):
        root_abs = os.path.abspath(root)
        try:
            st = os.stat(root_abs)
        except OSError as exc:
            skipped.append({"item": root_abs, "reason": f"cannot read it ({exc.strerror or exc})"})
            dirs[:] = []
            continue
        ident = (st.st_dev, st.st_ino)
        if ident in seen:
            skipped.append({"item": root_abs, "reason": f"the same folder as {seen[ident]} (through a symlink), "
                            "which is already indexed; not walked again"})
            dirs[:] = []
            continue
        seen[ident] = root_abs
        # real folders before symlinked ones, so a folder reachable both ways is indexed under its real path
        dirs[:] = sorted((d for d in dirs if not d.startswith(".") and os.path.join(root_abs, d) != excluded),
                         key=lambda d: (os.path.islink(os.path.join(root_abs, d)), d))
        for name in sorted(files):
            if not name.startswith("."):
                yield os.path.join(root_abs, name)


def walk_folder(top: str | os.PathLike, skipped: list[dict[str, str]] | None = None) -> Iterator[str]:
    """Absolute paths of the files under the folder ``top``, walked as :func:`build` walks a source folder
    (recursively, sorted, hidden names left out, each folder once however many symlinks lead to it). Folders
    not walked are appended to ``skipped`` as {item, reason}. ``bindkit embed FOLDER`` uses it too."""
    return _walk(Path(top), None, [] if skipped is None else skipped)


def check_modality(modality: str | None) -> str | None:
    """The canonical kind of a ``modality=`` option (None: infer per file). An empty string is an error
    rather than "infer", so that ``--modality "$KIND"`` with an unset variable does not go unnoticed."""
    if modality is None:
        return None
    if not str(modality).strip():
        raise ModalityError("the modality is empty; give one of image, video, text, audio, depth, thermal, imu, "
                            "or leave the option out to infer each file's modality")
    return input_kind(modality)


def _missing(src: str | os.PathLike) -> InputError:
    return InputError(str(src), "source", "does not exist; pass folders, manifests (.csv/.jsonl/.parquet) or files")


def check_sources(sources: Sequence[str | os.PathLike], modality: str | None = None) -> None:
    """Fail fast, before a model is loaded: the ``modality`` option, that every source exists, and that no
    manifest must be refused (unreadable Parquet, non-UTF-8 CSV). Bad rows are left for the build to report."""
    check_modality(modality)
    for src in sources:
        p = Path(src)
        if not p.exists():
            raise _missing(src)
        if p.is_file():
            manifest_rows(p)


def scan(sources: Sequence[str | os.PathLike], modality: str | None = None, exclude: Path | None = None,
         skipped: list[dict[str, str]] | None = None
         ) -> tuple[list[Candidate], list[str], list[dict[str, Any]]]:
    """Candidates from folders/manifests/files (sorted, de-duplicated), the files ignored (unknown kind) and
    the manifest rows that could not be read (item, modality, reason). Folders not walked (symlink loops,
    unreadable folders) are appended to ``skipped`` as {item, reason}. Raises InputError for a missing source
    or a manifest that must be refused (see :mod:`bindkit.index.manifests`), before anything is embedded."""
    from ..inputs import kind_from_path

    kind = check_modality(modality)
    found: dict[str, Candidate] = {}
    ignored: list[str] = []
    problems: list[dict[str, Any]] = []
    skipped = [] if skipped is None else skipped
    excluded = os.path.abspath(exclude) if exclude is not None else None

    def add_file(full: str) -> None:
        k = kind or kind_from_path(full, folder_hints=True)
        if k is None:
            ignored.append(full)
        else:
            found.setdefault(full, Candidate(key=full, kind=input_kind(k), path=full))

    for src in sources:
        p = Path(src)
        if not p.exists():
            raise _missing(src)
        if p.is_dir():
            for full in _walk(p, excluded, skipped):
                add_file(full)
            continue
        rows = manifest_rows(p)
        if rows is None:
            add_file(os.path.abspath(p))
        else:
            for c in _from_manifest(p, rows, kind, problems):
                found[c.key] = c
    return sorted(found.values(), key=lambda c: c.key), ignored, problems


def _prepare(c: Candidate, stored: tuple | None, checksum: bool = False) -> Prepared:
    if c.path is None:
        return Prepared(kind="text", key=c.key, content_hash=c.key.split(":", 1)[1], payload=c.text, text=c.text,
                        metadata=c.metadata)
    try:
        st = os.stat(c.path)
    except OSError as exc:
        raise InputError(c.path, _kind_guess(c), f"cannot read it ({exc.strerror or exc})") from exc
    known = None
    if (not checksum and stored and stored[3] == st.st_size and stored[4] == st.st_mtime_ns
            and c.kind in (None, stored[1])):
        known = stored[2]  # same size and mtime as when it was embedded: trust the stored hash, skip the read
    return prepare_file(c.path, c.kind, c.metadata, stat=st, content_hash=known)


def build(sources: Sequence[str | os.PathLike], out: str | os.PathLike, model: "BindModel", *, modality: str | None = None,
          batch_size: int = 32, workers: int | None = None, shard: tuple[int, int] | None = None, sync: bool = False,
          checksum: bool = False, optimize: bool = True, index_key: str | None = None, memory_budget_bytes: int | None = None,
          recall_target: float = 0.95, progress: bool | None = None, weights: str | None = None) -> dict[str, Any]:
    """Build or update the index at ``out`` from ``sources``; returns the build report (also written to
    ``<index>/build_report.json``). With ``shard=(i, n)`` the partial index goes to ``<out>/part-i-of-n`` and is
    left exact (Flat) for :func:`merge` to optimise. ``weights`` (a path) is recorded so later searches can
    load the same model without repeating it. A file whose size and mtime are those recorded is taken as
    unchanged without being read; ``checksum=True`` reads and hashes every file instead (like ``rsync
    --checksum``), so a file rewritten with the same size and its mtime restored is embedded again."""
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
    started = time.time()
    target = part_dir(out, shard) if shard else Path(out)
    skipped: list[dict[str, str]] = []
    candidates, ignored, problems = scan(sources, modality, exclude=Path(out), skipped=skipped)
    total_found = len(candidates)
    if shard:
        candidates = [c for c in candidates if id_for(c.key) % shard[1] == shard[0]]
    index = Index.create(target, model, exist_ok=True)
    try:
        index_writer = writer(index)
        if index_writer.read_only is not None:  # refused before any item is read, not item by item
            raise ReadOnlyIndexError(f"cannot update the index {target}: it is read-only ({index_writer.read_only}); "
                                     "build into a folder this process can write (--out NEW_FOLDER)")
        if weights:
            index_writer.record_model_hint(weights)
        removed = 0
        if sync:
            wanted = {c.key for c in candidates}
            vanished = [i for k, i in index_writer.store.keys().items() if k not in wanted]
            if vanished:
                index_writer.commit([], delete=vanished, save=False)
                removed = len(vanished)
        # One kind per batch keeps model batches full.
        candidates.sort(key=lambda c: (c.kind or "", c.key))
        counts = {"found": total_found, "selected": len(candidates), "new": 0, "changed": 0, "unchanged": 0,
                  "embedded": 0, "failed": 0, "removed": removed, "ignored": len(ignored), "skipped": len(skipped)}
        failures: list[dict[str, Any]] = list(problems)
        bar = progress_bar(progress, total=len(candidates), unit="item", desc="indexing", dynamic_ncols=True,
                           smoothing=0.1)
        for start in range(0, len(candidates), batch_size):
            chunk = candidates[start:start + batch_size]
            stored = index_writer.store.lookup([c.key for c in chunk])
            prepared: list[Prepared | None] = []
            bad: list[tuple[str, str | None, str | None, str]] = []
            for c in chunk:
                try:
                    prepared.append(_prepare(c, stored.get(c.key), checksum))
                except Exception as exc:  # noqa: BLE001 - one bad item is recorded, never the end of the build
                    prepared.append(None)
                    kind = getattr(exc, "modality", None)
                    bad.append((c.key, kind if kind and kind != "unknown" else _kind_guess(c), c.path,
                                getattr(exc, "reason", None) or describe_exc(exc)))
            try:
                result = ingest(index_writer, prepared, strict=False, batch_size=batch_size, save=False, workers=workers,
                                failed=bad)
            except (StorageFullError, ModelRefusedError, ReadOnlyIndexError):  # item by item cannot help: stop
                raise
            except Exception as exc:  # a loader bug must not end a long build: retry item by item
                result = _one_by_one(index_writer, prepared, bad, batch_size, workers, exc)
            for p, item_id in zip(prepared, result):
                if p is not None and item_id is not None and p.key not in stored:
                    counts["new"] += 1
            counts["embedded"] += result.embedded
            counts["unchanged"] += result.unchanged
            for key, kind, uri, reason in bad:
                failures.append({"item": uri or key, "modality": kind or "unknown", "reason": reason})
            for e in result.errors:
                p = prepared[e.index] if e.index < len(prepared) else None
                failures.append({"item": (p.uri or p.key) if p else str(e.item),
                                 "modality": e.kind or (p.kind if p else None) or "unknown", "reason": e.reason})
            bar.update(len(chunk))
            bar.set_postfix(embedded=counts["embedded"], failed=len(failures), refresh=False)
        bar.close()
        counts["changed"] = counts["embedded"] - counts["new"]
        counts["failed"] = len(failures)
        index.flush()
        if optimize and not shard and (counts["embedded"] or removed or index_key):
            index.optimize(memory_budget_bytes=memory_budget_bytes, index_key=index_key,
                           recall_target=recall_target, progress=bool(progress))
        elapsed = time.time() - started
        report = {
            "index": str(target),
            "sources": [str(s) for s in sources],
            "shard": f"{shard[0]}/{shard[1]}" if shard else None,
            "counts": counts,
            "items_in_index": len(index),
            "per_modality": index_writer.store.modality_counts(),
            "embedded_total": index_writer.store.embedded_total(),
            "elapsed_s": round(elapsed, 3),
            "items_per_s": round(counts["embedded"] / elapsed, 3) if elapsed > 0 else None,
            "failures": failures,
            "ignored": ignored[:1000],
            "skipped": skipped[:1000],
        }
        data = (json.dumps(report, indent=2) + "\n").encode()
        try:
            atomic_write_bytes(target / REPORT_NAME, data)
        except OSError as exc:
            if is_out_of_space(exc):
                raise storage_full(target / REPORT_NAME, len(data), exc, "the build report (every item is "
                                   "stored; only the report is missing)") from None
            raise
        return report
    finally:
        index.close()


def _kind_guess(c: Candidate) -> str:
    """The modality a failed candidate was meant to be: given, else from its name, else ``unknown``."""
    if c.kind:
        return c.kind
    from ..inputs import kind_from_path

    return (kind_from_path(c.path) if c.path else None) or "unknown"


def nothing_indexed(report: dict[str, Any]) -> bool:
    """True when a build added nothing: no item embedded or found unchanged, none removed, although the sources
    held items (or held none at all). A shard that was given no items is not a failure."""
    c = report["counts"]
    if c["embedded"] or c["unchanged"] or c["removed"]:
        return False
    return c["selected"] > 0 or c["found"] == 0


def _one_by_one(index_writer: IndexWriter, prepared: list[Prepared | None], bad: list, batch_size: int, workers: int | None,
                exc: Exception):
    """Fallback when a whole batch raised: ingest each item alone so only the culprit fails."""
    from .ingest import AddResult

    warnings.warn(f"a batch failed ({describe_exc(exc)}); retrying its items one by one", RuntimeWarning)
    if bad:
        index_writer.commit([], failures=bad, save=False)
    ids, errors, embedded, unchanged = [], [], 0, 0
    for p in prepared:
        try:
            r = ingest(index_writer, [p], strict=False, batch_size=batch_size, save=False, workers=workers)
        except Exception as item_exc:
            bad.append((p.key, p.kind, p.uri, describe_exc(item_exc)))
            index_writer.commit([], failures=[bad[-1]], save=False)
            ids.append(None)
            continue
        ids.append(r[0])
        errors += r.errors
        embedded += r.embedded
        unchanged += r.unchanged
    return AddResult(ids, errors, embedded, unchanged)
