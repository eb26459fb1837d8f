"""``build_model`` / ``load_model``: turn a card (name, path, dict) and optional weights into a BindModel.

``load_model`` is one dispatcher: :func:`spec_kind` decides once what it was given, and one loader runs —
:func:`load_card_model` for a card, a model directory or a distilled student, :func:`load_lora_model` for the
directory of a LoRA run (its base through :func:`load_card_model`, then :mod:`bindkit.adapt.lora_model` attaches
the adapters). Neither calls ``load_model`` again, and :mod:`bindkit.adapt` never imports this module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Iterable, Literal

import torch
from torch import nn

from .cards import Card, CardSpec, load_card, model_dir
from .errors import BindkitError, CheckpointError, DeviceError, ModalityError, WeightsNotFoundError
from .modality import ENCODERS, canonical_modalities
from .models import BindModel, Encoder, encoder_fingerprint
from .models import reference_layout as layout
from .models.fastinit import skip_meta_init
from .weights.convert import parse_dtype as _parse_dtype

_SHOW = 5  # how many offending keys an error message lists


def _resolve_modalities(card: Card, modalities: Iterable[str] | None) -> list[str]:
    if modalities is None:
        return [m for m in ENCODERS if m in card.modalities]
    wanted = canonical_modalities(modalities)  # aliases resolved, ENCODERS order; ModalityError when unknown
    if not wanted:
        raise ModalityError("modalities=[] selects no encoder; pass None for all of them")
    absent = [m for m in wanted if m not in card.modalities]
    if absent:
        raise ModalityError(f"card {card.name!r} has no {absent[0]!r} encoder (it has: {', '.join(card.modalities)})")
    return wanted


def resolve_device(device: "str | torch.device") -> torch.device:
    """``device`` as a torch.device; DeviceError for a malformed name or a GPU this machine does not have."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {device!r}; use cpu, cuda, cuda:N, mps or meta") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"device {device!r}: CUDA is not available on this machine; use device='cpu'")
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"device {device!r}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {device!r}: MPS is not available on this machine; use device='cpu'")
    return dev


def auto_device() -> torch.device:
    """The device that commands, training and distillation use when none is given: ``$BINDKIT_DEVICE`` when set
    (e.g. ``cpu`` to keep a GPU machine's jobs, or a test run, on the CPU; a bare ``cuda`` means the process's
    GPU, as below), else ``cuda:<LOCAL_RANK>`` when CUDA is available (one GPU per torchrun process), else the CPU.
    DeviceError naming the variable for a bad value."""
    env = os.environ.get("BINDKIT_DEVICE", "").strip()
    if env:
        try:
            dev = resolve_device(env)
        except DeviceError as exc:
            raise DeviceError(f"BINDKIT_DEVICE={env!r}: {exc}") from None
        if dev.type != "cuda" or dev.index is not None:
            return dev
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    return torch.device("cpu")


def _init_weights(model: nn.Module) -> None:
    """Random initialisation for training from scratch: truncated normal 0.02 for the class tokens, position and
    token embeddings and the learned bias key/values (zeros by construction); linears keep PyTorch's default.
    Encoders taken from open_clip keep open_clip's own initialisation."""
    for encoder in model.encoders.values():
        if not isinstance(encoder, Encoder):
            continue
        for name, p in encoder.named_parameters():
            if name.endswith(("cls_token", "pos_embed", "bias_k", "bias_v")) or "token_embedding" in name:
                nn.init.trunc_normal_(p, std=0.02)


def build_model(
    spec: CardSpec,
    modalities: Iterable[str] | None = None,
    device: "str | torch.device" = "cpu",
    dtype: "torch.dtype | str | None" = None,
) -> BindModel:
    """Build the architecture a card describes, with random weights, in eval mode.

    Encoders a card takes from open_clip (``"source": "open_clip"``) come with the open_clip weights the card
    names (``open_clip.pretrained``: a tag in the local open_clip cache, or a checkpoint file; open_clip's random
    initialisation when null): they are the fixed anchor that ``bindkit train`` binds the other encoders to. See
    :mod:`bindkit.models.open_clip_tower`.

    Args:
        spec: card name (``"imagebind_huge"``), path to a card JSON, a card dict, or a dict of the reference
            constructor's hyper-parameters (``{"vision_embed_dim": 64, ...}``).
        modalities: encoders to build (``image``/``video`` mean ``vision``); None builds all the card has.
            The others are not built and cost no memory.
        device: ``"meta"`` allocates nothing (for counting parameters or validating checkpoint layouts).
        dtype: parameter dtype (default float32).

    Raises:
        WeightsNotFoundError: a card's open_clip weights are not in the local cache (the message says how to
            fetch them).
    """
    card = load_card(spec)
    mods = _resolve_modalities(card, modalities)
    device = resolve_device(device)
    checkpoint = None
    if device.type != "meta" and any(m in mods for m in card.open_clip_modalities):
        from .models.open_clip_tower import resolve_checkpoint

        checkpoint = resolve_checkpoint(card)  # before building: a missing file fails fast
    with device:
        model = BindModel(card, mods)
    if device.type != "meta":
        with torch.no_grad():
            _init_weights(model)
            if checkpoint is not None:
                from .models.open_clip_tower import load_pretrained

                load_pretrained(model, checkpoint)
    dt = _parse_dtype(dtype)
    if dt is not None:
        model.to(dt)
    return model.eval()


