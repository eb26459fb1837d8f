"""fp16 copies of one modality's vectors, by id, kept beside a lossy (PQ/SQ) FAISS index -- or alone.

A compressed index ranks candidates approximately; re-scoring its top candidates against these copies makes the final
top k exact (up to fp16 rounding, about 1e-3 on a unit vector's inner product). The copies also serve exact search over
a small allowed-id set, and, for the ``"exact:raw-f16"`` index kind, exact search over everything
(:meth:`RawStore.scan_topk`, a brute-force scan block by block). On disk: ``raw.f16`` (rows x dim float16, C order,
no header) and ``raw_ids.npy`` (the int64 id of each row). They are opened memory-mapped, so RAM holds only the pages
a query touches; rows added after opening stay in RAM until the next save.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Iterator

import numpy as np

from bindkit.errors import IndexStoreError
from bindkit.index.vectors.topk import empty_result, merge_topk, topk_of_scores

RAW_FILE = "raw.f16"
IDS_FILE = "raw_ids.npy"
SCAN_BYTES = 16 * 2**20  # fp16 bytes per block of a full scan: enough rows for BLAS, few MiB of RAM


class RawStore:
    """Vectors (float16) addressed by 64-bit id; removal marks rows dead until the next save compacts them."""

    def __init__(self, dim: int, base: np.ndarray | None = None, base_ids: np.ndarray | None = None):
        self.dim = int(dim)
        # base may be a read-only memmap (a loaded file, or the caller's own fp16 array): never written to.
        self._base = base if base is not None else np.zeros((0, self.dim), np.float16)
        self._row_ids = (np.array(base_ids, dtype=np.int64) if base_ids is not None
                         else np.zeros(0, np.int64))  # one per row (base then extra); -1 = removed
        self._extra = np.zeros((0, self.dim), np.float16)
        self._pending: list[np.ndarray] = []
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None
        # descriptor of the file holding base, when loaded from one: scans read through it, and it keeps the file
        # readable after a newer save deletes this version's folder (as the memory map does)
        self._fd: int | None = None

    @classmethod
    def from_array(cls, ids: np.ndarray, vectors: np.ndarray) -> "RawStore":
        """Wrap ``vectors`` (n, dim); an fp16 array (e.g. a memmap) is used without a copy."""
        base = vectors if vectors.dtype == np.float16 else _to_f16(vectors)
        return cls(vectors.shape[1], base, ids)

    def __len__(self) -> int:
        return int((self._row_ids >= 0).sum())

    @property
    def nbytes_ram(self) -> int:
        """Bytes held in RAM (not counting the memory-mapped base)."""
        mapped = isinstance(self._base, np.memmap)
        return (0 if mapped else self._base.nbytes) + self._extra.nbytes + sum(p.nbytes for p in self._pending) \
            + self._row_ids.nbytes * 3

    def ids(self) -> np.ndarray:
        """int64 ids of the live rows, sorted ascending."""
        self.rows(np.zeros(0, np.int64))
        return self._lookup[0]

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Append rows; ``ids`` must not be present already (the caller removes them first)."""
        self._pending.append(_to_f16(vectors))
        self._row_ids = np.concatenate([self._row_ids, np.asarray(ids, np.int64)])
        self._lookup = None

    def remove(self, ids: np.ndarray) -> int:
        rows = self.rows(ids)
        rows = rows[rows >= 0]
        self._row_ids[rows] = -1
        self._lookup = None
        return int(rows.size)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Row number of each id, -1 where absent."""
        if self._lookup is None:
            live = np.flatnonzero(self._row_ids >= 0)
            order = np.argsort(self._row_ids[live], kind="stable")
            self._lookup = (self._row_ids[live][order], live[order])
        keys, rows = self._lookup
        ids = np.asarray(ids, np.int64)
        if keys.size == 0:
            return np.full(ids.shape, -1, np.int64)
        pos = np.minimum(np.searchsorted(keys, ids), keys.size - 1)
        return np.where(keys[pos] == ids, rows[pos], -1)

    def get(self, ids: np.ndarray) -> np.ndarray:
        """float16 (m, dim) rows of ``ids`` (all must be present)."""
        rows = self.rows(ids)
        if (rows < 0).any():
            missing = np.asarray(ids)[rows < 0][:3].tolist()
            raise IndexStoreError(f"raw vector store lacks ids {missing}; rebuild the index from the metadata store")
        return self._rows(rows)

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        self._flush()
        nb = self._base.shape[0]
        if not self._extra.shape[0]:
            return np.asarray(self._base[rows])
        out = np.empty((rows.size, self.dim), np.float16)
        inb = rows < nb
        out[inb] = self._base[rows[inb]]
        out[~inb] = self._extra[rows[~inb] - nb]
        return out

    def _flush(self) -> None:
        if self._pending:
            self._extra = np.concatenate([self._extra, *self._pending])
            self._pending = []

    def iter_chunks(self, size: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids int64 (m,), float16 (m, dim)) over the live rows, in row order."""
        for start in range(0, self._row_ids.size, size):
            rows = np.arange(start, min(start + size, self._row_ids.size))
            rows = rows[self._row_ids[rows] >= 0]
            if rows.size:
                yield self._row_ids[rows], self._rows(rows)

    def scan_topk(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top ``k`` inner products of ``queries`` float32 (q, dim) over every live row, or over the rows of
        the ``allowed`` ids only: brute force, block by block. A store loaded from disk is read through one small
        buffer (``pread``, not the memory map), so the process's RAM holds a block, never all the vectors.

        Returns scores float32 (q, k) and ids int64 (q, k), best first, -inf / -1 padded.
        """
        self._flush()
        n, nb = self._row_ids.size, self._base.shape[0]
        keep = self._row_ids >= 0
        if allowed is not None:
            rows = self.rows(allowed)
            keep = np.zeros(n, bool)
            keep[rows[rows >= 0]] = True
        best = empty_result(queries.shape[0], k)
        step = max(1, SCAN_BYTES // (2 * self.dim))
        buf16 = np.empty((min(step, max(n, 1)), self.dim), np.float16)
        buf32 = np.empty(buf16.shape, np.float32)
        # base rows and rows added since loading are scanned as two runs, so no block straddles them
        for lo, hi in ((0, nb), (nb, n)):
            for start in range(lo, hi, step):
                stop = min(hi, start + step)
                live = keep[start:stop]
                if not live.any():
                    continue
                x16 = buf16[:stop - start]
                if start < nb and self._fd is not None:
                    _pread_into(self._fd, x16, start * self.dim * 2)
                else:
                    x16[:] = self._base[start:stop] if start < nb else self._extra[start - nb:stop - nb]
                x32 = _f16_to_f32(x16, buf32[:stop - start])
                s = queries @ x32.T
                if not live.all():
                    s[:, ~live] = -np.inf
                best = merge_topk(best, topk_of_scores(s, self._row_ids[start:stop], k), k)
        return best

    @property
    def scan_buffer_bytes(self) -> int:
        """RAM one :meth:`scan_topk` call allocates for its blocks (fp16 + float32), besides the scores."""
        return 3 * min(SCAN_BYTES, 2 * self.dim * max(self._row_ids.size, 1))

    def save(self, directory: Path) -> None:
        """Write the live rows, compacted, into ``directory`` (a fresh folder: the caller makes it atomic)."""
        ids = []
        with open(directory / RAW_FILE, "wb") as f:
            for chunk_ids, vecs in self.iter_chunks():
                f.write(np.ascontiguousarray(vecs).tobytes())
                ids.append(chunk_ids)
            f.flush()
            os.fsync(f.fileno())
        with open(directory / IDS_FILE, "wb") as f:
            np.save(f, np.concatenate(ids) if ids else np.zeros(0, np.int64))
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def load(cls, directory: Path, dim: int) -> "RawStore":
        try:
            ids = np.load(directory / IDS_FILE)
            size = (directory / RAW_FILE).stat().st_size
            if size != ids.size * dim * 2:
                raise ValueError(f"{RAW_FILE} holds {size} bytes, expected {ids.size} x {dim} float16")
            base = (np.memmap(directory / RAW_FILE, np.float16, "r", shape=(ids.size, dim)) if ids.size
                    else np.zeros((0, dim), np.float16))
        except (OSError, ValueError) as e:
            raise IndexStoreError(f"raw vector store in {directory} is unreadable ({e}); rebuild the index "
                                  "from the metadata store") from None
        store = cls(dim, base, ids)
        if ids.size:
            store._fd = os.open(directory / RAW_FILE, os.O_RDONLY)
            weakref.finalize(store, os.close, store._fd)
        return store


def _pread_into(fd: int, out: np.ndarray, offset: int) -> None:
    view = memoryview(out).cast("B")
    done = 0
    while done < view.nbytes:
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            raise IndexStoreError(f"raw vector file ended early at byte {offset + done}; rebuild the index")
        done += got


def _f16_to_f32(x16: np.ndarray, out: np.ndarray) -> np.ndarray:
    # torch converts with F16C on all cores, about 4x faster than numpy's astype here; torch is a dependency anyway
    import torch

    torch.from_numpy(out).copy_(torch.from_numpy(x16))
    return out


def _to_f16(vectors: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.empty(vectors.shape, np.float16)
    for s in range(0, vectors.shape[0], chunk):
        out[s:s + chunk] = vectors[s:s + chunk]
    return out
