"""How an index folder meets its file system: a lock that serialises cache writers across processes, telling
whether this process may write the folder, and turning "no space left" into a :class:`StorageFullError`.

SQLite serialises its own writers; FAISS files are plain files, so every write of a modality folder's cache
(new version folder, ``CURRENT.json`` swap, clean-up of old versions) happens under an exclusive ``flock`` on
``<folder>/.lock``. Readers take no lock: they retry when the version they read was replaced meanwhile.
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import shutil
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import StorageFullError

LOCK_NAME = ".lock"
_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_SQLITE_FULL = 13  # SQLITE_FULL: "database or disk is full"
_SQLITE_IOERR = 10  # SQLITE_IOERR (primary code): what SQLite reports for a write past the file-size limit


@contextmanager
def folder_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (created if needed) against other processes and threads."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def can_write(directory: Path, *files: str) -> bool:
    """Whether this process may create files in ``directory`` and write the named ones that exist there
    (False on a read-only mount, a folder without write permission, or a read-only ``meta.sqlite``)."""
    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    return all(os.access(directory / f, os.W_OK) for f in files if (directory / f).exists())


def is_out_of_space(exc: BaseException, path: Path | None = None, needed: int = 0) -> bool:
    """True for ENOSPC, a quota (EDQUOT), a file-size limit (EFBIG), and SQLite's "database or disk is full".

    SQLite reports a write refused by the file-size limit as a plain "disk I/O error"; given the database
    ``path`` and the bytes a write ``needed``, such an error counts when the limit or the free space explains it."""
    if isinstance(exc, OSError):
        return exc.errno in _FULL_ERRNOS
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code == _SQLITE_FULL or "disk is full" in str(exc):
        return True
    if path is None or code is None or code & 0xFF != _SQLITE_IOERR:
        return False
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    sizes = [os.stat(p).st_size for p in (path, Path(f"{path}-wal")) if p.exists()]
    if limit != resource.RLIM_INFINITY and max(sizes, default=0) + needed >= limit:
        return True
    free = free_bytes(path)
    return free is not None and free < needed


def free_bytes(path: Path) -> int | None:
    """Free bytes on the file system holding ``path`` (its nearest existing parent); None when unknown."""
    for p in (path, *path.parents):
        if p.exists():
            try:
                return shutil.disk_usage(p).free
            except OSError:
                return None
    return None


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)  # pragma: no cover


def storage_full(path: Path, needed: int, exc: BaseException, what: str) -> StorageFullError:
    """The error for ``exc`` (out of space) while writing ``path``: names it, the space needed and the space free."""
    free = free_bytes(path)
    why = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
    return StorageFullError(
        f"no space to write {path} ({why}): {what} needs about {_size(max(int(needed), 1))}"
        + (f", {_size(free)} free" if free is not None else "")
        + "; free some space (or raise the quota/file-size limit) and run it again; nothing was half-written")
