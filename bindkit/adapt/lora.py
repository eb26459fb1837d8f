"""LoRA adapters on the attention and MLP projections of bindkit encoders.

A :class:`LoRALinear` replaces one ``nn.Linear`` of a trunk block and *shares* its ``weight``/``bias`` parameters
(same objects, same state-dict keys), adding named low-rank updates ``W + (alpha / r) * B @ A``. ``A`` starts
Kaiming-uniform and ``B`` at zero, so a fresh adapter is an exact no-op. Several adapters can stack on one module
(their updates add). The adapter parameters live under ``<module>.lora_adapters.<name>.{A,B}``.

Targets (per trunk block): ``qkv`` -> ``attn.qkv`` (the fused q/k/v projection, an ``nn.Linear``), ``out`` ->
``attn.proj``, ``fc1`` -> ``mlp.fc1``, ``fc2`` -> ``mlp.fc2``.

An adapted encoder reports its own fingerprint, ``<base>~lora:<digest>`` (see :func:`adapter_digest`): an index
built with the base encoder refuses it and vice versa. ``~`` (not ``+``) keeps it apart from the precision
variants (``+int8``) an index tolerates for search.

``apply_lora(..., train_head=True)`` also trains the adapted encoders' heads (LayerNorm + projection) in place;
the adapter then owns those heads: its file holds their values and its digest covers them.

Files (:func:`save_adapter`): one safetensors file per adapted modality, tensors keyed
``<module path in the encoder>.lora_A`` / ``.lora_B`` (e.g. ``trunk.blocks.0.attn.qkv.lora_A``) — plus
``head.norm.weight``, ``head.norm.bias``, ``head.proj.weight`` when the adapter owns the head — with string
metadata ``format``, ``modality``, ``base_card``, ``base_fingerprint``, ``rank``, ``alpha``, ``targets`` (with
``head`` when it owns it), ``name`` and ``meta`` (JSON of whatever the caller recorded, e.g. a training record).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArgumentError, CheckpointError, ModalityError
from ..models.extensions import register_extension
from .spec import DEFAULT_TARGETS, HEAD, TARGETS
from .spec import parse_targets as _parse_targets

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel

FORMAT = "bindkit-lora/1"
#: Separator between an encoder's base fingerprint and its adapter digest.
SEP = "~lora:"
#: Attribute of an encoder naming the adapter that owns (trained) its head.
_HEAD_OWNER = "_lora_head_owner"


class LoRAAdapter(nn.Module):
    """One low-rank update ``scaling * B @ A`` (A: r x in, B: out x r, scaling = alpha / r)."""

    def __init__(self, in_features: int, out_features: int, r: int, alpha: float,
                 device: Any = None, dtype: torch.dtype | None = None):
        super().__init__()
        if int(r) < 1:
            raise ArgumentError(f"LoRA rank must be >= 1, got {r}")
        self.r, self.alpha = int(r), float(alpha)
        self.scaling = self.alpha / self.r
        self.A = nn.Parameter(torch.empty(self.r, in_features, device=device, dtype=dtype))
        self.B = nn.Parameter(torch.zeros(out_features, self.r, device=device, dtype=dtype))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # as nn.Linear / the LoRA paper's reference code

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.A), self.B) * self.scaling

    def delta(self) -> torch.Tensor:
        """The dense update (out x in), computed in float32."""
        return (self.B.detach().float() @ self.A.detach().float()) * self.scaling

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}"


class LoRALinear(nn.Linear):
    """An ``nn.Linear`` plus named LoRA adapters; shares the wrapped layer's weight and bias parameters."""

    def __init__(self, base: nn.Linear):
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight  # the same Parameter objects: optimisers, state-dict keys and identity kept
        self.bias = base.bias
        self.lora_adapters = nn.ModuleDict()
        self.merged = False
        self._orig_weight: torch.Tensor | None = None

    def add_adapter(self, name: str, r: int, alpha: float) -> LoRAAdapter:
        if self.merged:
            raise ArgumentError("adapters are merged into this model's weights; unmerge_adapters(model) first")
        if name in self.lora_adapters:
            raise ArgumentError(f"an adapter named {name!r} is already applied; choose another name")
        w = self.weight
        adapter = LoRAAdapter(self.in_features, self.out_features, r, alpha, device=w.device, dtype=w.dtype)
        self.lora_adapters[name] = adapter
        return adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        if not self.merged:
            for adapter in self.lora_adapters.values():
                out = out + adapter(x)
        return out

    def dense_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight this layer applies, with its unmerged adapters added (differentiable, for computations that
        use the weight directly: ``bindkit.models.transformer.dense_weight``), and its bias."""
        weight = self.weight
        if not self.merged:
            for adapter in self.lora_adapters.values():
                weight = weight + (adapter.B @ adapter.A) * adapter.scaling
        return weight, self.bias

    def merge(self) -> None:
        """Fold every adapter into ``weight`` (the original tensor is kept for an exact :meth:`unmerge`)."""
        if self.merged or not len(self.lora_adapters):
            return
        with torch.no_grad():
            # new storage, not an in-place write: the loaded weight may share memory with the caller's state dict
            # (load_model assigns the checkpoint's tensors), which a merge must never change
            self._orig_weight = self.weight.data
            delta = sum(a.delta() for a in self.lora_adapters.values())
            self.weight.data = (self.weight.data.float() + delta).to(self.weight.dtype)
        self.merged = True

    def unmerge(self) -> None:
        """Restore the weights exactly as they were before :meth:`merge`."""
        if not self.merged:
            return
        self.weight.data = self._orig_weight
        self._orig_weight = None
        self.merged = False

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, adapters={list(self.lora_adapters)}, merged={self.merged}"


# ---------------------------------------------------------------------------------------------------- helpers


def _encoder_names(model: "BindModel", modalities: Iterable[str] | str | None) -> list[str]:
    from ..modality import encoder_of

    if modalities is None:
        return list(model.modalities)
    if isinstance(modalities, str):
        modalities = [m for m in modalities.split(",") if m.strip()]
    out: list[str] = []
    for m in modalities:
        enc = model._encoder(m.strip()).name  # ModalityError for unknown / absent ones
        if encoder_of(enc) not in out:
            out.append(enc)
    return out


def _targets_of(path: str) -> str | None:
    for target, suffix in TARGETS.items():
        if path.startswith("trunk.blocks.") and path.endswith("." + suffix):
            return target
    return None


def lora_modules(encoder: nn.Module) -> Iterator[tuple[str, LoRALinear]]:
    """(path in the encoder, module) of every :class:`LoRALinear` of ``encoder``."""
    for path, mod in encoder.named_modules():
        if isinstance(mod, LoRALinear):
            yield path, mod


def _wrap(encoder: nn.Module, path: str) -> LoRALinear:
    parent_path, _, child = path.rpartition(".")
    parent = encoder.get_submodule(parent_path)
    mod = getattr(parent, child)
    if isinstance(mod, LoRALinear):
        return mod
    if type(mod) is not nn.Linear:
        raise ArgumentError(f"cannot put a LoRA adapter on {path} ({type(mod).__name__}); LoRA needs a float "
                            "nn.Linear (load the model without quantize=)")
    wrapped = LoRALinear(mod)
    setattr(parent, child, wrapped)
    return wrapped


def _check_adaptable(model: "BindModel") -> None:
    if getattr(model, "quantized", None):
        raise ArgumentError(f"this model is quantised ({model.quantized}); apply LoRA adapters to a float model "
                            "(merge them, then quantise)")
    if any(m.merged for enc in model.encoders.values() for _, m in lora_modules(enc)):
        raise ArgumentError("adapters are merged into this model's weights; unmerge_adapters(model) first")


def base_fingerprint(model: "BindModel", modality: str) -> str:
    """The fingerprint of ``modality``'s encoder without its adapters."""
    return model.fingerprint(modality).split(SEP, 1)[0]


