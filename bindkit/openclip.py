"""open_clip's configs, image transform and tokenizer, for cards whose image and/or text encoder comes from open_clip.

The data side of :mod:`bindkit.models.open_clip_tower` (which builds the towers and loads their weights): what a
card's ``"open_clip"`` block means (the model config, inline or open_clip's), the loader parameters of its image
and text items (open_clip's ``image_transform`` and ``get_tokenizer``), and the hooks the loaders call. It defines
no ``nn.Module`` and imports no model code, so :mod:`bindkit.cards` and the loaders (:mod:`bindkit.inputs.image`,
:mod:`bindkit.inputs.text`) use it without depending on :mod:`bindkit.models`. open_clip itself is imported on
first use (it is a dependency: its tokenizer is bindkit's).
"""

from __future__ import annotations

import copy
import json
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Protocol

from .errors import CardError, ModalityError


class OpenClipCard(Protocol):
    """What this module reads of a :class:`bindkit.cards.Card` (which imports this module, so it is not imported
    here): its name and its ``"open_clip"`` block."""

    @property
    def name(self) -> str: ...

    @property
    def open_clip(self) -> Mapping[str, Any] | None: ...


def require_open_clip(card_name: str = "") -> Any:
    """The ``open_clip`` module; CardError with the install command when it is missing."""
    try:
        import open_clip
    except ImportError:
        who = f"card {card_name!r}" if card_name else "this card"
        raise CardError(f"{who} takes encoders from open_clip, which is not installed; install it with pip install "
                        "open_clip_torch (a dependency of bindkit: was it installed with --no-deps?)") from None
    return open_clip


def open_clip_block(card: OpenClipCard) -> dict[str, Any]:
    """The card's ``"open_clip"`` block (model, pretrained, config, cache_dir); CardError when it has none."""
    if not card.open_clip:
        raise CardError(f"card {card.name!r} has no \"open_clip\" block naming the open_clip model")
    return card.open_clip


def _key(card: OpenClipCard) -> str:
    return json.dumps(open_clip_block(card), sort_keys=True)


# --- configs ------------------------------------------------------------------------------------------------

def model_config(card: OpenClipCard) -> dict[str, Any]:
    """The open_clip model config of ``card`` (a copy): its inline ``config`` (registered with open_clip under the
    model name) or open_clip's built-in/registered config of that name. CardError for an unknown name."""
    return copy.deepcopy(_model_config(_key(card), card.name))


@lru_cache(maxsize=16)
def _model_config(key: str, card_name: str) -> dict[str, Any]:
    block = json.loads(key)
    oc = require_open_clip(card_name)
    name = block["model"]
    if ":" in name or "/" in name or "\\" in name:
        raise CardError(f"card {card_name!r}: open_clip model {name!r}: bindkit takes an open_clip architecture name "
                        "or an inline \"config\", not a hub or directory reference; put the model's config in the "
                        "card's open_clip.config and its checkpoint file in open_clip.pretrained")
    if block.get("config") is not None:
        config = block["config"]
        register(oc, name, config, card_name)
        return config
    config = oc.get_model_config(name)
    if config is None:
        import difflib

        close = difflib.get_close_matches(name, oc.list_models(), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see open_clip.list_models()"
        raise CardError(f"card {card_name!r}: open_clip has no model named {name!r}{hint} (or give the model's "
                        "config inline as open_clip.config)")
    return config


def register(oc: Any, name: str, config: dict[str, Any], card_name: str) -> None:
    """Make an inline config known to open_clip under ``name`` (its public ``add_model_config``)."""
    known = oc.get_model_config(name)
    if known is not None:
        if known == config:
            return
        raise CardError(f"card {card_name!r}: open_clip already knows a model {name!r} with another config; give "
                        "the card's inline open_clip.config a name of its own (open_clip.model)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.json"
        path.write_text(json.dumps(config))
        oc.add_model_config(path)  # read now; the registry keeps the entry after the file is gone


def tag_config(card: OpenClipCard) -> dict[str, Any] | None:
    """open_clip's pretrained config for the card's ``pretrained`` tag (None: no tag, or a file path)."""
    pretrained = open_clip_block(card).get("pretrained")
    if not pretrained or Path(pretrained).expanduser().is_file():
        return None
    oc = require_open_clip(card.name)
    return oc.get_pretrained_cfg(open_clip_block(card)["model"], pretrained) or None


def square(size: Any, card: OpenClipCard) -> int:
    """An open_clip image size (an int, or an (h, w) pair) as one int; CardError for a non-square tower."""
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise CardError(f"card {card.name!r}: open_clip model {open_clip_block(card)['model']!r} takes "
                            f"{size[0]}x{size[1]} images; bindkit supports square image towers only")
        size = size[0]
    return int(size)


def preprocess_cfg(card: OpenClipCard) -> dict[str, Any]:
    """open_clip's image preprocessing for ``card`` (size, mean, std, interpolation, resize_mode, fill_color): its
    defaults, overridden by the pretrained tag's config, with the model's image size, as ``create_model`` sets."""
    require_open_clip(card.name)
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    cfg = merge_preprocess_dict(PreprocessCfg(), tag_config(card) or {})
    cfg["size"] = square(model_config(card)["vision_cfg"].get("image_size", cfg["size"]), card)
    cfg["mean"], cfg["std"] = list(cfg["mean"]), list(cfg["std"])
    return cfg


def preprocess_params(card: OpenClipCard, kind: str) -> dict[str, Any]:
    """Loader parameters for ``image`` or ``text`` items of a card whose encoder for them comes from open_clip:
    open_clip's transform (``"transform": "open_clip"``) and tokenizer (``"tokenizer": "open_clip"``)."""
    if kind == "image":
        p = preprocess_cfg(card)
        return {"transform": "open_clip", "size": p["size"], "interpolation": p["interpolation"], "mean": p["mean"],
                "std": p["std"], "resize_mode": p["resize_mode"], "fill_color": p["fill_color"]}
    if kind == "text":
        block = open_clip_block(card)
        config = model_config(card)
        out = {"tokenizer": "open_clip", "open_clip_model": block["model"],
               "context_length": int(config["text_cfg"].get("context_length", 77))}
        if block.get("config") is not None:
            out["open_clip_config"] = block["config"]  # lets a worker process register it for the tokenizer
        return out
    raise ModalityError(f"open_clip provides image and text preprocessing only, not {kind!r}")


# --- loaders' hooks -------------------------------------------------------------------------------------------

@lru_cache(maxsize=16)
def image_transform(size: int, interpolation: str, mean: tuple, std: tuple, resize_mode: str,
                    fill_color: int) -> Any:
    """open_clip's evaluation transform (``open_clip.image_transform(..., is_train=False)``) for these values."""
    oc = require_open_clip()
    return oc.image_transform(int(size), is_train=False, mean=mean, std=std, resize_mode=resize_mode,
                              interpolation=interpolation, fill_color=int(fill_color))


def tokenizer(params: dict[str, Any]) -> Any:
    """open_clip's tokenizer for the text parameters ``params`` (``open_clip.get_tokenizer(model,
    context_length)``), built once per model."""
    config = params.get("open_clip_config")
    return _tokenizer(str(params["open_clip_model"]), int(params["context_length"]),
                      json.dumps(config, sort_keys=True) if config is not None else None)


@lru_cache(maxsize=8)
def _tokenizer(name: str, context_length: int, config: str | None) -> Any:
    oc = require_open_clip()
    if config is not None:
        register(oc, name, json.loads(config), name)
    return oc.get_tokenizer(name, context_length=context_length)