def _summary(keys: list[str], what: str) -> str:
    shown = ", ".join(keys[:_SHOW]) + (f", … (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else "")
    return f"{len(keys)} {what}: {shown}"


def _is_causal_mask(mask: torch.Tensor) -> bool:
    upper = torch.ones_like(mask, dtype=torch.bool).triu(1)
    return bool(torch.isneginf(mask[upper]).all() and (mask[~upper] == 0).all())


def _to_our_layout(state: Mapping[str, torch.Tensor], model: BindModel) -> dict[str, torch.Tensor]:
    """Map a reference-layout (or bindkit-layout) state dict onto ``model.encoders``; strict: raises
    CheckpointError naming missing, unexpected and mis-shaped keys (reference names)."""
    keys = list(state)
    if not keys:
        raise CheckpointError("the checkpoint holds no tensors")
    reference = layout.is_reference_layout(keys)
    if not reference and not any(k.split(".")[0] in ENCODERS for k in keys):
        raise CheckpointError(
            "this is not an ImageBind-layout checkpoint (no 'modality_*' keys); it looks like a checkpoint of "
            f"another architecture (first keys: {', '.join(keys[:3])})"
        )
    wanted = model.encoders.state_dict()
    name = (lambda k: layout.to_reference(k) or k) if reference else (lambda k: k)
    out: dict[str, torch.Tensor] = {}
    unexpected, mismatched = [], []
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"checkpoint entry {key!r} is a {type(tensor).__name__}, not a tensor")
        ours = layout.to_ours(key) if reference else key
        enc = ours.split(".")[0] if ours else layout.encoder_of_key(key)
        if enc in ENCODERS and enc not in model.encoders:
            continue  # an encoder the caller did not ask for
        if ours is None or ours not in wanted:
            unexpected.append(key)
        elif tuple(tensor.shape) != tuple(wanted[ours].shape):
            mismatched.append(f"{key} {list(tensor.shape)} vs model {list(wanted[ours].shape)}")
        elif ours == "text.stem.mask" and tensor.device.type != "meta" and not _is_causal_mask(tensor):
            mismatched.append(f"{key} (not the causal mask the text encoder was trained with)")
        else:
            out[ours] = tensor
    missing = [name(k) for k in wanted if k not in out]
    problems = []
    if missing:
        problems.append(_summary(missing, "missing key(s)"))
    if unexpected:
        problems.append(_summary(unexpected, "unexpected key(s)"))
    if mismatched:
        problems.append(_summary(mismatched, "shape mismatch(es)"))
    if problems:
        hint = (" — is this a checkpoint for another card (other widths/depths)?" if mismatched or unexpected
                else "")
        raise CheckpointError(
            f"checkpoint does not match card {model.card.name!r} (encoders {', '.join(model.modalities)}): "
            + "; ".join(problems) + hint
        )
    return out


#: What :func:`load_model` was given, decided once by :func:`spec_kind`.
SpecKind = Literal["card", "model_dir", "lora_dir", "student"]
_MANIFEST = "manifest.json"  # beside card.json in a model directory (weights.read / adapt.lora_model)


def spec_kind(spec: Any) -> SpecKind:
    """Which loader :func:`load_model` uses for ``spec``: ``"lora_dir"`` (a model directory written by ``bindkit
    train --lora``: adapters on a base), ``"student"`` (one written by ``bindkit distill``), ``"model_dir"`` (any
    other directory holding ``card.json``), else ``"card"`` (a card name, file, dict or Card)."""
    directory = model_dir(spec)
    if directory is None:
        return "card"
    manifest = directory / _MANIFEST
    if manifest.is_file():
        from .adapt.lora_model import is_lora_dir

        if is_lora_dir(directory):
            return "lora_dir"
        try:
            record = json.loads(manifest.read_text())
        except (OSError, ValueError):
            record = None
        if isinstance(record, dict) and "distilled" in record:
            return "student"
    return "model_dir"