def head_owner(encoder: nn.Module) -> str | None:
    """The name of the adapter whose training replaced ``encoder``'s head, or None."""
    return getattr(encoder, _HEAD_OWNER, None)


def _head_tensors(encoder: nn.Module) -> dict[str, torch.Tensor]:
    return {f"head.{k}": t for k, t in encoder.head.state_dict().items()}


def adapter_digest(encoder: nn.Module) -> str | None:
    """A digest of every adapter on ``encoder`` (module paths, ranks, alphas, A and B values, and the head's
    values for the adapter that owns it), independent of the adapters' names and of the order they were applied
    in; None when it has none."""
    per_adapter: dict[str, hashlib.blake2b] = {}
    for path, mod in lora_modules(encoder):
        for name, a in mod.lora_adapters.items():
            h = per_adapter.setdefault(name, hashlib.blake2b(digest_size=16))
            h.update(f"{path}|{a.r}|{a.alpha!r}|".encode())
            for t in (a.A, a.B):
                h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    owner = head_owner(encoder)
    if owner is not None and owner in per_adapter:
        for key, t in sorted(_head_tensors(encoder).items()):
            per_adapter[owner].update(f"{key}|".encode())
            per_adapter[owner].update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    if not per_adapter:
        return None
    total = hashlib.blake2b(digest_size=8)
    for d in sorted(h.hexdigest() for h in per_adapter.values()):
        total.update(d.encode())
    return total.hexdigest()


