"""The model directory of a LoRA run (``bindkit train --lora``): adapters plus a pointer to their base model.

::

    DIR/
      card.json                    the base's architecture under the run's name (what load_card(DIR) returns)
      manifest.json                format "bindkit-lora-model"; "base": the base model (its card, its location by
                                   absolute path and relative to DIR — or card name + weights —, its modalities
                                   and the fingerprint of every encoder); "lora": r, alpha, targets, head;
                                   "files": per adapted encoder its adapter file, bytes, sha256, fingerprint
      <encoder>.lora.safetensors   one adapter per adapted encoder (:func:`bindkit.adapt.save_adapter`)

``bindkit.load_model(DIR)`` (and so ``--model DIR`` in every command) loads the base, checks that each of its
encoders still has the recorded fingerprint, applies the adapters and returns a model named after the run. A
base that moved can be given with ``weights=NEW_PATH`` (``--weights NEW_PATH``). A base that is missing or whose
weights changed is refused, naming both locations or both fingerprints.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, TYPE_CHECKING

import torch
from torch import nn

from ..cards import load_card, model_dir
from ..errors import BindkitError, CheckpointError
from ..fileio import atomic_path, atomic_write_bytes, hash_file_into
from .lora import (adapter_names, base_fingerprint, head_owner, load_adapter, lora_modules, merge_adapters,
                   read_adapter, save_adapter)
from .spec import LoRASpec

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel

FORMAT = "bindkit-lora-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CARD_FILE = "card.json"
SUFFIX = ".lora.safetensors"


def read_lora_manifest(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of a LoRA model directory; None when ``directory`` is not one (any other folder or file)."""
    path = Path(os.fspath(directory)).expanduser() / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    if not isinstance(data.get("base"), dict) or not isinstance(data.get("files"), dict):
        raise CheckpointError(f"{path} is a damaged LoRA model manifest (no 'base' or 'files'); train it again")
    return data


def is_lora_dir(path: Any) -> bool:
    """True when ``path`` is a model directory written by ``bindkit train --lora``."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    return model_dir(path) is not None and read_lora_manifest(path) is not None


def describe_base(init: Any, weights: Any, model: "BindModel") -> dict[str, Any]:
    """How a LoRA directory finds its base again: ``init``/``weights`` as given to ``bindkit train`` (a model
    directory by absolute path; else a card name or card file, plus a weights path) and the fingerprint of each
    encoder of ``model`` (the base as loaded)."""
    directory = model_dir(init) if isinstance(init, (str, os.PathLike)) else None
    spec = None
    if directory is None:
        spec = str(Path(init).resolve()) if isinstance(init, (str, os.PathLike)) and Path(init).exists() else str(init)
    w = None
    if weights is not None:
        w = str(Path(weights).resolve()) if Path(weights).exists() else str(weights)
    return {"card": model.card.name, "path": str(directory.resolve()) if directory else None, "spec": spec,
            "weights": w, "modalities": list(model.modalities),
            "fingerprints": {m: base_fingerprint(model, m) for m in model.modalities}}


def _relative(base: Mapping[str, Any], home: Path) -> str | None:
    if not base.get("path"):
        return None
    try:
        return os.path.relpath(base["path"], home.resolve())
    except ValueError:  # another drive (Windows)
        return None


def write_lora_dir(directory: str | os.PathLike, model: "BindModel", card: Mapping[str, Any], base: Mapping[str, Any],
                   spec: LoRASpec, meta: Mapping[str, Any] | None = None, *,
                   home: str | os.PathLike | None = None) -> dict[str, Any]:
    """Write every encoder's adapter of ``model`` (one adapter each) and the card and manifest of a LoRA model
    directory; returns the manifest. ``home``: where the directory will finally live, if it is written elsewhere
    first (the base's relative path is computed from there)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    for enc in model.modalities:
        names = adapter_names(model, enc)
        if not names:
            continue
        if len(names) != 1:
            raise CheckpointError(f"the {enc} encoder has {len(names)} adapters ({', '.join(names)}); a LoRA model "
                                  "directory holds one per encoder")
        final = out / f"{enc}{SUFFIX}"
        with atomic_path(final) as tmp:
            save_adapter(model, enc, tmp, meta=meta, base_card=base["card"])
        n = sum(t.numel() for t in read_adapter(final)[0].values())
        files[enc] = {"file": final.name, "bytes": final.stat().st_size,
                      "sha256": hash_file_into(hashlib.sha256(), final).hexdigest(),
                      "fingerprint": model.fingerprint(enc), "base_fingerprint": base_fingerprint(model, enc),
                      "parameters": n, "head": head_owner(model.encoders[enc]) is not None}
    if not files:
        raise CheckpointError("the model has no LoRA adapter to write")
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "source": "bindkit train --lora",
                "card": card["name"], "base": {**base, "relative": _relative(base, Path(home or out))},
                "lora": spec.to_dict(), "modalities": list(base.get("modalities") or model.modalities),
                "files": files}
    card_obj = load_card(dict(card))  # validates
    atomic_write_bytes(out / CARD_FILE, (json.dumps(card_obj.to_dict(), indent=2) + "\n").encode())
    atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def refresh_base_link(directory: str | os.PathLike) -> None:
    """Recompute the manifest's path of the base relative to ``directory`` (after its files were copied there)."""
    out = Path(directory)
    manifest = read_lora_manifest(out)
    if manifest is None:
        return
    manifest["base"]["relative"] = _relative(manifest["base"], out)
    atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())