def load_model(
    spec: CardSpec,
    weights: "str | os.PathLike | Mapping[str, torch.Tensor] | None" = None,
    modalities: Iterable[str] | None = None,
    device: "str | torch.device" = "cpu",
    dtype: "torch.dtype | str | None" = None,
    *,
    download: bool = True,
    quantize: str | None = None,
    adapters: "Iterable[str | os.PathLike] | None" = None,
) -> BindModel:
    """Build a card's architecture and load its weights strictly, in eval mode.

    Args:
        spec: as for :func:`build_model`, or a model directory (``card.json`` + ``<modality>.safetensors`` +
            ``manifest.json``, as ``bindkit train`` and ``bindkit convert --card`` write): its card, its weights,
            and by default the encoders it holds. The directory of a ``bindkit train --lora`` run loads its base
            model (``weights=`` says where, if it moved) with its adapters (see :mod:`bindkit.adapt.lora_model`).
        weights: a reference ``.pth``/``.pt`` file, a safetensors file or directory written by
            ``bindkit convert``, or an in-memory state dict (reference layout). None looks in ``weights/``,
            ``$BINDKIT_WEIGHTS`` and the user cache, then downloads the card's weights if ``download``
            (progress, resume, checksum; the licence is printed first). For a card's open_clip encoders alone
            (``modalities=["image", "text"]``), None means the card's open_clip weights (see :func:`build_model`).
        modalities: encoders to load; only their tensors are read (a converted directory opens only their files).
        device: target device; ``"meta"`` validates the layout without allocating (meta tensors accepted).
        dtype: compute dtype for floating tensors (default float32, whatever the checkpoint stores).
        quantize: ``"int8"``: dynamic int8 Linear layers in every trunk and head (CPU, float32 only; about 1.8-4x
            faster, cosine to fp32 ~0.998+); ``"bf16"``: bfloat16 autocast (CPU with AVX512-BF16/AMX, or GPU;
            about 1.7-2.6x on such a CPU, cosine ~0.9999); see :mod:`bindkit.models.quantize`. Default None: fp32.
        adapters: LoRA adapter files (:func:`bindkit.adapt.save_adapter`) applied in order, stacking; each is
            refused unless it was made for these base weights. With ``quantize``, they are folded into the weights
            for good first (the fingerprints stay the adapted ones, with the variant suffix).

    Raises:
        CheckpointError: unreadable file, or missing/unexpected/mis-shaped keys (listed, with counts).
        WeightsNotFoundError: no weights found and ``download`` is False or the card has no URL.
    """
    if spec_kind(spec) == "lora_dir":
        return load_lora_model(spec, weights=weights, modalities=modalities, device=device, dtype=dtype,
                               download=download, quantize=quantize, adapters=adapters)
    return load_card_model(spec, weights, modalities, device, dtype, download=download, quantize=quantize,
                           adapters=adapters)


def load_card_model(
    spec: CardSpec,
    weights: "str | os.PathLike | Mapping[str, torch.Tensor] | None" = None,
    modalities: Iterable[str] | None = None,
    device: "str | torch.device" = "cpu",
    dtype: "torch.dtype | str | None" = None,
    *,
    download: bool = True,
    quantize: str | None = None,
    adapters: "Iterable[str | os.PathLike] | None" = None,
) -> BindModel:
    """:func:`load_model` for a card (name, file, dict, Card) or a model directory that is not a LoRA run's (a
    trained or converted model, a distilled student): the card's architecture with its weights, then ``adapters``
    and ``quantize``. Arguments as for :func:`load_model`."""
    from . import weights as wio

    directory = model_dir(spec)
    card = load_card(spec)
    if directory is not None and weights is None:
        # A model directory (bindkit train / convert --card): its own weights, and by default the encoders it
        # holds (its card may describe more, e.g. the modalities a later `bindkit train --init` can add).
        weights = directory
        if modalities is None:
            modalities = wio.checkpoint_modalities(directory)
    mods = _resolve_modalities(card, modalities)
    dev = resolve_device(device)
    if quantize is not None:
        from .models.quantize import normalize_mode

        quantize = normalize_mode(quantize)  # ArgumentError before any weights are read
    if weights is None and set(mods) <= set(card.open_clip_modalities):
        # open_clip towers alone: their weights are the card's open_clip ones (cache or checkpoint file)
        if not card.open_clip.get("pretrained"):
            raise WeightsNotFoundError(
                f"card {card.name!r} names no open_clip weights (open_clip.pretrained is null); set it to a tag or "
                "a checkpoint file, pass weights=PATH, or use build_model for open_clip's random initialisation")
        model = build_model(card, mods, device=dev, dtype=dtype)
    else:
        model = _load_weights(card, weights, mods, dev, dtype, download)
    if adapters:
        from .adapt.lora import load_adapter

        for path in [adapters] if isinstance(adapters, (str, os.PathLike)) else adapters:
            load_adapter(model, path)
        if quantize and dev.type != "meta":  # the adapters are folded into the weights first
            from .adapt.lora_model import quantize_adapted

            return quantize_adapted(model, quantize)
    if quantize and dev.type != "meta":
        from .models.quantize import quantize_model

        quantize_model(model.eval(), quantize)
    return model.eval()


