"""LoRA runs of ``bindkit train`` (``--lora``, or ``--init`` a LoRA model directory).

Rule: the encoders that train (in a manifest, not ``--freeze``-d) get a LoRA adapter — a fresh one, or the one
the ``--init`` LoRA directory holds for them, which then continues — and only the adapters train (plus those
encoders' heads with ``targets=...,head``). Every base weight stays bit-for-bit as loaded. Checkpoints and the
published model are LoRA model directories (:mod:`bindkit.adapt.lora_model`): adapter files plus a manifest
that points at the base, so ``bindkit.load_model(OUT)`` works as for any trained model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TYPE_CHECKING

import torch

from ..adapt.lora import adapter_names, apply_lora, head_owner, lora_modules, read_adapter
from ..adapt.lora_model import describe_base, read_lora_manifest, write_lora_dir
from ..adapt.spec import LoRASpec, parse_lora_spec
from ..cards import model_dir
from ..errors import ArgumentError, CardError
from ..factory import load_lora_model

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel

ADAPTER = "default"  #: the adapter name a run gives (one adapter per encoder in a LoRA directory)


@dataclass
class LoRARun:
    """What a LoRA run adapts and how its output finds its base."""

    spec: LoRASpec
    base: dict[str, Any]
    init_lora: Path | None = None
    adapted: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The ``lora`` entry of train_record.json."""
        return {**self.spec.to_dict(), "adapted": list(self.adapted), **self.counts, "base": self.base,
                **({"init": str(self.init_lora)} if self.init_lora else {})}


def wanted(lora: Any, init: Any) -> bool:
    """Whether a run is a LoRA run: ``lora`` given, or ``init`` is a LoRA model directory."""
    if lora is not None and lora is not False:
        return True
    return isinstance(init, (str, os.PathLike)) and read_lora_manifest(init) is not None


def normalise(lora: Any, init: Any) -> str | None:
    """``lora`` as canonical text (``r=8,alpha=16,targets=qkv,out,fc1,fc2``), or None when it asks for nothing
    specific and ``init`` is a LoRA directory (its adapters continue with their own settings)."""
    if lora is None or lora is True or lora == "":
        if isinstance(init, (str, os.PathLike)) and read_lora_manifest(init) is not None:
            return None
        return str(LoRASpec())
    return str(parse_lora_spec(lora))


def build(needed: Sequence[str], card: Any, init: Any, weights: Any, lora: Any, name: str,
          log: Callable[[str], None]) -> tuple[Any, dict[str, Any], dict[str, Any], LoRARun]:
    """(model: the base, with the --init directory's adapters if any; the card of the output; the init
    description for the record; the run)."""
    import bindkit

    if init is None:
        raise ArgumentError("--lora adapts an existing model: pass --init MODEL (the base the adapters are for)")
    if card is not None:
        raise ArgumentError("--card does not combine with --lora: a LoRA run keeps the --init model's "
                            "architecture and adds adapters to it")
    manifest = read_lora_manifest(init) if isinstance(init, (str, os.PathLike)) else None
    if manifest is not None:
        spec = _continued_spec(manifest, lora, init)
        model = load_lora_model(init, weights=weights)
        base = dict(manifest["base"])
        base.pop("relative", None)
        if weights is not None:  # the base moved: point the output at where it is now
            moved = model_dir(weights) is not None
            base = describe_base(weights if moved else base.get("spec") or base["card"], None if moved else weights,
                                 model)
        init_lora = Path(init).resolve()
        log(f"continuing the LoRA adapters of {init} ({', '.join(manifest['files'])}; {spec}) on base "
            f"{base.get('path') or base.get('spec') or base['card']}")
    else:
        spec = parse_lora_spec(lora)
        model = bindkit.load_model(init, weights=weights)
        base = describe_base(init, weights, model)
        init_lora = None
    absent = [m for m in needed if m not in model.modalities]
    if absent:
        raise CardError(f"--lora adapts the encoders of --init {init}, which has no {absent[0]} encoder (it has "
                        f"{', '.join(model.modalities)}); train a {absent[0]} encoder without --lora first, then "
                        "adapt it")
    full_card = model.card.to_dict()
    full_card["name"] = name
    full_card["description"] = (f"{name}: LoRA adapters ({spec}) on {base['card']} "
                                f"({base.get('path') or base.get('spec')}), trained by bindkit train --lora. "
                                + (model.card.description or ""))
    init_info = {"init": str(Path(init).resolve()) if model_dir(init) else str(init),
                 "weights": str(weights) if weights else None, "modalities": list(model.modalities),
                 "fingerprints": {m: model.fingerprint(m) for m in model.modalities}, "lora": True}
    return model, full_card, init_info, LoRARun(spec, base, init_lora)


