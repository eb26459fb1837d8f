"""The metadata store of an index directory: SQLite (WAL) holding every item and its fp16 vector.

SQLite is the source of truth. Every add/remove is one transaction that also bumps a ``version`` counter and
logs the ids it touched in ``changes``; the per-modality FAISS files are a cache stamped with the version they
reflect, so a cache left stale by a crash is repaired by replaying the changes logged after its stamp.

Ids are stable 64-bit integers derived from the item's key (its URI, or ``<kind>:<content hash>`` for in-memory
items): ``blake2b(key, digest_size=8) & (2**63 - 1)``, with linear probing on the rare collision, so a sharded
build and a one-process build agree on every id.

File names that are not valid UTF-8 (Linux allows any bytes; Python hands them over with the undecodable bytes as
lone surrogates, PEP 383) cannot be SQLite TEXT: such a key or URI is stored as a BLOB of the file name's exact
bytes (``os.fsencode``) and read back with ``os.fsdecode``, so ``Hit.uri`` opens the same file. Every other key
stays TEXT, so existing indexes read unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import IndexStoreError, ReadOnlyIndexError
from ..fileio import atomic_write_bytes, hash_file_into
from .diskio import can_write, is_out_of_space, storage_full

FORMAT_VERSION = 1
DB_NAME = "meta.sqlite"
DB_FILES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm")  # what writing the database may create or change
MANIFEST_NAME = "manifest.json"
_ID_MASK = (1 << 63) - 1
_CHUNK = 900  # stays under SQLite's default limit on bound parameters
_SQLITE_READONLY = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id            INTEGER PRIMARY KEY,
    key           TEXT NOT NULL UNIQUE,
    modality      TEXT NOT NULL,
    uri           TEXT,
    content_hash  TEXT NOT NULL,
    metadata      TEXT NOT NULL DEFAULT '{}',
    text          TEXT,
    added_at      REAL NOT NULL,
    file_size     INTEGER,
    file_mtime_ns INTEGER,
    vector        BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS items_modality ON items(modality);
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS info (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS changes (version INTEGER NOT NULL, modality TEXT NOT NULL, id INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS changes_by_version ON changes(modality, version);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT PRIMARY KEY, modality TEXT, uri TEXT, reason TEXT NOT NULL, at REAL NOT NULL
);
"""


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL when ``$BINDKIT_CRASH_AT`` names this point (crash-safety tests only)."""
    if os.environ.get("BINDKIT_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def id_for(key: str) -> int:
    """The preferred 63-bit id of an item key (before collision probing). A file name's undecodable bytes
    (surrogate-escaped) hash as the bytes themselves; valid UTF-8 keys hash exactly as before."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _ID_MASK


def to_db(text: str | None) -> str | bytes | None:
    """A key or URI as SQLite stores it: the str itself, or the file name's bytes (a BLOB) when it holds
    surrogate-escaped bytes that are not valid UTF-8. Raises UnicodeEncodeError for a lone surrogate that no
    file name can contain."""
    if text is None or isinstance(text, bytes):
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text)
    return text