def _base_source(directory: Path, base: Mapping[str, Any], weights: Any) -> tuple[Any, Any, str]:
    """(spec, weights) to load the base with, and how to name it in messages."""
    if weights is not None:
        if model_dir(weights) is not None:
            return weights, None, str(weights)
        return load_card(directory), weights, f"{base.get('card')!r} with weights {weights}"
    candidates = []
    if base.get("relative"):
        candidates.append((directory / base["relative"]).resolve())
    if base.get("path"):
        candidates.append(Path(base["path"]))
    candidates = list(dict.fromkeys(candidates))
    if candidates:
        found = [c for c in candidates if model_dir(c) is not None]
        if not found:
            looked = " or ".join(str(c) for c in candidates)
            raise CheckpointError(
                f"LoRA model {directory} adapts the base model {base.get('card')!r} at {base.get('path')}, which is "
                f"missing (looked for {looked}); put it back, or pass where it is now: "
                f"bindkit.load_model({str(directory)!r}, weights=PATH) or --weights PATH")
        from ..weights.read import recorded_fingerprints

        wanted = base.get("fingerprints") or {}
        for c in found:  # the first copy whose recorded fingerprints match; else the first one (checked later)
            rec = recorded_fingerprints(c)
            if rec and all(rec.get(m) == fp for m, fp in wanted.items() if m in rec):
                return c, None, str(c)
        return found[0], None, str(found[0])
    spec = base.get("spec") or base.get("card")
    return spec, base.get("weights"), f"{spec!r}" + (f" with weights {base['weights']}" if base.get("weights") else "")


@dataclass(frozen=True)
class LoRABase:
    """Where the base of a LoRA model directory is, resolved once (see :func:`resolve_base`): ``spec`` and
    ``weights`` to load it with (a model directory, or a card plus weights), ``where`` to name it in messages, the
    encoders to load (None: all the base has), and the directory with its manifest."""

    directory: Path
    manifest: dict[str, Any]
    spec: Any
    weights: Any
    where: str
    modalities: list[str] | None


def resolve_base(directory: str | os.PathLike, weights: Any = None,
                 modalities: Iterable[str] | None = None) -> LoRABase:
    """Find the base of the LoRA model directory ``directory`` (``weights``: where it is now, if it moved).
    Loads nothing: :func:`bindkit.load_model` loads the base this returns, then :func:`attach_adapters`.

    Raises:
        CheckpointError: ``directory`` is not a LoRA model directory; the base is missing; the base found is
            itself a LoRA model directory (a base is a plain model: its card and weights).
    """
    from ..modality import canonical_modalities

    d = Path(os.fspath(directory)).expanduser()
    manifest = read_lora_manifest(d)
    if manifest is None:
        raise CheckpointError(f"{d} is not a LoRA model directory (no {MANIFEST} of format {FORMAT!r})")
    mods = canonical_modalities(modalities) if modalities is not None else list(manifest.get("modalities") or [])
    src, src_weights, where = _base_source(d, manifest["base"], weights)
    if is_lora_dir(src):
        raise CheckpointError(f"LoRA model {d}: its base {where} is itself a LoRA model directory; a base is a "
                              "plain model (a card and its weights): pass the model that LoRA run adapted")
    return LoRABase(d, manifest, src, src_weights, where, mods or None)