def load_lora_model(directory: "str | os.PathLike", *, weights: Any = None, modalities: Iterable[str] | None = None,
                    device: "str | torch.device" = "cpu", dtype: "torch.dtype | str | None" = None,
                    download: bool = True, quantize: str | None = None,
                    adapters: "Iterable[str | os.PathLike] | None" = None) -> BindModel:
    """:func:`load_model` for a LoRA model directory (``bindkit train --lora``; see :mod:`bindkit.adapt.lora_model`):
    its base (found once by :func:`~bindkit.adapt.lora_model.resolve_base`, loaded by :func:`load_card_model`),
    checked against the recorded fingerprints, with its adapters, named after the run.

    ``weights``: where the base is now, when it moved (a model directory, or weights for the base's card).
    ``quantize="int8"`` (or ``"bf16"``): the adapters are folded into the weights first (the fingerprints stay the
    adapted ones, with ``+int8`` / ``+bf16``). ``adapters``: more adapter files stacked on top.

    Raises:
        CheckpointError: the base is missing, or one of its encoders has another fingerprint than the one the
            adapters were trained on (both named); a damaged adapter file.
    """
    from .adapt.lora_model import attach_adapters, base_load_error, resolve_base

    base = resolve_base(directory, weights, modalities)
    try:
        model = load_card_model(base.spec, base.weights, base.modalities, device, dtype, download=download)
    except BindkitError as exc:
        again = base_load_error(exc, base)
        if again is exc:
            raise exc from None
        raise again from None
    return attach_adapters(model, base, adapters=adapters, quantize=quantize)


def _load_weights(card: Card, weights: Any, mods: list[str], dev: torch.device, dtype: Any,
                  download: bool) -> BindModel:
    """``load_model``'s core: the card's architecture on the meta device, the checkpoint's tensors assigned."""
    from . import weights as wio

    if weights is None:
        found = wio.locate_weights(card)
        if found is None:
            if not download or not card.weights.get("url"):
                raise _missing_weights(card, mods)
            found = wio.implicit_fetch(card)  # asks the download guard first (the CLI's consent)
        weights = found
    state = wio.read_state_dict(weights, mods)
    if dev.type != "meta" and any(t.device.type == "meta" for t in state.values() if isinstance(t, torch.Tensor)):
        raise CheckpointError("the state dict holds meta tensors (no data); load it with device='meta'")
    with torch.device("meta"), skip_meta_init():  # the checkpoint's tensors replace every parameter
        model = BindModel(card, mods)
    ours = _to_our_layout(state, model)
    dt = _parse_dtype(dtype) or torch.float32
    # Fingerprints identify the weights, not their storage or compute dtype: take the recorded ones, or hash
    # the source values before a cast would change them.
    model._fingerprints.update(wio.recorded_fingerprints(weights))
    for enc in mods:
        casts = any(t.is_floating_point() and t.dtype != dt for k, t in ours.items() if k.startswith(enc + "."))
        if casts and enc not in model._fingerprints and dev.type != "meta":
            model._fingerprints[enc] = encoder_fingerprint(ours, enc)
    ours = {k: t.to(dev, dt if t.is_floating_point() else t.dtype) for k, t in ours.items()}
    model.encoders.load_state_dict(ours, strict=True, assign=True)
    if model.card.open_clip_modalities:
        from .models.open_clip_tower import restore_buffers

        restore_buffers(model)  # open_clip's causal mask is not saved in checkpoints
    return model


def _missing_weights(card: Card, mods: list[str]) -> Exception:
    """The missing-weights error, with the way forward for a card whose other encoders bind to open_clip."""
    from . import weights as wio

    err = wio.missing_weights_error(card)
    anchors = card.open_clip_modalities
    if anchors:
        own = [m for m in mods if m not in anchors]
        kinds = ",".join("image" if m == "vision" else m for m in anchors)
        err = type(err)(f"{err} Card {card.name!r} takes {kinds} from open_clip; its {', '.join(own)} encoder(s) "
                        f"have weights once trained: bindkit train image_{own[0]}.csv --card {card.name} --freeze "
                        f"{kinds} --out DIR, then load DIR. The open_clip encoders alone load with "
                        f"modalities={[('image' if m == 'vision' else m) for m in anchors]}.")
    return err
