"""Modality names. One place defines the canonical names and the aliases users may type."""

from __future__ import annotations

from typing import Iterable

from .errors import ModalityError

#: The encoders a model may have (reference checkpoint names).
ENCODERS: tuple[str, ...] = ("vision", "text", "audio", "depth", "thermal", "imu")

#: The input kinds ``encode``/``preprocess``/``embed`` accept; ``image`` and ``video`` share the vision encoder.
INPUT_KINDS: tuple[str, ...] = ("image", "video", "text", "audio", "depth", "thermal", "imu")

#: Order of the query inputs of ``Index.search`` and ``bindkit search`` (a list of weights follows it).
QUERY_KINDS: tuple[str, ...] = ("text", "image", "audio", "video", "depth", "thermal", "imu")

_ALIASES = {
    "vision": "image",
    "img": "image",
    "images": "image",
    "videos": "video",
    "texts": "text",
    "sound": "audio",
    "infrared": "thermal",
}


def input_kind(name: str) -> str:
    """Canonical input kind for ``name`` (``"vision"`` -> ``"image"``); raises ModalityError when unknown."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in INPUT_KINDS:
        raise ModalityError(
            f"unknown modality {name!r}; expected one of {', '.join(INPUT_KINDS)} (or alias 'vision')"
        )
    return key


def encoder_of(name: str) -> str:
    """The encoder that embeds input kind ``name`` (``image``/``video`` -> ``vision``)."""
    kind = input_kind(name)
    return "vision" if kind in ("image", "video") else kind


def canonical_modalities(modalities: Iterable[str] | str | None) -> list[str] | None:
    """Encoder names for ``modalities`` (aliases such as ``image`` accepted), in ENCODERS order; None = all.
    Raises ModalityError on an unknown name."""
    if modalities is None:
        return None
    if isinstance(modalities, str):
        modalities = [modalities]
    wanted = {encoder_of(m) for m in modalities}
    return [m for m in ENCODERS if m in wanted]