def base_load_error(exc: BindkitError, base: LoRABase) -> BindkitError:
    """``exc`` (raised loading ``base``) reworded to name the LoRA model and its base; ``exc`` itself when its
    type takes other constructor arguments."""
    try:
        return type(exc)(f"LoRA model {base.directory}: loading its base {base.where} failed: {exc}")
    except TypeError:  # an error type with other constructor arguments: keep it as it is
        return exc


def attach_adapters(model: "BindModel", base: LoRABase, *, adapters: Iterable[str | os.PathLike] | None = None,
                    quantize: str | None = None) -> Any:
    """Put the adapters of the LoRA model directory of ``base`` on ``model`` (its base, as loaded), then
    ``adapters`` (more adapter files, stacked on top); the model is renamed after the run. ``quantize="int8"``
    (or ``"bf16"``): the adapters are folded into the weights first (see :func:`quantize_adapted`).

    Raises:
        CheckpointError: one of the base's encoders has another fingerprint than the one the adapters were
            trained on (both named); a damaged adapter file.
    """
    from ..weights.verify import verify_file

    d, recorded = base.directory, base.manifest["base"]
    for enc in model.modalities:
        theirs, mine = (recorded.get("fingerprints") or {}).get(enc), model.fingerprint(enc)
        if theirs and mine != theirs:
            raise CheckpointError(
                f"LoRA model {d} was trained on the {enc} encoder of {recorded.get('card')!r} with fingerprint "
                f"{theirs}, but the base found at {base.where} has fingerprint {mine} for it: other weights. Put back "
                f"the base it was trained on (recorded at {recorded.get('path') or base.where}), or pass it with "
                "weights=PATH (--weights PATH)")
    for enc, info in base.manifest["files"].items():
        if enc in model.modalities:
            verify_file(d / info["file"], info, d / MANIFEST)  # the adapter's bytes against the manifest's sha256
            load_adapter(model, d / info["file"])
    for path in [adapters] if isinstance(adapters, (str, os.PathLike)) else (adapters or []):
        load_adapter(model, path)
    model.card = load_card(d).restrict(list(model.modalities))
    if quantize:
        quantize_adapted(model, quantize)
    return model.eval()


def quantize_adapted(model: "BindModel", mode: str) -> Any:
    """Quantise a model that carries LoRA adapters (``mode``: ``"int8"`` or ``"bf16"``): fold the adapters into
    plain Linear layers for good, keeping the adapted fingerprints, then :func:`bindkit.models.quantize.quantize_model`
    (which refuses live adapters: quantised layers could not apply them). Returns the model, in eval mode."""
    from ..models.quantize import quantize_model

    fingerprints = {m: model.fingerprint(m) for m in model.modalities}
    _fold(model)
    model._fingerprints.update(fingerprints)
    return quantize_model(model.eval(), mode)


def _fold(model: "BindModel") -> None:
    """Merge every adapter into its layer for good: each LoRA layer becomes a plain ``nn.Linear`` holding the
    merged weight (what int8 quantisation replaces)."""
    merge_adapters(model)
    for encoder in model.encoders.values():
        for path, mod in list(lora_modules(encoder)):
            plain = nn.Linear(mod.in_features, mod.out_features, bias=mod.bias is not None,
                              device=torch.device("meta"))
            plain.weight, plain.bias = mod.weight, mod.bias
            parent, _, child = path.rpartition(".")
            setattr(encoder.get_submodule(parent), child, plain)


def __getattr__(name: str) -> Any:
    # ``load_lora_model`` moved to :mod:`bindkit.factory`, beside the other loaders ``load_model`` dispatches to:
    # loading the base is the factory's job, and this module must not import it (the factory imports this one).
    # Looked up by name on first use, as the package's other lazy exports (``bindkit.adapt.__getattr__``).
    if name == "load_lora_model":
        return importlib.import_module("bindkit.factory").load_lora_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