def from_db(value: str | bytes | None) -> str | None:
    """The inverse of :func:`to_db`: a stored key or URI as a str path (``os.fsdecode`` of a BLOB)."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def hash_file(path: str | os.PathLike) -> str:
    """Content hash of a file, streamed (hex, 128-bit blake2b)."""
    return hash_file_into(hashlib.blake2b(digest_size=16), path).hexdigest()


def hash_object(item: Any) -> str:
    """Content hash of an in-memory item: str, bytes, numpy array, torch tensor, PIL image, or a tuple/list of
    those (e.g. ``(waveform, sample_rate)``). Raises TypeError for anything else."""
    h = hashlib.blake2b(digest_size=16)

    def feed(x: Any) -> None:
        if isinstance(x, str):
            h.update(b"s" + x.encode("utf-8"))
        elif isinstance(x, (bytes, bytearray, memoryview)):
            h.update(b"b" + bytes(x))
        elif isinstance(x, (bool, int, float)):
            h.update(b"n" + repr(x).encode())
        elif isinstance(x, np.ndarray):
            h.update(f"a{x.dtype.str}{x.shape}".encode() + np.ascontiguousarray(x).tobytes())
        elif type(x).__module__.startswith("torch"):
            feed(x.detach().cpu().numpy())
        elif hasattr(x, "tobytes") and hasattr(x, "mode") and hasattr(x, "size"):  # PIL image
            h.update(f"p{x.mode}{x.size}".encode() + x.tobytes())
        elif isinstance(x, (tuple, list)):
            h.update(f"t{len(x)}".encode())
            for part in x:
                feed(part)
        elif hasattr(x, "read"):  # binary file object: hash its bytes and rewind for the loader
            pos = x.tell() if hasattr(x, "tell") else None
            h.update(b"b" + x.read())
            if pos is not None:
                x.seek(pos)
        else:
            raise TypeError(f"cannot hash an item of type {type(x).__name__}")

    feed(item)
    return h.hexdigest()


def to_f16(vectors: np.ndarray) -> np.ndarray:
    """float32 (n, D) -> float16 (n, D), the precision vectors are stored (and indexed) at."""
    return np.ascontiguousarray(vectors, dtype=np.float32).astype("<f2")


@dataclass
class ItemRow:
    """One item to write. ``vector`` is float32 (dim,), a unit vector."""

    key: str
    modality: str
    content_hash: str
    vector: np.ndarray
    uri: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    file_size: int | None = None
    file_mtime_ns: int | None = None


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    atomic_write_bytes(Path(directory) / MANIFEST_NAME, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest, or None when it is missing or unreadable (it is rebuilt from SQLite then)."""
    try:
        return json.loads((Path(directory) / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None


class Store:
    """SQLite metadata + vector store of one index directory. Not thread-safe; one per process/thread."""

    def __init__(self, directory: str | os.PathLike, create: bool = False, read_only: bool | None = None):
        """Open (``create``: create) the store of ``directory``. ``read_only`` opens it without writing anything:
        SQLite ``mode=ro`` (which still sees other processes' commits), or ``immutable=1`` where the folder
        cannot hold the WAL index file and no write-ahead log is pending. None: read-only exactly when this
        process cannot write the folder or the database."""
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        if read_only is None:
            read_only = not create and not can_write(self.directory, *DB_FILES)
        self.read_only = read_only
        self.read_only_reason: str | None = None  # set when a writable open failed and we fell back to reading
        if not create and not self.path.is_file():
            raise IndexStoreError(
                f"{self.directory} is not a bindkit index (no {DB_NAME}); create one with "
                "bindkit.Index.create(path, model=...) or `bindkit index build`"
            )
        if create:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise IndexStoreError(f"cannot create the index folder {self.directory} "
                                      f"({exc.strerror or exc}); choose another path") from None
        try:
            self.conn = self._connect_read_only() if read_only else self._connect_or_read(create)
            if create:
                self.conn.executescript(_SCHEMA)
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            if is_out_of_space(exc):
                raise storage_full(self.path, 1 << 16, exc, "creating the index" if create else "opening it") from None
            raise IndexStoreError(f"{self.path} is not a readable SQLite database ({exc}); restore it or rebuild") from exc
        if not {"items", "state", "info", "changes"} <= tables:
            raise IndexStoreError(f"{self.path} lacks the bindkit tables; it is not a bindkit index")

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so one add is exactly one transaction.
        # check_same_thread=False: Index serialises access with its own lock, and servers call it from
        # worker threads. timeout: SQLite's busy timeout, so a writer waits for another process's commit.
        conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=60.0, check_same_thread=False)
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a process crash never loses a committed transaction (only power loss may
        # drop the last ones), and a build commits many batches.
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _connect_or_read(self, create: bool) -> sqlite3.Connection:
        """A writable connection; for an existing index whose files SQLite cannot set up for writing (no space
        for the ``-shm``/``-wal`` files, say) a read-only one, so that reads never need free space."""
        try:
            return self._connect()
        except sqlite3.OperationalError as exc:
            if create:
                raise
            conn = self._connect_read_only()
            self.read_only = True
            self.read_only_reason = (f"SQLite could not open {self.path} for writing ({exc}; is the disk full? it "
                                     f"needs about 100 KB free for {DB_NAME}-shm and -wal); free some space and "
                                     "open it again to change it")
            return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        uri = self.path.resolve().as_uri()
        try:
            conn = sqlite3.connect(uri + "?mode=ro", uri=True, isolation_level=None, timeout=60.0,
                                   check_same_thread=False)
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            # A WAL database needs its -shm file; in a folder we cannot write, SQLite cannot create it.
            wal = self.path.with_name(DB_NAME + "-wal")
            if wal.is_file() and wal.stat().st_size:
                raise IndexStoreError(
                    f"{self.path} has commits still in its write-ahead log {wal.name}, which SQLite cannot read "
                    "from a folder it may not write; open the index once where it is writable (e.g. `bindkit "
                    "index stats DIR` on the original or a copy) to fold the log in, then copy it again") from None
        # Nothing pending outside the main file: read it as an immutable file (no locks, no -shm).
        return sqlite3.connect(uri + "?immutable=1", uri=True, isolation_level=None, check_same_thread=False)

    def close(self) -> None:
        self.conn.close()

    # ---- transactions and counters -------------------------------------------------------------------------
    @contextmanager
    def transaction(self, needed: int = 0) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``: all writes inside land together or not at all.

        Raises StorageFullError (naming the database and about ``needed`` bytes) when the disk is full, and
        ReadOnlyIndexError when the database cannot be written."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        except sqlite3.Error as exc:
            if is_out_of_space(exc, self.path, needed + (1 << 15)):
                raise storage_full(self.path, needed + (1 << 15), exc, "this write") from None
            if self.read_only or getattr(exc, "sqlite_errorcode", None) == _SQLITE_READONLY:
                raise ReadOnlyIndexError(f"{self.path} is read-only ({exc}); writes need a writable index: "
                                         "fix its permissions or work on a writable copy") from None
            raise

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:  # SQLite may have rolled back already (e.g. on a full disk)
                pass

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every read inside sees one committed state, and writers are not blocked (WAL)."""
        self.conn.execute("BEGIN DEFERRED")
        try:
            yield self.conn
        finally:
            self.conn.execute("COMMIT")

    def counter(self, name: str) -> int:
        row = self.conn.execute("SELECT value FROM state WHERE name=?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def bump_counter(self, name: str, by: int = 1) -> int:
        """Add ``by`` to a counter (call inside a transaction); returns the new value."""
        self.conn.execute(
            "INSERT INTO state(name, value) VALUES(?, ?) ON CONFLICT(name) DO UPDATE SET value = value + ?",
            (name, by, by),
        )
        return self.counter(name)

    def version(self) -> int:
        """The number of committed write transactions; FAISS caches are stamped with it."""
        return self.counter("version")

    def embedded_total(self) -> int:
        """How many items were ever embedded into this index (a resumed build must not embed one twice)."""
        return self.counter("embedded")

    def get_info(self, name: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM info WHERE name=?", (name,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_info(self, name: str, value: Any) -> None:
        self.conn.execute(
            "INSERT INTO info(name, value) VALUES(?, ?) ON CONFLICT(name) DO UPDATE SET value=excluded.value",
            (name, json.dumps(value, sort_keys=True)),
        )

    # ---- writes (inside a transaction) ------------------------------------------------------------------------
    def _assign_id(self, key: str) -> int:
        row = self.conn.execute("SELECT id FROM items WHERE key=?", (to_db(key),)).fetchone()
        if row:
            return int(row[0])
        candidate = id_for(key)
        while self.conn.execute("SELECT 1 FROM items WHERE id=?", (candidate,)).fetchone():
            candidate = (candidate + 1) & _ID_MASK  # a different key holds it: probe the next id
        return candidate

    def upsert(self, rows: Sequence[ItemRow], version: int) -> tuple[list[int], list[tuple[int, str]]]:
        """Insert or replace items by key. Returns (ids in row order, [(id, old modality)] of replaced items).
        Logs every touched (modality, id) in ``changes`` at ``version``."""
        ids: list[int] = []
        replaced: list[tuple[int, str]] = []
        now = time.time()
        for row in rows:
            key = to_db(row.key)
            old = self.conn.execute("SELECT id, modality FROM items WHERE key=?", (key,)).fetchone()
            item_id = int(old[0]) if old else self._assign_id(row.key)
            if old:
                replaced.append((item_id, old[1]))
                if old[1] != row.modality:
                    self.conn.execute("INSERT INTO changes VALUES(?, ?, ?)", (version, old[1], item_id))
            self.conn.execute(
                "INSERT OR REPLACE INTO items(id, key, modality, uri, content_hash, metadata, text, added_at,"
                " file_size, file_mtime_ns, vector) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                (item_id, key, row.modality, to_db(row.uri), row.content_hash, json.dumps(row.metadata or {}),
                 row.text, now, row.file_size, row.file_mtime_ns, to_f16(row.vector).tobytes()),
            )
            self.conn.execute("INSERT INTO changes VALUES(?, ?, ?)", (version, row.modality, item_id))
            self.conn.execute("DELETE FROM failures WHERE key=?", (key,))
            ids.append(item_id)
        return ids, replaced

    def update_metadata(self, ids: Sequence[int], metadata: Sequence[dict[str, Any]]) -> None:
        """Replace user metadata of existing items (vectors untouched, so no change is logged)."""
        self.conn.executemany("UPDATE items SET metadata=? WHERE id=?",
                              [(json.dumps(m or {}), int(i)) for i, m in zip(ids, metadata)])

    def update_file_stats(self, stats: Sequence[tuple[int, int | None, int | None]]) -> None:
        """Record new (id, size, mtime_ns) of files whose content proved unchanged (next scan skips hashing)."""
        self.conn.executemany("UPDATE items SET file_size=?, file_mtime_ns=? WHERE id=?",
                              [(s, t, int(i)) for i, s, t in stats])

    def delete(self, ids: Sequence[int], version: int) -> list[tuple[int, str]]:
        """Delete items; returns [(id, modality)] of those that existed."""
        gone: list[tuple[int, str]] = []
        for chunk in _chunks([int(i) for i in ids]):
            q = ",".join("?" * len(chunk))
            gone += [(int(i), m) for i, m in self.conn.execute(f"SELECT id, modality FROM items WHERE id IN ({q})", chunk)]
            self.conn.execute(f"DELETE FROM items WHERE id IN ({q})", chunk)
        self.conn.executemany("INSERT INTO changes VALUES(?, ?, ?)", [(version, m, i) for i, m in gone])
        return gone

    def record_failures(self, failures: Sequence[tuple[str, str | None, str | None, str]]) -> None:
        """Remember failed items: (key, modality, uri, reason)."""
        now = time.time()
        self.conn.executemany(
            "INSERT OR REPLACE INTO failures(key, modality, uri, reason, at) VALUES(?,?,?,?,?)",
            [(to_db(k), m, to_db(u), r, now) for k, m, u, r in failures],
        )

    # ---- reads --------------------------------------------------------------------------------------------
    def count(self, modality: str | None = None) -> int:
        if modality is None:
            return int(self.conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])
        return int(self.conn.execute("SELECT COUNT(*) FROM items WHERE modality=?", (modality,)).fetchone()[0])

    def modality_counts(self) -> dict[str, int]:
        return {m: int(n) for m, n in self.conn.execute("SELECT modality, COUNT(*) FROM items GROUP BY modality")}

    def lookup(self, keys: Sequence[str]) -> dict[str, tuple[int, str, str, int | None, int | None]]:
        """key -> (id, modality, content_hash, file_size, file_mtime_ns) for the keys that are stored."""
        out: dict[str, tuple[int, str, str, int | None, int | None]] = {}
        for chunk in _chunks([to_db(k) for k in keys]):
            q = ",".join("?" * len(chunk))
            for k, i, m, h, s, t in self.conn.execute(
                f"SELECT key, id, modality, content_hash, file_size, file_mtime_ns FROM items WHERE key IN ({q})", chunk
            ):
                out[from_db(k)] = (int(i), m, h, s, t)
        return out

    def keys(self) -> dict[str, int]:
        """Every stored key -> id."""
        return {from_db(k): int(i) for k, i in self.conn.execute("SELECT key, id FROM items")}

    def ids(self, modality: str | None = None, where: tuple[str, list[Any]] | None = None) -> np.ndarray:
        """Ids (int64, ascending) of the items of ``modality`` (all when None) matching a compiled filter."""
        sql, params = "SELECT id FROM items WHERE 1", []
        if modality is not None:
            sql, params = sql + " AND modality=?", [modality]
        if where is not None:
            sql += f" AND ({where[0]})"
            params += list(where[1])
        rows = self.conn.execute(sql + " ORDER BY id", params).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def vectors(self, modality: str | None = None, ids: Sequence[int] | None = None, chunk: int = 65536
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids int64 (n,), vectors float32 (n, dim)) in chunks, ordered by id."""
        if ids is not None:
            for part in _chunks(sorted(int(i) for i in ids)):
                q = ",".join("?" * len(part))
                sql, params = f"SELECT id, vector FROM items WHERE id IN ({q})", list(part)
                if modality is not None:
                    sql, params = sql + " AND modality=?", params + [modality]
                got = self.conn.execute(sql + " ORDER BY id", params).fetchall()
                if got:
                    yield _unpack(got)
            return
        sql, params = "SELECT id, vector FROM items", []
        if modality is not None:
            sql, params = sql + " WHERE modality=?", [modality]
        cur = self.conn.execute(sql + " ORDER BY id", params)
        while True:
            got = cur.fetchmany(chunk)
            if not got:
                return
            yield _unpack(got)

    def rows(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """id -> {id, modality, uri, metadata, text, content_hash, added_at} for the ids that exist."""
        out: dict[int, dict[str, Any]] = {}
        for part in _chunks([int(i) for i in ids]):
            q = ",".join("?" * len(part))
            for i, m, u, md, t, h, a in self.conn.execute(
                f"SELECT id, modality, uri, metadata, text, content_hash, added_at FROM items WHERE id IN ({q})", part
            ):
                out[int(i)] = {"id": int(i), "modality": m, "uri": from_db(u), "metadata": json.loads(md), "text": t,
                               "content_hash": h, "added_at": a}
        return out

    def changed_since(self, modality: str, version: int) -> np.ndarray:
        """Ids of ``modality`` touched by transactions after ``version``."""
        rows = self.conn.execute(
            "SELECT DISTINCT id FROM changes WHERE modality=? AND version>?", (modality, int(version))
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def changed_modalities(self, version: int) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT DISTINCT modality FROM changes WHERE version>?", (int(version),))}

    def log_floor(self) -> int:
        """Changes at or below this version were pruned; caches stamped older must be rebuilt."""
        return self.counter("log_floor")

    def prune_changes(self, upto: int) -> None:
        """Forget changes at or below ``upto`` (call inside a transaction, once every cache is past it)."""
        self.conn.execute("DELETE FROM changes WHERE version<=?", (int(upto),))
        self.conn.execute(
            "INSERT INTO state(name, value) VALUES('log_floor', ?) ON CONFLICT(name) DO UPDATE SET value=excluded.value",
            (int(upto),),
        )

    def failures(self) -> list[dict[str, Any]]:
        return [{"item": from_db(u or k), "modality": m, "reason": r}
                for k, m, u, r in self.conn.execute("SELECT key, modality, uri, reason FROM failures ORDER BY key")]


def _unpack(rows: list[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f2").reshape(len(rows), -1).astype(np.float32)
    return ids, vecs


def _chunks(seq: list, size: int = _CHUNK) -> Iterator[list]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]