def _continued_spec(manifest: Mapping[str, Any], lora: Any, init: Any) -> LoRASpec:
    recorded = parse_lora_spec(manifest.get("lora") or {})
    if lora is None or lora is True or lora == "":
        return recorded
    asked = parse_lora_spec(lora)
    if asked != recorded:
        raise ArgumentError(f"--init {init} holds LoRA adapters with {recorded}, but --lora asks for {asked}: drop "
                            "--lora to continue those adapters, or start new ones from the base model")
    return recorded


def adapter_parameters_of(model: "BindModel", enc: str) -> list[torch.nn.Parameter]:
    """A and B of every adapter on ``enc``'s encoder, in module order."""
    return [p for _, m in lora_modules(model.encoders[enc]) for a in m.lora_adapters.values() for p in (a.A, a.B)]


def setup(model: "BindModel", run: LoRARun, trainable: Sequence[str], seed: int, log: Callable[[str], None]) -> int:
    """Give every encoder in ``trainable`` an adapter (fresh, or the continued one), freeze everything else,
    log and record the counts; returns the number of trainable parameters."""
    fresh = [m for m in trainable if not adapter_names(model, m)]
    if fresh:
        torch.manual_seed(seed)  # A's initialisation
        apply_lora(model, fresh, run.spec.r, run.spec.alpha, run.spec.targets, name=ADAPTER,
                   train_head=run.spec.head)
    for p in model.parameters():
        p.requires_grad_(False)
    adapters, heads = [], []
    for m in trainable:
        adapters += adapter_parameters_of(model, m)
        if run.spec.head:
            encoder = model.encoders[m]
            if head_owner(encoder) is None:
                raise ArgumentError(f"the {m} adapter of --init was trained without its head; a run with "
                                    "targets=...,head cannot add it (start new adapters from the base model)")
            heads += list(encoder.head.parameters())
    for p in adapters + heads:
        p.requires_grad_(True)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    run.adapted = list(trainable)
    run.counts = {"trainable_parameters": n, "adapter_parameters": sum(p.numel() for p in adapters),
                  "head_parameters": sum(p.numel() for p in heads),
                  "base_parameters": sum(p.numel() for n_, p in model.named_parameters()
                                         if ".lora_adapters." not in n_)}
    kept = [m for m in model.modalities if m not in trainable and adapter_names(model, m)]
    log(f"LoRA {run.spec} on {', '.join(trainable)}: {n:,} trainable parameters "
        f"({run.counts['adapter_parameters']:,} in adapters"
        + (f" + {run.counts['head_parameters']:,} in heads" if run.spec.head else "")
        + f"); the base model's {run.counts['base_parameters']:,} parameters stay frozen"
        + (f"; adapters of {', '.join(kept)} kept unchanged" if kept else ""))
    return n


def load_values(model: "BindModel", directory: Path) -> None:
    """Copy the adapter (and head) values of a LoRA checkpoint ``directory`` into ``model``'s adapters
    (resume: the adapters exist already, with the same modules)."""
    manifest = read_lora_manifest(directory)
    for enc, info in (manifest or {}).get("files", {}).items():
        tensors, _ = read_adapter(directory / info["file"])
        encoder = model.encoders[enc]
        with torch.no_grad():
            for key, t in tensors.items():
                if key.startswith("head."):
                    encoder.get_parameter(key).copy_(t)
                    continue
                mpath, _, part = key.rpartition(".")
                adapter = next(iter(encoder.get_submodule(mpath).lora_adapters.values()))  # one per encoder
                getattr(adapter, part.removeprefix("lora_")).copy_(t)


def write(directory: Path, model: "BindModel", run: LoRARun, card: Mapping[str, Any], meta: Mapping[str, Any],
          home: Path) -> dict[str, Any]:
    """Write a LoRA model directory (a checkpoint, or the published model) of the run's current state."""
    return write_lora_dir(directory, model, card, run.base, run.spec, meta, home=home)
