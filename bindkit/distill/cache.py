"""The teacher-vector cache: the teacher embeds every item once; training reads the vectors from disk.

::

    CACHE/                      (default OUT/teacher_cache; --cache shares one between runs)
      meta.json                 what the vectors are: teacher card + encoder fingerprint, modality, dimension,
                                loader parameters, number of items and the sha256 of the item list
      chunk_00000.npz ...       ``vectors`` float32 (rows, dim) of items [i*chunk, (i+1)*chunk); rows of items
                                the teacher could not load are NaN and listed in ``failed_rows``/``failed_reasons``

Each chunk is written atomically (a temporary file renamed into place), so an interrupted fill leaves whole
chunks only, and the next call computes just the missing ones. A cache made for another teacher, other weights,
other loader parameters or another item list is refused rather than silently mixed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import CheckpointError
from ..fileio import atomic_path, atomic_write_bytes

META = "meta.json"
FORMAT = "bindkit-teacher-cache"
#: The keys of ``meta.json`` that must match for a cache to be reused.
IDENTITY = ("format", "teacher", "fingerprint", "modality", "dim", "params", "n", "items_sha256", "chunk")


def cache_meta(teacher: Any, kind: str, params: dict[str, Any], n: int, items_sha256: str,
               chunk: int) -> dict[str, Any]:
    """The identity of a cache of ``teacher``'s ``kind`` vectors for an item list."""
    return {"format": FORMAT, "version": 1, "teacher": teacher.card.name, "fingerprint": teacher.fingerprint(kind),
            "modality": kind, "dim": int(teacher.dim), "params": params, "n": int(n), "items_sha256": items_sha256,
            "chunk": int(chunk)}


class TeacherCache:
    """Teacher vectors of an item list, on disk in chunks (see the module docstring). Open with :meth:`open`."""

    def __init__(self, root: Path, meta: dict[str, Any]):
        self.root = root
        self.meta = meta

    @classmethod
    def open(cls, root: str | Path, meta: dict[str, Any]) -> "TeacherCache":
        """The cache at ``root`` (created when absent).

        Raises:
            CheckpointError: ``root`` holds vectors of another teacher, other weights, loader parameters or item
                list (the message names what differs and how to start over).
        """
        root = Path(root)
        found = root / META
        if found.is_file():
            try:
                old = json.loads(found.read_text())
            except (OSError, ValueError) as exc:
                raise CheckpointError(f"teacher cache {found} is unreadable ({exc}); delete {root} to recompute "
                                      "it") from None
            diff = [k for k in IDENTITY if old.get(k) != meta.get(k)]
            if diff:
                shown = "; ".join(f"{k}: {_brief(old.get(k))} there, {_brief(meta.get(k))} now" for k in diff)
                raise CheckpointError(
                    f"teacher cache {root} holds vectors of other data or another teacher ({shown}); delete it "
                    "(or pass another --cache) to compute the teacher vectors of this run")
        else:
            root.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(found, (json.dumps(meta, indent=2) + "\n").encode())
        return cls(root, meta)

    @property
    def chunks(self) -> int:
        """How many chunk files the full cache has."""
        return -(-int(self.meta["n"]) // int(self.meta["chunk"]))

    def chunk_path(self, i: int) -> Path:
        return self.root / f"chunk_{i:05d}.npz"

    def missing(self) -> list[int]:
        """Chunks not written yet."""
        return [i for i in range(self.chunks) if not self.chunk_path(i).is_file()]

    def fill(self, teacher: Any, items: list[Any], *, batch_size: int = 256, progress: bool | None = None,
             log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
        """Embed the items of every missing chunk with ``teacher`` (already on its device, in eval mode) and
        write them. Returns ``{"computed": items embedded now, "reused": items read from earlier runs,
        "seconds": time spent, "items_per_s": teacher speed (loading + encoding)}``."""
        from ..progress import progress_bar

        kind, chunk = self.meta["modality"], int(self.meta["chunk"])
        todo = self.missing()
        n_todo = sum(len(items[i * chunk:(i + 1) * chunk]) for i in todo)
        reused = len(items) - n_todo
        if reused:
            log(f"teacher cache {self.root}: {reused} of {len(items)} vectors already computed (reused)")
        t0 = time.perf_counter()
        with progress_bar(progress, total=n_todo, desc="teacher vectors", unit="item") as bar:
            for i in todo:
                part = items[i * chunk:(i + 1) * chunk]
                emb = teacher.embed(**{kind: part}, batch_size=batch_size, strict=False, show_progress_bar=False)
                failed = sorted((e.index, e.reason) for e in emb.errors)
                with atomic_path(self.chunk_path(i)) as tmp, open(tmp, "wb") as fh:
                    np.savez(fh, vectors=np.asarray(emb[kind], dtype=np.float32),
                             failed_rows=np.asarray([r for r, _ in failed], dtype=np.int64),
                             failed_reasons=np.asarray([why for _, why in failed], dtype=str))
                bar.update(len(part))
        seconds = time.perf_counter() - t0
        return {"computed": n_todo, "reused": reused, "seconds": round(seconds, 3),
                "items_per_s": round(n_todo / seconds, 1) if n_todo and seconds > 0 else None}

    def load(self) -> tuple[np.ndarray, dict[int, str]]:
        """(vectors float32 (n, dim), {row: reason} of the items the teacher could not load; their rows are
        NaN). CheckpointError when a chunk is missing or damaged."""
        chunk, n, dim = int(self.meta["chunk"]), int(self.meta["n"]), int(self.meta["dim"])
        out = np.empty((n, dim), dtype=np.float32)
        failed: dict[int, str] = {}
        for i in range(self.chunks):
            path = self.chunk_path(i)
            try:
                with np.load(path, allow_pickle=False) as z:
                    vec, rows, reasons = z["vectors"], z["failed_rows"], z["failed_reasons"]
            except (OSError, ValueError, KeyError) as exc:
                raise CheckpointError(f"teacher cache chunk {path} is missing or damaged ({exc}); delete it and "
                                      "run again with --resume to recompute it") from None
            want = min(chunk, n - i * chunk)
            if vec.shape != (want, dim):
                raise CheckpointError(f"teacher cache chunk {path} holds {vec.shape}, expected {(want, dim)}; "
                                      "delete it and run again with --resume")
            out[i * chunk:i * chunk + want] = vec
            failed.update({i * chunk + int(r): str(why) for r, why in zip(rows, reasons)})
        return out, failed


def _brief(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 40 else text[:18] + "…" + text[-18:]
