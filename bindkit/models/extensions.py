"""Hooks through which packages above the core extend a model without the core importing them.

``bindkit.adapt`` (LoRA) adds modules to encoders; an adapted encoder needs its own fingerprint (an index must
never mix adapted and unadapted vectors), and ``BindModel.merge_adapters`` must fold them. The core's
:class:`~bindkit.models.encoder.BindModel` asks the registered extensions instead of importing ``bindkit.adapt``:
an extension registers itself when its module is imported, which is before any of its modules can exist on a
model. With none registered, a model has nothing to report or merge.
"""

from __future__ import annotations

from typing import Protocol, TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel


class ModelExtension(Protocol):
    """What an extension of models provides (all methods must accept models it did not touch)."""

    def owns_key(self, key: str) -> bool:
        """True for state-dict keys of the extension's own tensors (left out of the base weights' fingerprint)."""

    def fingerprint_suffix(self, encoder: nn.Module) -> str | None:
        """What to append to the base fingerprint of ``encoder`` (e.g. ``"~lora:<digest>"``), or None."""

    def merge(self, model: "BindModel") -> None:
        """Fold the extension's modules into the model's weights (in place)."""

    def unmerge(self, model: "BindModel") -> None:
        """Undo :meth:`merge` exactly."""


_EXTENSIONS: dict[str, ModelExtension] = {}


def register_extension(name: str, extension: ModelExtension) -> None:
    """Register (or replace) the extension called ``name``."""
    _EXTENSIONS[name] = extension


def extensions() -> list[ModelExtension]:
    """The registered extensions, in registration order."""
    return list(_EXTENSIONS.values())


__all__ = ["ModelExtension", "extensions", "register_extension"]
