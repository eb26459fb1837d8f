"""Adapting encoders: LoRA adapters on trunk projections (see :mod:`bindkit.adapt.lora`)."""

from .lora import (
    DEFAULT_TARGETS,
    TARGETS,
    LoRAAdapter,
    LoRALinear,
    adapter_digest,
    adapter_names,
    adapter_parameters,
    apply_lora,
    base_fingerprint,
    load_adapter,
    merge_adapters,
    read_adapter,
    save_adapter,
    unmerge_adapters,
)

__all__ = [
    "DEFAULT_TARGETS",
    "TARGETS",
    "LoRAAdapter",
    "LoRALinear",
    "adapter_digest",
    "adapter_names",
    "adapter_parameters",
    "apply_lora",
    "base_fingerprint",
    "load_adapter",
    "merge_adapters",
    "read_adapter",
    "save_adapter",
    "unmerge_adapters",
]
