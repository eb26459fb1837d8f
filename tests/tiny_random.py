"""A tiny random-weights model and small text indexes made with it, for tests that must run without ../shared
(a user's clone): the weights are seeded, so a child process building the model gets the same fingerprints."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

SEED = 0


def text_model(modalities: Sequence[str] = ("text",)) -> Any:
    """``imagebind_tiny`` (by default its text encoder only) with seeded random weights, the same in every
    process for the same ``modalities``."""
    import torch

    import bindkit

    torch.manual_seed(SEED)
    return bindkit.build_model("imagebind_tiny", modalities=list(modalities))


def save_weights(path: Path, modalities: Sequence[str] = ("text",)) -> Path:
    """Write :func:`text_model`'s weights (reference layout) where ``--weights`` can load them: the text encoder
    serves ``bindkit search --text``; ``bindkit index build`` loads every encoder (pass all of them)."""
    import torch

    from bindkit.models.reference_layout import to_reference

    model = text_model(modalities)
    torch.save({to_reference(k) or k: v for k, v in model.encoders.state_dict().items()}, path)
    return path


def text_index(path: Path, texts: Sequence[str]) -> Path:
    """An index at ``path`` holding ``texts``, made with :func:`text_model`."""
    from bindkit.index import Index

    with Index.create(path, model=text_model()) as ix:
        ix.add(list(texts), modality="text")
    return path


def randomise_adapters(model: Any, seed: int, scale: float = 0.2) -> None:
    """Give every LoRA adapter of ``model`` seeded random B matrices (fresh adapters are a no-op: B is zero), so
    that they change the outputs."""
    import torch

    from bindkit.adapt import LoRALinear

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, LoRALinear):
                for adapter in mod.lora_adapters.values():
                    adapter.B.copy_(torch.randn(adapter.B.shape, generator=g) * scale)