def adapter_parameters(model: "BindModel") -> list[nn.Parameter]:
    """Every LoRA parameter (A and B of every adapter) of ``model``."""
    return [p for enc in model.encoders.values() for _, m in lora_modules(enc)
            for a in m.lora_adapters.values() for p in (a.A, a.B)]


# ---------------------------------------------------------------------------------------------------- public API


def apply_lora(model: "BindModel", modalities: Iterable[str] | str | None = None, r: int = 8, alpha: float = 16,
               targets: Iterable[str] | str = DEFAULT_TARGETS, *, name: str = "default",
               train_head: bool = False) -> int:
    """Add a fresh LoRA adapter ``name`` to the ``targets`` projections of every trunk block of ``modalities``'
    encoders (default: all), and freeze every parameter of ``model`` except the new adapters (and the heads of
    those encoders if ``train_head``: the adapter then owns them, see :func:`save_adapter`). Returns the number
    of trainable parameters.

    The base fingerprints are taken first, so the adapted encoders report ``<base>~lora:<digest>``.
    """
    _check_adaptable(model)
    encs = _encoder_names(model, modalities)
    wanted = _parse_targets(targets)
    if int(r) < 1 or not float(alpha) > 0:
        raise ArgumentError(f"LoRA needs rank >= 1 and alpha > 0, got r={r}, alpha={alpha}")
    for enc in encs:
        model.fingerprint(enc)  # cache the base fingerprint before any module changes
    new: list[nn.Parameter] = []
    for enc in encs:
        encoder = model.encoders[enc]
        paths = [p for p, m in encoder.named_modules() if _targets_of(p) in wanted]
        if not paths:
            raise ArgumentError(f"the {enc} encoder has no {', '.join(wanted)} projections to adapt")
        for path in paths:
            if name in getattr(encoder.get_submodule(path), "lora_adapters", {}):
                raise ArgumentError(f"the {enc} encoder already has an adapter named {name!r}; pass name=...")
        if train_head and head_owner(encoder) is not None:
            raise ArgumentError(f"the {enc} encoder's head was trained with adapter {head_owner(encoder)!r}; "
                                "a second adapter cannot train it too (apply this one without train_head)")
        for path in paths:
            adapter = _wrap(encoder, path).add_adapter(name, r, alpha)
            new += [adapter.A, adapter.B]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in new:
        p.requires_grad_(True)
    if train_head:
        for enc in encs:
            setattr(model.encoders[enc], _HEAD_OWNER, name)
            for p in model.encoders[enc].head.parameters():
                p.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def merge_adapters(model: "BindModel") -> Any:
    """Fold every adapter into its layer's weight (faster inference; fingerprints unchanged). Returns ``model``."""
    for enc in model.encoders.values():
        for _, m in lora_modules(enc):
            m.merge()
    return model


