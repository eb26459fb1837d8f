"""Turn one user item (path, bytes, binary file object, PIL image, numpy array, tensor) into a :class:`Source`
the modality loaders can read, and guess an input kind from a file name.

Every problem with the item itself (missing path, directory, empty file, unknown extension, unsupported type)
becomes an :class:`~bindkit.errors.InputError` naming the item, so loaders only deal with decoding.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import InputError

IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .jfif .png .apng .bmp .dib .gif .webp .tif .tiff .ppm .pgm .pbm .pnm .tga .ico "
    ".avif .jp2 .j2k .qoi .psd .sgi .pcx .mpo".split()
)
AUDIO_EXTENSIONS = frozenset(".wav .wave .flac .ogg .oga .opus .mp3 .m4a .aac .aif .aiff .au .caf .w64 .wma".split())
VIDEO_EXTENSIONS = frozenset(".mp4 .m4v .webm .mov .avi .mkv .mpg .mpeg .wmv .flv .3gp .ts".split())
IMU_EXTENSIONS = frozenset(".csv .tsv .npy".split())
TEXT_EXTENSIONS = frozenset(".txt .md".split())

#: Extensions each kind accepts for paths (files without an extension are sniffed by the decoder).
EXTENSIONS: dict[str, frozenset[str]] = {
    "image": IMAGE_EXTENSIONS | {".npy"},
    "thermal": IMAGE_EXTENSIONS | {".npy"},
    "depth": IMAGE_EXTENSIONS | {".npy"},
    "audio": AUDIO_EXTENSIONS,
    "video": VIDEO_EXTENSIONS,
    "imu": IMU_EXTENSIONS,
    "text": TEXT_EXTENSIONS,
}

# Folder names that mark files whose extension cannot tell their kind (a depth PNG is an ordinary PNG).
_FOLDER_HINTS = {
    "depth": "depth",
    "depths": "depth",
    "disparity": "depth",
    "thermal": "thermal",
    "infrared": "thermal",
    "ir": "thermal",
    "lwir": "thermal",
    "imu": "imu",
}
_HINT_DEPTH = 3  # how many parent folders are consulted; higher up, a name like "ir" is more likely unrelated


def kind_from_path(path: str | os.PathLike, folder_hints: bool = True) -> str | None:
    """The input kind a file most likely holds, or None when it cannot be told.

    By extension: images -> ``image``; ``.wav .flac .ogg .mp3 ...`` -> ``audio``; ``.mp4 .webm .mov .avi .mkv
    ...`` -> ``video``; ``.csv`` -> ``imu``; ``.txt`` -> ``text`` (the file's contents); ``.npy`` -> None
    (ambiguous). With ``folder_hints``, the nearest three parent folders are looked at first: ``depth``,
    ``thermal``/``infrared``/``ir``, ``imu`` turn an image (or ``.npy``) into that kind, e.g.
    ``data/depth/0001.png`` -> ``depth``.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if folder_hints:
        for parent in list(p.parents)[:_HINT_DEPTH]:
            hinted = _FOLDER_HINTS.get(parent.name.lower())
            if hinted and ext in EXTENSIONS[hinted]:
                return hinted
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in AUDIO_EXTENSIONS:
        return "audio"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if ext in (".csv", ".tsv"):
        return "imu"
    if ext in TEXT_EXTENSIONS:
        return "text"
    return None


@dataclass
class Source:
    """One item ready for a loader. Exactly one of ``path``, ``data``, ``obj`` is set.

    Attributes:
        label: how errors name the item: the path, or ``"#<index>"`` for in-memory items.
        path: an existing, non-empty regular file.
        data: the raw bytes of an encoded file (from ``bytes`` or a binary file object).
        obj: an in-memory PIL image, numpy array or torch tensor (audio: also ``(array, sample_rate)``).
        ext: the lower-case file extension (``""`` when unknown).
    """

    label: str
    kind: str
    path: Path | None = None
    data: bytes | None = None
    obj: Any = None
    ext: str = ""

    def fail(self, reason: str) -> InputError:
        """An InputError about this item (to ``raise``)."""
        return InputError(self.label, self.kind, reason)

    def open(self):
        """A binary file object over the encoded file (a path name for paths: decoders open those faster)."""
        if self.path is not None:
            return str(self.path)
        return io.BytesIO(self.data)

    def head(self, n: int = 16) -> bytes:
        """The first ``n`` bytes of the encoded file (b"" for in-memory items or unreadable files)."""
        if self.data is not None:
            return self.data[:n]
        if self.path is not None:
            try:
                with open(self.path, "rb") as f:
                    return f.read(n)
            except OSError:
                return b""
        return b""

    def read_bytes(self) -> bytes:
        """The encoded file's bytes."""
        if self.path is not None:
            try:
                return self.path.read_bytes()
            except OSError as exc:
                raise self.fail(f"cannot read the file ({exc.strerror or exc})") from None
        return self.data or b""


def to_source(item: Any, index: int, kind: str) -> Source:
    """Check ``item`` (the ``index``-th of a ``kind`` list) and wrap it as a :class:`Source`.

    Raises InputError for a missing path, a directory, an empty file or buffer, an extension ``kind`` does not
    accept, a text-mode file object, or an unsupported type.
    """
    label = f"#{index}"
    if isinstance(item, (str, os.PathLike)):
        return _path_source(Path(os.fspath(item)).expanduser(), kind)
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
        if not data:
            raise InputError(label, kind, "empty bytes (0 bytes); pass the encoded file's contents")
        return Source(label, kind, data=data)
    if hasattr(item, "read"):
        return _file_object_source(item, label, kind)
    if _is_in_memory(item):
        return Source(label, kind, obj=item)
    if kind == "audio" and isinstance(item, tuple) and len(item) == 2 and _is_in_memory(item[0]):
        return Source(label, kind, obj=item)  # (waveform, sample_rate)
    raise InputError(
        label,
        kind,
        f"unsupported item type {type(item).__name__}; pass a path, bytes, a binary file object, "
        "a PIL image, a numpy array or a torch tensor",
    )


def _path_source(path: Path, kind: str) -> Source:
    label = str(path)
    if not path.exists():
        raise InputError(label, kind, "no such file; check the path")
    if path.is_dir():
        raise InputError(label, kind, "is a directory; pass the files inside it (e.g. a glob like dir/*)")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(label, kind, f"cannot read the file ({exc.strerror or exc})") from None
    if size == 0:
        raise InputError(label, kind, "empty file (0 bytes)")
    ext = path.suffix.lower()
    allowed = EXTENSIONS.get(kind)
    if ext and allowed is not None and ext not in allowed:
        raise InputError(
            label, kind, f"unknown extension {ext!r} for {kind}; expected one of {' '.join(sorted(allowed))}"
        )
    return Source(label, kind, path=path, ext=ext)


def _file_object_source(fobj: Any, label: str, kind: str) -> Source:
    try:
        data = fobj.read()
    except (OSError, ValueError) as exc:
        raise InputError(label, kind, f"cannot read the file object ({exc})") from None
    if isinstance(data, str):
        raise InputError(label, kind, "file object is in text mode; open it with 'rb'")
    if not data:
        raise InputError(label, kind, "file object is empty (0 bytes read)")
    name = getattr(fobj, "name", "")
    ext = Path(name).suffix.lower() if isinstance(name, str) else ""
    return Source(label, kind, data=bytes(data), ext=ext)


def _is_in_memory(item: Any) -> bool:
    return isinstance(item, (np.ndarray, torch.Tensor, Image.Image))
