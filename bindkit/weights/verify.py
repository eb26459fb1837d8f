"""Verified weights: the files a model directory's ``manifest.json`` lists are checked against the sha256 it
records before their tensors are used (``load_model``, ``--model``, ``train --init`` and ``--resume``, the base of
a LoRA model), and a file whose bytes differ is refused with :class:`~bindkit.errors.WeightsIntegrityError`
naming it.

Hashing a 4.5 GB model takes seconds, so a verdict is remembered in ``$XDG_CACHE_HOME/bindkit/verified.json``
(``~/.cache/bindkit``; ``$BINDKIT_VERIFY_CACHE`` names another file), keyed by the file's real path and its
identity: size, mtime_ns, ctime_ns, inode and device. A file rewritten in place, even with its size and mtime
restored, has another ctime and is hashed again; a copy is another inode. The cache is written atomically and is
only an optimisation: when it cannot be read or written, files are hashed every time.

``bindkit verify MODEL`` (:func:`check_model_dir`) re-hashes every file on demand, whatever the cache says.

A manifest's weight fingerprints (what indexes compare) are used only for files whose content was hashed and
matched the manifest's sha256 (the fingerprint is bound to verified bytes); a file the manifest records no sha256
for gets its fingerprint computed from its values (see :func:`bindkit.weights.read.recorded_fingerprints`).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, WeightsIntegrityError
from ..fileio import atomic_write_bytes, hash_file_into

MANIFEST = "manifest.json"
CACHE_ENV = "BINDKIT_VERIFY_CACHE"
_MAX_ENTRIES = 1000  # the cache keeps the most recently verified files
_LOCK = threading.Lock()


@dataclass
class FileCheck:
    """The verdict on one file of a model directory (:func:`check_model_dir`).

    Attributes:
        name: the manifest's key for the file (a modality, e.g. ``vision``).
        path: the file.
        status: ``"ok"``, ``"mismatch"`` (other bytes than the manifest records), ``"missing"``, or
            ``"unrecorded"`` (the manifest gives no sha256 for it: nothing to check against).
        expected: the sha256 the manifest records (None when it records none).
        actual: the sha256 of the file's bytes (None when missing).
        bytes: the file's size (0 when missing).
    """

    name: str
    path: Path
    status: str
    expected: str | None
    actual: str | None
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


def cache_path() -> Path:
    """Where verdicts are remembered: ``$BINDKIT_VERIFY_CACHE``, else ``<user cache>/bindkit/verified.json``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    from ..resources import cache_dir

    return cache_dir() / "verified.json"


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        files = data["files"]
        return files if isinstance(files, dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _remember(key: str, identity: list[int], sha: str) -> None:
    path = cache_path()
    with _LOCK:
        files = _read_cache(path)
        files.pop(key, None)
        files[key] = {"id": identity, "sha256": sha}  # insertion order: the most recent last
        while len(files) > _MAX_ENTRIES:
            files.pop(next(iter(files)))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, (json.dumps({"format": "bindkit-verified", "files": files}) + "\n").encode())
        except OSError:  # a read-only home: verdicts are not remembered, files are hashed each time
            pass


def file_sha256(path: str | os.PathLike, *, use_cache: bool = True) -> str:
    """The sha256 of ``path``'s bytes (hex). With ``use_cache``, a verdict remembered for the same file identity
    (real path, size, mtime_ns, ctime_ns, inode, device) is returned without reading the file; every hash computed
    is remembered. CheckpointError when the file cannot be read."""
    p = Path(path)
    try:
        before = os.stat(p)
        key = os.path.realpath(p)
        identity = _identity(before)
        if use_cache:
            entry = _read_cache(cache_path()).get(key)
            if isinstance(entry, dict) and entry.get("id") == identity and isinstance(entry.get("sha256"), str):
                return entry["sha256"]
        sha = hash_file_into(hashlib.sha256(), p).hexdigest()
        after = os.stat(p)
    except OSError as exc:
        raise CheckpointError(f"cannot read weights file {p}: {exc.strerror or exc}") from None
    if _identity(after) == identity:  # not changed while it was read
        _remember(key, identity, sha)
    return sha


def mismatch_message(path: Path, manifest: Path, expected: str, actual: str | None, size: int | None = None,
                     recorded_size: int | None = None) -> str:
    """What to say about a file whose bytes differ from its manifest's record (it names the file and the fix)."""
    if size is not None and recorded_size is not None and size != recorded_size:
        what = f"is truncated or corrupt: it has {size} bytes but {manifest} records {recorded_size}"
    else:
        what = (f"is damaged or was changed after the model was written: its sha256 is {actual} but {manifest} "
                f"records {expected}")
    return (f"weights file {path} {what}. Replace it with a "
            "good copy (copy the model folder again, or download/convert the weights again: `bindkit fetch CARD "
            f"--force --convert`); `bindkit verify {manifest.parent}` checks every file of the model")


def verify_file(path: str | os.PathLike, info: dict[str, Any], manifest: str | os.PathLike, *,
                use_cache: bool = True) -> None:
    """Check ``path`` against its manifest entry ``info`` (``sha256``, and ``bytes`` when given).

    Raises:
        WeightsIntegrityError: other bytes than the manifest records (the message names the file).
        CheckpointError: the file cannot be read.
    """
    expected = info.get("sha256")
    if not isinstance(expected, str) or not expected:
        return
    p, man = Path(path), Path(manifest)
    recorded = info.get("bytes")
    if isinstance(recorded, int) and not isinstance(recorded, bool):
        try:
            size = p.stat().st_size
        except OSError as exc:
            raise CheckpointError(f"cannot read weights file {p}: {exc.strerror or exc}") from None
        if size != recorded:  # truncated or grown: no need to hash
            raise WeightsIntegrityError(mismatch_message(p, man, expected, None, size, recorded))
    actual = file_sha256(p, use_cache=use_cache)
    if actual != expected.lower():
        raise WeightsIntegrityError(mismatch_message(p, man, expected, actual))


def manifest_files(directory: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The ``files`` entries of a model directory's manifest ({} when there is no manifest).
    CheckpointError when the manifest is unreadable."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return {}
    try:
        files = json.loads(path.read_text())["files"]
        if not isinstance(files, dict) or not all(isinstance(v, dict) and "file" in v for v in files.values()):
            raise TypeError("'files' is not a mapping of entries with a 'file'")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} is unreadable ({exc!r}); write the model again (bindkit convert/train)") \
            from None
    return files


def check_model_dir(directory: str | os.PathLike, *, use_cache: bool = False) -> list[FileCheck]:
    """Hash every file ``directory``'s manifest lists and compare with the recorded sha256 (no exception for a
    bad file: each gets a :class:`FileCheck`). ``use_cache=False`` (the default, ``bindkit verify``) re-reads
    every byte; the fresh verdicts are remembered for later loads."""
    d = Path(directory)
    out = []
    for name, info in manifest_files(d).items():
        p = d / info["file"]
        expected = info.get("sha256") if isinstance(info.get("sha256"), str) else None
        if not p.is_file():
            out.append(FileCheck(name, p, "missing", expected, None, 0))
            continue
        actual = file_sha256(p, use_cache=use_cache)
        status = "unrecorded" if not expected else "ok" if actual == expected.lower() else "mismatch"
        out.append(FileCheck(name, p, status, expected, actual, p.stat().st_size))
    return out