def unmerge_adapters(model: "BindModel") -> Any:
    """Undo :func:`merge_adapters`: the weights become exactly what they were. Returns ``model``."""
    for enc in model.encoders.values():
        for _, m in lora_modules(enc):
            m.unmerge()
    return model


def adapter_names(model: "BindModel", modality: str) -> list[str]:
    """Names of the adapters on ``modality``'s encoder, in the order they were applied."""
    names: dict[str, None] = {}
    for _, m in lora_modules(model._encoder(modality)):
        names.update(dict.fromkeys(m.lora_adapters))
    return list(names)


def save_adapter(model: "BindModel", modality: str, path: str | os.PathLike, meta: Mapping[str, Any] | None = None,
                 *, name: str | None = None, base_card: str | None = None) -> Path:
    """Write adapter ``name`` (default: the encoder's only one) of ``modality``'s encoder to a safetensors file
    (with the encoder's head when the adapter owns it).

    Returns the path written. ``meta`` (JSON-serialisable) is stored under the ``meta`` metadata key;
    ``base_card`` names the base model's card (default: ``model.card.name``).
    """
    from safetensors.torch import save_file

    encoder = model._encoder(modality)
    enc = encoder.name
    names = adapter_names(model, enc)
    if name is None:
        if len(names) != 1:
            raise ArgumentError(f"the {enc} encoder has {len(names)} adapters ({', '.join(names) or 'none'}); "
                                "pass name= to choose one" if names else
                                f"the {enc} encoder has no LoRA adapter; apply_lora(model, [{enc!r}]) first")
        name = names[0]
    tensors: dict[str, torch.Tensor] = {}
    ranks, alphas, targets = set(), set(), []
    for mpath, m in lora_modules(encoder):
        a = m.lora_adapters[name] if name in m.lora_adapters else None
        if a is None:
            continue
        tensors[f"{mpath}.lora_A"] = a.A.detach().to("cpu").contiguous().clone()
        tensors[f"{mpath}.lora_B"] = a.B.detach().to("cpu").contiguous().clone()
        ranks.add(a.r)
        alphas.add(a.alpha)
        t = _targets_of(mpath)
        if t not in targets:
            targets.append(t)
    if not tensors:
        raise ArgumentError(f"the {enc} encoder has no adapter named {name!r} (it has: {', '.join(names) or 'none'})")
    owns_head = head_owner(encoder) == name
    if owns_head:
        tensors.update({k: t.detach().to("cpu").contiguous().clone() for k, t in _head_tensors(encoder).items()})
    metadata = {
        "format": FORMAT,
        "modality": enc,
        "name": name,
        "base_card": base_card or model.card.name,
        "base_fingerprint": base_fingerprint(model, enc),
        "rank": ",".join(str(r) for r in sorted(ranks)),
        "alpha": ",".join(f"{a:g}" for a in sorted(alphas)),
        "targets": ",".join([t for t in DEFAULT_TARGETS if t in targets] + ([HEAD] if owns_head else [])),
        "meta": json.dumps(dict(meta or {}), sort_keys=True, default=str),
    }
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata=metadata)
    return out


