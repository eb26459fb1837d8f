"""Turning what a caller adds (paths, texts, in-memory items) into :class:`Prepared` records: the input kind,
the stable key the id derives from, the content hash that decides whether an item must be re-embedded, and
the payload handed to ``model.embed``."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, ModalityError
from ..modality import input_kind
from .store import hash_file, hash_object
from .where import key_problem


@dataclass
class Prepared:
    """One item ready to embed and store.

    ``key`` is the item's identity in the index (absolute path for files, ``<kind>:<content hash>`` for
    in-memory items); ``metadata`` None means "keep what is stored" when the item already exists.
    """

    kind: str
    key: str
    content_hash: str
    payload: Any
    uri: str | None = None
    text: str | None = None
    metadata: dict[str, Any] | None = None
    file_size: int | None = None
    file_mtime_ns: int | None = None


def check_metadata(metadata: Any, item: object = "metadata") -> dict[str, Any] | None:
    """Validate user metadata: a JSON-serialisable dict with string keys and finite numbers (or None). Keys
    are those a ``where`` filter can name (:func:`bindkit.index.where.key_problem`): not starting with ``$``."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise InputError(item, "metadata", f"expected a dict of metadata, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise InputError(item, "metadata", f"metadata keys must be strings, got {key!r}")
        problem = key_problem(key)
        if problem is not None:
            raise InputError(item, "metadata", problem)
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(item, "metadata", f"metadata value {key!r} is {value}; JSON cannot hold NaN/inf")
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(item, "metadata", f"metadata must be JSON-serialisable ({exc})") from exc
    return dict(metadata)


def check_text(text: str, item: object) -> None:
    """Raise InputError when ``text`` is not valid Unicode (a lone surrogate, e.g. ``"\\udce9"`` from a JSON
    escape): it could be neither embedded nor stored."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(item, "text", f"not valid Unicode: lone surrogate {exc.object[exc.start]!r} at position "
                         f"{exc.start}; fix the text's encoding") from None


def _kind_of_path(path: str, given: str | None, shown: object) -> str:
    if given is not None:
        return given
    from ..inputs import kind_from_path

    kind = kind_from_path(path, folder_hints=True)
    if kind is not None:
        return input_kind(kind)
    if not os.path.exists(path):
        raise InputError(shown, "unknown", "no such file, so its modality cannot be inferred; pass "
                         "modality='text' to add strings as texts")
    raise InputError(shown, "unknown", f"cannot tell the modality of a {Path(path).suffix or 'extension-less'} "
                     "file; pass modality=... (image, video, audio, depth, thermal, imu, text)")


def prepare_file(path: str | os.PathLike, kind: str | None = None, metadata: dict[str, Any] | None = None,
                 stat: os.stat_result | None = None, content_hash: str | None = None) -> Prepared:
    """Describe a file item: kind (given, or inferred from extension and folder names), absolute path as key
    and URI, content hash of its bytes. ``stat``/``content_hash`` may be passed when already known."""
    shown = os.fspath(path)
    full = os.path.abspath(shown)
    try:
        os.fsencode(full)  # undecodable file-name bytes (surrogate-escaped) are fine; other lone surrogates are not
    except UnicodeEncodeError as exc:
        raise InputError(ascii(shown), kind or "unknown", f"not a valid path: it holds the lone surrogate "
                         f"{exc.object[exc.start]!r} at position {exc.start}, which no file name can contain") from None
    kind = _kind_of_path(full, kind, shown)
    try:
        st = stat or os.stat(full)
    except OSError as exc:
        raise InputError(shown, kind, f"cannot read it ({exc.strerror or exc})") from exc
    if not os.path.isfile(full):
        raise InputError(shown, kind, "is not a regular file (a directory?)")
    try:
        digest = content_hash or hash_file(full)
        text = None
        if kind == "text":
            text = Path(full).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(shown, kind, f"cannot read it ({exc})") from exc
    return Prepared(kind=kind, key=full, content_hash=digest, payload=text if kind == "text" else full, uri=full,
                    text=text, metadata=metadata, file_size=st.st_size, file_mtime_ns=st.st_mtime_ns)


def prepare(item: Any, kind: str | None, metadata: dict[str, Any] | None, position: int) -> Prepared:
    """Describe one item given to ``Index.add``. Strings are texts when the kind is ``text``, else paths;
    ``pathlib.Path`` is always a path; anything else (bytes, arrays, PIL images, tensors) is in memory and
    needs an explicit kind. Raises InputError naming the item."""
    shown = f"#{position}"
    if kind is not None:
        try:
            kind = input_kind(kind)
        except ModalityError as exc:
            raise InputError(shown, str(kind), str(exc)) from exc
    if isinstance(item, Path) or (isinstance(item, str) and kind != "text"):
        return prepare_file(item, kind, metadata)
    if kind is None:
        raise InputError(shown, "unknown", f"cannot infer the modality of an in-memory {type(item).__name__}; "
                         "pass modality=...")
    if kind == "text" and not isinstance(item, str):
        raise InputError(shown, kind, f"text items must be strings, got {type(item).__name__}")
    if kind == "text":
        check_text(item, shown)
    try:
        digest = hash_object(item)
    except TypeError as exc:
        raise InputError(shown, kind, f"{exc}; pass a path, bytes, a numpy array, a tensor or a PIL image") from exc
    return Prepared(kind=kind, key=f"{kind}:{digest}", content_hash=digest, payload=item,
                    text=item if kind == "text" else None, metadata=metadata)
