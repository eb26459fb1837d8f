"""Adapting encoders: LoRA adapters on trunk projections (:mod:`bindkit.adapt.lora`), the settings of a LoRA
run (:mod:`bindkit.adapt.spec`) and the model directories ``bindkit train --lora`` writes
(:mod:`bindkit.adapt.lora_model`: written here; loaded by :func:`bindkit.load_model`, which finds the base with
``resolve_base`` and puts the adapters on it with ``attach_adapters``; this package never imports the factory).

Names are imported on first use, so ``bindkit.adapt.spec`` (what ``bindkit train --lora`` checks its argument
with) loads without torch."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("DEFAULT_TARGETS", "TARGETS", "LoRASpec", "parse_lora_spec"), "spec"),
    **dict.fromkeys(("LoRAAdapter", "LoRALinear", "adapter_digest", "adapter_names", "adapter_parameters",
                     "apply_lora", "base_fingerprint", "head_owner", "load_adapter", "merge_adapters",
                     "read_adapter", "save_adapter", "unmerge_adapters"), "lora"),
    **dict.fromkeys(("LoRABase", "attach_adapters", "is_lora_dir", "load_lora_model", "read_lora_manifest",
                     "resolve_base"), "lora_model"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