def read_adapter(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of an adapter file; CheckpointError if it is not one."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"adapter file {p} does not exist")
    try:
        with safe_open(str(p), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for damaged files
        raise CheckpointError(f"adapter file {p} is not a readable safetensors file ({e})") from e
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a bindkit LoRA adapter (metadata format {metadata.get('format')!r}, "
                              f"expected {FORMAT!r}); write adapters with bindkit.adapt.save_adapter")
    return tensors, metadata


def load_adapter(model: "BindModel", path: str | os.PathLike, *, name: str | None = None,
                 trainable: bool = False) -> str:
    """Apply the adapter saved at ``path`` to ``model`` (stacking on any adapters already there); returns the
    name it got (``name``, else the one recorded, made unique).

    Raises:
        CheckpointError: not an adapter file, made for other base weights (both fingerprints named), or its
            modules/shapes do not match the encoder.
        ModalityError: the model lacks the adapter's encoder.
    """
    tensors, meta = read_adapter(path)
    enc = meta.get("modality", "")
    if enc not in model.encoders:
        raise ModalityError(f"adapter {path} is for the {enc!r} encoder, which this model was built without "
                            f"(it has: {', '.join(model.modalities)}); load the model with that modality")
    _check_adaptable(model)
    mine, theirs = base_fingerprint(model, enc), meta.get("base_fingerprint", "")
    if mine != theirs:
        raise CheckpointError(
            f"adapter {path} was trained on the {enc} encoder of {meta.get('base_card')!r} with fingerprint "
            f"{theirs}, but this model's {enc} encoder ({model.card.name!r}) has fingerprint {mine}: other base "
            "weights; load it on the model it was trained from")
    encoder = model.encoders[enc]
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    head = {k: t for k, t in tensors.items() if k.startswith("head.")}
    if head:
        want = _head_tensors(encoder)
        if set(head) != set(want) or any(tuple(t.shape) != tuple(want[k].shape) for k, t in head.items()):
            raise CheckpointError(f"adapter {path}: its head tensors ({', '.join(sorted(head))}) do not fit the "
                                  f"{enc} encoder's head ({', '.join(sorted(want))})")
        if head_owner(encoder) is not None:
            raise CheckpointError(f"adapter {path} replaces the {enc} encoder's head, which adapter "
                                  f"{head_owner(encoder)!r} already replaced; load only one head-training adapter")
    for key, t in tensors.items():
        if key in head:
            continue
        mpath, _, part = key.rpartition(".")
        if part not in ("lora_A", "lora_B") or _targets_of(mpath) is None:
            raise CheckpointError(f"adapter {path}: unexpected tensor {key!r}")
        pairs.setdefault(mpath, {})[part] = t
    for mpath, ab in pairs.items():
        if set(ab) != {"lora_A", "lora_B"}:
            raise CheckpointError(f"adapter {path}: {mpath} lacks {({'lora_A', 'lora_B'} - set(ab)).pop()}")
        try:
            mod = encoder.get_submodule(mpath)
        except AttributeError:
            raise CheckpointError(f"adapter {path}: the {enc} encoder has no module {mpath}") from None
        A, B = ab["lora_A"], ab["lora_B"]
        if A.ndim != 2 or B.ndim != 2 or A.shape[0] != B.shape[1] or A.shape[1] != mod.in_features \
                or B.shape[0] != mod.out_features:
            raise CheckpointError(f"adapter {path}: {mpath} has A {tuple(A.shape)} and B {tuple(B.shape)}, which "
                                  f"do not fit a {mod.in_features}->{mod.out_features} projection")
    alpha = float(meta.get("alpha", "nan").split(",")[0])
    base = name or meta.get("name") or Path(path).stem
    existing = set(adapter_names(model, enc))
    final, i = base, 1
    while final in existing:
        i += 1
        final = f"{base}_{i}"
    if name is not None and final != name:
        raise ArgumentError(f"the {enc} encoder already has an adapter named {name!r}")
    for mpath, ab in pairs.items():
        A, B = ab["lora_A"], ab["lora_B"]
        adapter = _wrap(encoder, mpath).add_adapter(final, A.shape[0], alpha)
        with torch.no_grad():
            adapter.A.copy_(A)
            adapter.B.copy_(B)
        adapter.requires_grad_(trainable)
    if head:
        with torch.no_grad():
            for key, t in head.items():
                encoder.get_parameter(key).copy_(t)
        setattr(encoder, _HEAD_OWNER, final)
        encoder.head.requires_grad_(trainable)
    return final


class _LoRAExtension:
    """LoRA as a model extension (:mod:`bindkit.models.extensions`): the core asks it for fingerprints and merges."""

    def owns_key(self, key: str) -> bool:
        return ".lora_adapters." in key

    def fingerprint_suffix(self, encoder: nn.Module) -> str | None:
        digest = adapter_digest(encoder)
        return None if digest is None else f"{SEP}{digest}"

    def merge(self, model: "BindModel") -> None:
        merge_adapters(model)

    def unmerge(self, model: "BindModel") -> None:
        unmerge_adapters(model)


register_extension("lora", _LoRAExtension())
