"""Small file helpers shared by weights, inputs, indexes and the CLI: atomic writes, streamed hashing, and
telling what a file is from its first bytes (for error messages)."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

_CHUNK = 1 << 20  # 1 MiB reads: hashing stays flat in memory and the bytes are not mapped into our RSS


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside ``path`` to write to; renamed onto ``path`` when the block ends normally and
    deleted when it raises, so readers see the old file or the new one, never a partial one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; what we write are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`), flushed to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def hash_file_into(digest: Any, path: str | os.PathLike) -> Any:
    """Feed the bytes of ``path`` to a hashlib object (read in 1 MiB chunks); returns ``digest``."""
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest


#: What a file's first bytes say it is: (description, [(offset, bytes)...] that must all match, audio/video?).
#: The first match wins. One table for every "it looks like ..." hint (loaders, weights, the server).
SIGNATURES: tuple[tuple[str, tuple[tuple[int, bytes], ...], bool], ...] = (
    ("a WAV audio file", ((0, b"RIFF"), (8, b"WAVE")), True),
    ("an audio file", ((0, b"fLaC"),), True),
    ("an audio file", ((0, b"OggS"),), True),
    ("an audio file", ((0, b"ID3"),), True),
    ("an MP4/MOV video file", ((4, b"ftyp"),), True),
    ("a WebM/Matroska video file", ((0, b"\x1aE\xdf\xa3"),), True),
    ("a JPEG image", ((0, b"\xff\xd8\xff"),), False),
    ("a PNG image", ((0, b"\x89PNG\r\n\x1a\n"),), False),
    ("a GIF image", ((0, b"GIF8"),), False),
    ("a BMP image", ((0, b"BM"),), False),
    ("a PDF document", ((0, b"%PDF"),), False),
    ("a ZIP archive", ((0, b"PK\x03\x04"),), False),
    ("a gzip archive", ((0, b"\x1f\x8b"),), False),
    ("a WebP image", ((0, b"RIFF"), (8, b"WEBP")), False),
)


def sniff(head: bytes, media: bool = False) -> str | None:
    """What the first bytes of a file say it is (``"a JPEG image"``), for error messages; None when unsure.
    Audio and video containers (WAV, FLAC, Ogg, MP3, MP4/MOV, WebM) are named only with ``media=True`` (the
    server's hints); without it their bytes give None, as a decoder's own message says more about them."""
    for what, parts, is_media in SIGNATURES:
        if is_media and not media:
            continue
        if all(head[offset:offset + len(magic)] == magic for offset, magic in parts):
            return what
    return None


def disk_usage(folder: str | os.PathLike, skip_suffixes: tuple[str, ...] = ()) -> int:
    """Bytes ``folder`` occupies on disk, as ``du`` counts them: allocated blocks (``st_blocks``; the apparent size
    where the platform has none) of every file and folder under it, hard links once, symlinks not followed.
    Files whose names end in one of ``skip_suffixes`` are left out (e.g. SQLite's ``-shm`` shared-memory index,
    which only exists while a connection is open)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, dirs, files in os.walk(folder):
        for name in [".", *files]:
            if name != "." and name.endswith(skip_suffixes):
                continue
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:  # removed meanwhile
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            blocks = getattr(st, "st_blocks", None)
            total += blocks * 512 if blocks is not None else st.st_size
    return total


def fsync_dir(path: str | os.PathLike, *, best_effort: bool = False) -> None:
    """fsync the directory ``path`` itself, so a rename or new entry in it survives a power cut.
    ``best_effort``: a platform or file system without directory handles (or directory fsync) is not an error."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if best_effort:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not best_effort:
            raise
    finally:
        os.close(fd)
