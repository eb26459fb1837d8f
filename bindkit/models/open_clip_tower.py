"""open_clip towers: a card's image and/or text encoder taken from open_clip, the other modalities bindkit's own.

A card opts in per modality and names the open_clip model once::

    "open_clip": {"model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"},
    "out_embed_dim": 512,
    "modalities": {"vision": {"source": "open_clip"}, "text": {"source": "open_clip"}, "audio": {...}, ...}

The ``"open_clip"`` block:

- ``model``: an open_clip architecture (``open_clip.list_models()``), or the name of ``config``.
- ``config`` (optional): an inline open_clip model config (``{"embed_dim": ..., "vision_cfg": ..., "text_cfg":
  ...}``, as in open_clip's ``model_configs/``), registered with open_clip under ``model`` (so that
  ``open_clip.get_tokenizer`` and ``create_model`` know it too).
- ``pretrained``: an open_clip pretrained tag, a checkpoint file (what ``open_clip.create_model(model,
  pretrained=PATH)`` loads), or null (open_clip's random initialisation, seeded by the caller's torch RNG).
- ``cache_dir`` (optional): open_clip's ``cache_dir`` for that tag.

Weights of a tag are read from the local cache only (the Hugging Face hub cache, or ``~/.cache/clip`` for URL
weights), never downloaded implicitly: a missing file raises :class:`~bindkit.errors.WeightsNotFoundError` with the
one-line command that fetches it. Setting ``$BINDKIT_OPEN_CLIP_DOWNLOAD=1`` lets bindkit ask open_clip to download.

What bindkit returns for these towers is open_clip's own computation: the image tower is
``normalize(model.visual(x))`` (= ``encode_image(x, normalize=True)``), the text tower
``encode_text(tokens, normalize=True)``; images go through ``open_clip.image_transform`` with the model's (and
tag's) size, mean, std, interpolation and resize mode, texts through ``open_clip.get_tokenizer(model)``. The
text tower's temperature is open_clip's ``logit_scale`` (learnable, capped at 100); the image tower has none, as
in ImageBind, so binding audio to images uses the audio encoder's own temperature.

In a model directory (``bindkit train --out DIR``) the towers are saved like every encoder, one safetensors file
per modality, under the keys ``modality_open_clip.<vision|text>.<open_clip state-dict key>``; loading DIR needs no
open_clip cache. open_clip itself (a dependency: its tokenizer is bindkit's) is imported only for cards that use it.

This module holds what needs ``torch.nn``: the towers, their construction and their checkpoints. The card's
open_clip config, image transform and tokenizer live in :mod:`bindkit.openclip`, which the cards and the loaders
use without importing model code (re-exported here).
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..cards import Card
from ..errors import CardError, CheckpointError, ModalityError, WeightsNotFoundError, describe_exc
from ..openclip import model_config, open_clip_block, preprocess_cfg, require_open_clip, square, tag_config
# moved to bindkit.openclip (configs, transform and tokenizer: no model code); re-exported for old imports
from ..openclip import image_transform, preprocess_params, tokenizer  # noqa: F401  (moved)

#: Set to 1 to let bindkit ask open_clip to download a pretrained tag missing from the local cache.
DOWNLOAD_ENV = "BINDKIT_OPEN_CLIP_DOWNLOAD"
#: open_clip clamps its learned temperature to ln(100) while training; bindkit caps it the same way.
MAX_LOGIT_SCALE = 100.0
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".npz", ".ckpt")


# --- the towers -----------------------------------------------------------------------------------------------

class OpenClipVision(nn.Module):
    """open_clip's image tower as a bindkit encoder: ``forward(images)`` = ``encode_image(images, normalize=True)``.
    Parameters live under ``open_clip.visual.*`` (open_clip's own key names). No temperature (as ImageBind's)."""

    log_logit_scale = None
    max_logit_scale = math.inf

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.name = "vision"
        self.open_clip = nn.ModuleDict({"visual": visual})

    @property
    def logit_scale(self) -> float | None:
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ModalityError("this model's image encoder comes from open_clip and embeds images (N x 3 x H x W); "
                                "it has no video mode: embed frames as images")
        return F.normalize(self.open_clip["visual"](x), dim=-1)


class OpenClipText(nn.Module):
    """open_clip's text tower as a bindkit encoder: ``forward(tokens)`` = ``encode_text(tokens, normalize=True)``
    of the open_clip model without its ``visual`` part (parameters under ``open_clip.*``, open_clip's key names).
    Its temperature is open_clip's learned ``logit_scale`` (capped at 100, as open_clip clamps it)."""

    max_logit_scale = MAX_LOGIT_SCALE

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.name = "text"
        self.open_clip = clip

    @property
    def log_logit_scale(self) -> torch.Tensor:
        return self.open_clip.logit_scale

    @property
    def logit_scale(self) -> float:
        return min(float(self.open_clip.logit_scale.detach().float().exp().reshape(-1)[0]), self.max_logit_scale)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.open_clip.encode_text(tokens, normalize=True)


def _instantiate(config: dict[str, Any], card: Card) -> nn.Module:
    """The open_clip model class ``create_model`` would pick for ``config``, built on the current default device
    without any pretrained tower weights (timm/Hugging Face sub-towers included)."""
    require_open_clip(card.name)
    from open_clip.model import CLIP, CustomTextCLIP

    cfg = copy.deepcopy(config)
    if "timm_model_name" in cfg["vision_cfg"]:
        cfg["vision_cfg"]["timm_model_pretrained"] = False
    hf_text = "hf_model_name" in cfg["text_cfg"]
    if hf_text:
        cfg["text_cfg"]["hf_model_pretrained"] = False
    custom = cfg.pop("custom_text", False) or hf_text
    cls: Any = CLIP
    if custom:
        cls = CustomTextCLIP
        if "multimodal_cfg" in cfg:
            from open_clip.coca_model import CoCa

            cls = CoCa
    try:
        return cls(**cfg)
    except Exception as exc:  # noqa: BLE001 - an open_clip/timm/transformers failure, quoted in one line
        raise CardError(f"card {card.name!r}: open_clip could not build model {open_clip_block(card)['model']!r} "
                        f"({describe_exc(exc)})") from None


def build_towers(card: Card, names: list[str]) -> tuple[Card, dict[str, nn.Module]]:
    """The open_clip towers among ``names`` (random/meta weights, on the current default device) and ``card``
    with their entries completed from open_clip's config (``image_size``; ``context_length``, ``vocab_size``)."""
    wanted = [m for m in card.open_clip_modalities if m in names]
    config = model_config(card)
    if int(config["embed_dim"]) != card.out_embed_dim:
        raise CardError(f"card {card.name!r}: out_embed_dim is {card.out_embed_dim} but open_clip model "
                        f"{open_clip_block(card)['model']!r} embeds into {config['embed_dim']} dimensions; the shared "
                        f"space is open_clip's: set out_embed_dim to {config['embed_dim']}")
    clip = _instantiate(config, card)
    from open_clip.model import set_model_preprocess_cfg

    set_model_preprocess_cfg(clip, preprocess_cfg(card))
    modalities = {m: dict(cfg) for m, cfg in card.modalities.items()}
    towers: dict[str, nn.Module] = {}
    if "vision" in wanted:
        size = square(getattr(clip.visual, "image_size", config["vision_cfg"].get("image_size", 224)), card)
        modalities["vision"] = {"source": "open_clip", "image_size": size}
        towers["vision"] = OpenClipVision(clip.visual)
    if "text" in wanted:
        del clip.visual  # the text tower keeps the rest: token/position embeddings, transformer, logit_scale...
        text_cfg = config["text_cfg"]
        modalities["text"] = {"source": "open_clip",
                              "context_length": int(getattr(clip, "context_length", text_cfg.get("context_length", 77))),
                              "vocab_size": int(getattr(clip, "vocab_size", text_cfg.get("vocab_size", 49408)))}
        towers["text"] = OpenClipText(clip)
    return replace(card, modalities=modalities), towers


# --- weights --------------------------------------------------------------------------------------------------

def _cached_file(tag: dict[str, Any], cache_dir: str | None) -> tuple[str | None, list[str]]:
    """(path of the tag's weights in the local cache or None, the places looked at) — never downloads."""
    looked: list[str] = []
    if tag.get("file"):
        return (tag["file"] if os.path.isfile(tag["file"]) else None), [tag["file"]]
    hub = tag.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
            from huggingface_hub.constants import HF_HUB_CACHE
            from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
        except ImportError:
            pass
        else:
            repo, filename = os.path.split(hub)
            filename = filename or HF_WEIGHTS_NAME
            names = [filename]
            if filename == HF_WEIGHTS_NAME:
                names.insert(0, HF_SAFE_WEIGHTS_NAME)
            elif filename.endswith((".bin", ".pth")):
                names.insert(0, filename[:-4] + ".safetensors")
            for name in names:
                found = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
                if isinstance(found, str) and os.path.isfile(found):
                    return found, looked
            looked.append(f"the Hugging Face cache {cache_dir or HF_HUB_CACHE} ({repo}: {', '.join(names)})")
    url = tag.get("url", "")
    if url:
        target = Path(cache_dir or "~/.cache/clip").expanduser() / os.path.basename(url)
        if target.is_file():
            return str(target), looked
        looked.append(str(target))
    return None, looked


def resolve_checkpoint(card: Card, download: bool | None = None) -> str | None:
    """The checkpoint file of the card's open_clip weights (None when ``pretrained`` is null: random init).

    A file path is taken as is; a tag is looked up in the local caches. When it is not there, ``download`` (default:
    ``$BINDKIT_OPEN_CLIP_DOWNLOAD=1``) lets open_clip download it; otherwise WeightsNotFoundError says how to fetch.
    """
    block = open_clip_block(card)
    pretrained, model = block.get("pretrained"), block["model"]
    if not pretrained:
        return None
    path = Path(pretrained).expanduser()
    if path.is_file():
        return str(path)
    tag = tag_config(card)
    if tag is None:
        if pretrained.lower().endswith(_CHECKPOINT_SUFFIXES) or os.sep in pretrained or "/" in pretrained:
            raise WeightsNotFoundError(f"card {card.name!r}: open_clip checkpoint {path} does not exist; fix "
                                       "open_clip.pretrained (a checkpoint file, or an open_clip pretrained tag)")
        tags = require_open_clip(card.name).list_pretrained_tags_by_model(model)
        raise CardError(f"card {card.name!r}: {pretrained!r} is neither a file nor a pretrained tag of open_clip model "
                        f"{model!r} (its tags: {', '.join(tags) or 'none'})")
    quick = bool(model_config(card).get("quick_gelu", False))
    if bool(tag.get("quick_gelu", False)) != quick:
        raise CardError(f"card {card.name!r}: open_clip's {model!r}/{pretrained!r} weights were trained with "
                        f"{'QuickGELU' if tag.get('quick_gelu') else 'GELU'} but the model config uses "
                        f"{'QuickGELU' if quick else 'GELU'}; use model {model + '-quickgelu'!r} (or the plain name)")
    found, looked = _cached_file(tag, block.get("cache_dir"))
    if found:
        return found
    if download is None:
        download = os.environ.get(DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes")
    if download:
        from open_clip.pretrained import download_pretrained

        try:
            return download_pretrained(tag, cache_dir=block.get("cache_dir"))
        except Exception as exc:  # noqa: BLE001 - network/hub errors, quoted in one line
            raise WeightsNotFoundError(f"card {card.name!r}: open_clip could not download {model}/{pretrained} "
                                       f"({describe_exc(exc)})") from None
    cache = f", cache_dir={block['cache_dir']!r}" if block.get("cache_dir") else ""
    raise WeightsNotFoundError(
        f"card {card.name!r}: the open_clip weights {model}/{pretrained} are not in the local cache (looked in "
        f"{'; '.join(looked) or 'nowhere: the tag names no file'}), and bindkit does not download them unless asked. "
        f"Fetch them once with: python -c \"import open_clip; open_clip.create_model({model!r}, "
        f"pretrained={pretrained!r}{cache})\" — or set {DOWNLOAD_ENV}=1 to let bindkit ask open_clip to download "
        "them, or set the card's open_clip.pretrained to a checkpoint file")


def load_pretrained(model: nn.Module, path: str) -> None:
    """Load the open_clip checkpoint file ``path`` (see :func:`resolve_checkpoint`) into ``model``'s open_clip
    towers with open_clip's own ``load_checkpoint`` (its format conversions, strict key check)."""
    card = model.card
    towers = {m: model.encoders[m] for m in card.open_clip_modalities if m in model.encoders}
    if not towers:
        return
    oc = require_open_clip(card.name)
    from .fastinit import skip_meta_init

    with torch.device("meta"), skip_meta_init():  # stands in for a tower the model was built without
        scratch = _instantiate(model_config(card), card)
    host = towers["text"].open_clip if "text" in towers else scratch
    host.visual = towers["vision"].open_clip["visual"] if "vision" in towers else scratch.visual
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "copying ... to a meta parameter ... is a no-op": the absent tower
            oc.load_checkpoint(host, path, strict=True)
    except Exception as exc:  # noqa: BLE001 - torch/open_clip loading errors, quoted in one line
        raise CheckpointError(f"card {card.name!r}: open_clip checkpoint {path} does not fit model "
                              f"{open_clip_block(card)['model']!r} ({describe_exc(exc)})") from None
    finally:
        if "text" in towers:
            del host.visual


def restore_buffers(model: nn.Module) -> None:
    """Rebuild the non-persistent buffers of open_clip towers (the text causal mask) after a checkpoint was
    assigned to a model built on the meta device; CheckpointError if any other tensor is left without data."""
    for enc in model.card.open_clip_modalities:
        if enc not in model.encoders:
            continue
        tower = model.encoders[enc]
        device = next(tower.parameters()).device
        if device.type == "meta":
            continue
        for path, module in tower.named_modules():
            for name, buf in list(module._buffers.items()):
                if buf is None or not buf.is_meta:
                    continue
                if name == "attn_mask" and buf.ndim == 2 and buf.shape[0] == buf.shape[1]:
                    # open_clip's build_causal_mask: -inf above the diagonal, 0 elsewhere
                    module._buffers[name] = torch.empty(buf.shape, device=device).fill_(float("-inf")).triu_(1)
                else:
                    raise CheckpointError(f"open_clip {enc} tower: buffer {path + '.' if path else ''}{name} is not "
                                          "saved in checkpoints and bindkit cannot rebuild it; this open_clip model "
                                          "cannot be loaded from a model directory")
