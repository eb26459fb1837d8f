"""Encoder cards: data files that describe a model family (hyper-parameters, preprocessing, weights, licence).

A card is a JSON file among the cards bindkit ships (``encoders/`` of the repository, ``bindkit/_data/encoders`` in
an installed wheel: :mod:`bindkit.resources`), or in a directory/file named by ``$BINDKIT_ENCODERS``
(``os.pathsep`` separated) or registered with :func:`add_card_path` (both searched first). ``load_card`` also
accepts a path, a card dict, or a flat dict of the reference constructor's hyper-parameters (``vision_embed_dim``,
``audio_num_blocks``, ...).

A card may take its image and/or text encoder from open_clip: the modality entry is ``{"source": "open_clip"}``
and a top-level ``"open_clip"`` block names the architecture and its weights
(``{"model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"}``); see :mod:`bindkit.models.open_clip_tower` (the
towers) and :mod:`bindkit.openclip` (its config, image transform and tokenizer).
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TypeAlias, Union

from .errors import CardError
from .modality import ENCODERS, INPUT_KINDS
from .openclip import preprocess_params as _open_clip_preprocess
from .resources import cards_dir, weights_search_dirs

_EXTRA_PATHS: list[Path] = []
MODEL_DIR_CARD = "card.json"  # the card file inside a model directory (weights.read.CARD_FILE)

#: Per-modality keys every card must give, and the keys each encoder needs beyond them.
_COMMON_KEYS = ("embed_dim", "num_blocks", "num_heads")
_REQUIRED = {
    "vision": ("image_size", "patch_size"),
    "text": ("context_length", "vocab_size"),
    "audio": ("num_mel_bins", "target_length", "kernel_size", "stride"),
    "depth": ("image_size", "kernel_size"),
    "thermal": ("image_size", "kernel_size"),
    "imu": ("channels", "length", "kernel_size"),
}

#: ``"source"`` of a modality entry whose encoder comes from open_clip, the encoders it may provide, the keys of
#: the card's ``"open_clip"`` block, and the keys bindkit derives from open_clip's config (allowed in the entry,
#: recomputed on every build).
OPEN_CLIP = "open_clip"
OPEN_CLIP_ENCODERS = ("vision", "text")
OPEN_CLIP_KEYS = ("model", "pretrained", "config", "cache_dir")
_OPEN_CLIP_DERIVED = ("image_size", "context_length", "vocab_size")


def is_open_clip(cfg: Any) -> bool:
    """True when a card's modality entry takes its encoder from open_clip (``{"source": "open_clip"}``)."""
    return isinstance(cfg, Mapping) and cfg.get("source") == OPEN_CLIP


@dataclass(frozen=True)
class Card:
    """A parsed, validated encoder card. ``modalities[m]`` holds encoder hyper-parameters,
    ``preprocess[kind]`` the loader parameters for an input kind (``image``, ``video``, ``text``...)."""

    name: str
    out_embed_dim: int
    modalities: dict[str, dict[str, Any]]
    preprocess: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)
    license: str = ""
    description: str = ""
    source: str | None = None
    #: The ``"open_clip"`` block (model, pretrained, config, cache_dir) of a card with open_clip encoders.
    open_clip: dict[str, Any] | None = None

    @property
    def open_clip_modalities(self) -> list[str]:
        """The encoders this card takes from open_clip (``vision`` and/or ``text``)."""
        return [m for m in OPEN_CLIP_ENCODERS if is_open_clip(self.modalities.get(m))]

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "description": self.description,
            "out_embed_dim": self.out_embed_dim,
            "modalities": copy.deepcopy(self.modalities),
            "preprocess": copy.deepcopy(self.preprocess),
            "weights": copy.deepcopy(self.weights),
            "license": self.license,
        }
        if self.open_clip is not None:
            out["open_clip"] = copy.deepcopy(self.open_clip)
        return out

    def restrict(self, modalities: list[str]) -> "Card":
        """The same card describing only ``modalities`` (encoder names)."""
        return Card(
            name=self.name,
            out_embed_dim=self.out_embed_dim,
            modalities={m: self.modalities[m] for m in modalities},
            preprocess=self.preprocess,
            weights=self.weights,
            license=self.license,
            description=self.description,
            source=self.source,
            open_clip=self.open_clip,
        )

    def preprocess_for(self, kind: str) -> dict[str, Any]:
        """Loader parameters for input kind ``kind``; falls back to the huge card's defaults. For an encoder
        taken from open_clip (``image``, ``text``) they are open_clip's own (its transform and tokenizer), which
        the card's ``preprocess`` section may still override key by key."""
        if kind in ("image", "text") and is_open_clip(self.modalities.get("vision" if kind == "image" else kind)):
            return {**_open_clip_preprocess(self, kind), **self.preprocess.get(kind, {})}
        if kind in self.preprocess:
            return dict(self.preprocess[kind])
        return dict(_default_card_dict()["preprocess"].get(kind, {}))


#: What :func:`load_card` (and ``build_model`` / ``load_model``) accept: a card name, a path to a card JSON or a
#: model directory, a card dict (or the reference constructor's flat hyper-parameters), or a Card.
CardSpec: TypeAlias = Union[str, os.PathLike, Mapping[str, Any], Card]


def _search_dirs() -> list[Path]:
    dirs = list(_EXTRA_PATHS)
    for part in os.environ.get("BINDKIT_ENCODERS", "").split(os.pathsep):
        if part.strip():
            dirs.append(Path(part.strip()).expanduser())
    builtin = cards_dir()
    if builtin is not None:
        dirs.append(builtin)
    return dirs


def _card_files() -> dict[str, Path]:
    """Card name -> file, earlier search paths winning (so a user card can shadow a built-in one)."""
    found: dict[str, Path] = {}
    for d in _search_dirs():
        files = [d] if d.is_file() else sorted(d.glob("*.json")) if d.is_dir() else []
        for f in files:
            found.setdefault(f.stem, f)
    return found


def add_card_path(path: str | os.PathLike) -> None:
    """Register a card file or a directory of cards (searched before ``$BINDKIT_ENCODERS`` and the shipped cards)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CardError(f"card path {p} does not exist")
    _EXTRA_PATHS.insert(0, p)


def list_encoders() -> list[str]:
    """Names of every card bindkit can find."""
    return sorted(_card_files())


def model_dirs() -> list[Path]:
    """Model directories (``card.json`` + weights, as ``bindkit train``/``convert --card`` write, and the shipped
    bindkit_toy) directly inside the weights search folders (:func:`bindkit.resources.weights_search_dirs`), in
    search order; a name found twice is listed once (the first wins, as when loading)."""
    found: dict[str, Path] = {}
    for d in weights_search_dirs():
        if d.is_dir():
            for sub in sorted(d.iterdir()):
                if (sub / MODEL_DIR_CARD).is_file():
                    found.setdefault(sub.name, sub)
    return list(found.values())


def _unknown_card(text: str, files: Mapping[str, Path]) -> CardError:
    """The error for a card name bindkit cannot find: every card and model directory it can see."""
    others = [str(d) for d in model_dirs() if d.name not in files]
    return CardError(
        f"no encoder card named {text!r}; cards: {', '.join(sorted(files)) or '(none)'}"
        + (f"; model directories (pass the path): {', '.join(others)}" if others else "")
        + ". `bindkit models` lists them with their weights. Pass a path to a card JSON or a model directory, or "
        "add a directory of cards with $BINDKIT_ENCODERS."
    )


def _default_card_dict() -> dict[str, Any]:
    builtin = cards_dir()
    path = builtin / "imagebind_huge.json" if builtin is not None else None
    if path is None or not path.is_file():
        raise CardError("bindkit's own cards are missing (no bindkit/_data/encoders, no encoders/ beside a clone): "
                        "reinstall bindkit (pip install --force-reinstall bindkit)")
    return json.loads(path.read_text())


# Reference constructor argument -> (modality, card key). Hyper-parameters not named keep the huge defaults.
_REFERENCE_ARGS = {
    "video_frames": ("vision", "num_frames"),
    "kernel_size": ("vision", "patch_size"),
    "audio_kernel_size": ("audio", "kernel_size"),
    "audio_stride": ("audio", "stride"),
    "audio_num_mel_bins": ("audio", "num_mel_bins"),
    "audio_target_len": ("audio", "target_length"),
    "depth_kernel_size": ("depth", "kernel_size"),
    "thermal_kernel_size": ("thermal", "kernel_size"),
    "imu_kernel_size": ("imu", "kernel_size"),
}


def from_reference_kwargs(kwargs: Mapping[str, Any], name: str = "custom") -> dict[str, Any]:
    """Turn the reference constructor's flat hyper-parameters into a card dict (huge defaults elsewhere)."""
    card = _default_card_dict()
    card["name"] = name
    card["description"] = "Built from reference constructor hyper-parameters."
    card["weights"] = {}
    unknown = []
    for key, value in kwargs.items():
        if key == "out_embed_dim":
            card["out_embed_dim"] = int(value)
        elif key in _REFERENCE_ARGS:
            mod, k = _REFERENCE_ARGS[key]
            card["modalities"][mod][k] = list(value) if isinstance(value, (list, tuple)) else value
        else:
            mod, _, k = key.partition("_")
            if mod in ENCODERS and k in ("embed_dim", "num_blocks", "num_heads", "drop_path"):
                card["modalities"][mod][k] = value
            else:
                unknown.append(key)
    if unknown:
        raise CardError(f"unknown reference hyper-parameter(s): {', '.join(sorted(unknown))}")
    return card


def _validate(d: Mapping[str, Any], where: str) -> Card:
    if not isinstance(d, Mapping):
        raise CardError(f"{where}: a card must be a JSON object, got {type(d).__name__}")
    missing = [k for k in ("name", "out_embed_dim", "modalities") if k not in d]
    if missing:
        raise CardError(f"{where}: missing top-level key(s) {', '.join(missing)}")
    mods = d["modalities"]
    if not isinstance(mods, Mapping) or not mods:
        raise CardError(f"{where}: 'modalities' must be a non-empty object")
    for m, cfg in mods.items():
        if m not in ENCODERS:
            raise CardError(f"{where}: unknown modality {m!r} (expected one of {', '.join(ENCODERS)})")
        if not isinstance(cfg, Mapping):
            raise CardError(f"{where}: modality {m!r} must be an object of hyper-parameters")
        if cfg.get("source", "bindkit") != "bindkit":
            _validate_open_clip_entry(d, m, cfg, where)
            continue
        need = [k for k in _COMMON_KEYS + _REQUIRED[m] if k not in cfg]
        if need:
            raise CardError(f"{where}: modality {m!r} lacks {', '.join(need)}")
        bad = [k for k in _COMMON_KEYS if isinstance(cfg[k], bool) or not isinstance(cfg[k], int) or cfg[k] < 1]
        if bad:
            raise CardError(f"{where}: {m}.{bad[0]} must be a positive integer, got {cfg[bad[0]]!r}")
        if int(cfg["embed_dim"]) % int(cfg["num_heads"]):
            raise CardError(
                f"{where}: {m}.embed_dim={cfg['embed_dim']} is not divisible by num_heads={cfg['num_heads']}"
            )
        if "mlp_ratio" in cfg:
            _validate_mlp_ratio(cfg["mlp_ratio"], int(cfg["num_blocks"]), f"{where}: {m}.mlp_ratio")
        if m == "text" and cfg.get("add_bias_kv"):
            raise CardError(f"{where}: text.add_bias_kv is not supported: the text encoder's attention is causal, "
                            "and a learned bias key/value is defined for the other encoders only; set it to false")
    pre = d.get("preprocess", {})
    for kind in pre:
        if kind not in INPUT_KINDS:
            raise CardError(f"{where}: unknown preprocess section {kind!r}")
    return Card(
        name=str(d["name"]),
        out_embed_dim=int(d["out_embed_dim"]),
        modalities={m: dict(cfg) for m, cfg in mods.items()},
        preprocess={k: dict(v) for k, v in pre.items()},
        weights=dict(d.get("weights", {}) or {}),
        license=str(d.get("license", "")),
        description=str(d.get("description", "")),
        source=where,
        open_clip=copy.deepcopy(dict(d["open_clip"])) if d.get("open_clip") is not None else None,
    )


def _validate_mlp_ratio(value: Any, blocks: int, where: str) -> None:
    """``mlp_ratio``: a positive integer for every block, or a list of one per block (e.g. ``[1, 8]``), where 0
    makes an attention-only block."""
    def ok(v: Any, low: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= low

    if ok(value, 1):
        return
    if isinstance(value, list) and len(value) == blocks and all(ok(v, 0) for v in value):
        return
    raise CardError(f"{where} must be a positive integer (every block) or a list of {blocks} integers >= 0 (one per "
                    f"block; 0: no MLP), got {value!r}")


def _validate_open_clip_entry(d: Mapping[str, Any], m: str, cfg: Mapping[str, Any], where: str) -> None:
    """Check a ``{"source": "open_clip"}`` modality entry and the card's ``"open_clip"`` block."""
    if cfg["source"] != OPEN_CLIP:
        raise CardError(f"{where}: modality {m!r} has source {cfg['source']!r}; expected 'bindkit' (the default) "
                        f"or {OPEN_CLIP!r}")
    if m not in OPEN_CLIP_ENCODERS:
        raise CardError(f"{where}: modality {m!r} cannot come from open_clip, which provides the image (vision) and "
                        f"text encoders only; describe a bindkit {m} encoder instead")
    extra = sorted(k for k in cfg if k != "source" and k not in _OPEN_CLIP_DERIVED)
    if extra:
        raise CardError(f"{where}: modality {m!r} comes from open_clip, so {', '.join(extra)} cannot be set there; "
                        "name the open_clip model and weights in the card's top-level \"open_clip\" block "
                        '({"model": ..., "pretrained": ...})')
    block = d.get("open_clip")
    if not isinstance(block, Mapping):
        raise CardError(f"{where}: modality {m!r} comes from open_clip but the card has no \"open_clip\" block; add "
                        '"open_clip": {"model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"} (or a checkpoint path)')
    unknown = sorted(k for k in block if k not in OPEN_CLIP_KEYS)
    if unknown:
        raise CardError(f"{where}: unknown key(s) {', '.join(unknown)} in the \"open_clip\" block; valid: "
                        f"{', '.join(OPEN_CLIP_KEYS)}")
    if not isinstance(block.get("model"), str) or not block["model"].strip():
        raise CardError(f"{where}: the \"open_clip\" block needs \"model\": an open_clip architecture name "
                        "(open_clip.list_models(), e.g. \"ViT-B-32\"), or the name of its inline \"config\"")
    for key in ("pretrained", "cache_dir"):
        if block.get(key) is not None and not isinstance(block[key], str):
            raise CardError(f"{where}: open_clip.{key} must be a string or null, got {block[key]!r}")
    config = block.get("config")
    if config is not None and (not isinstance(config, Mapping)
                               or any(k not in config for k in ("embed_dim", "vision_cfg", "text_cfg"))):
        raise CardError(f"{where}: open_clip.config must be an open_clip model config: an object with embed_dim, "
                        "vision_cfg and text_cfg (like the files in open_clip's model_configs/)")


def model_dir(spec: Any) -> Path | None:
    """``spec`` as a Path when it names a model directory (``card.json`` beside per-modality weights, as
    ``bindkit train`` and ``bindkit convert --card`` write), else None."""
    if isinstance(spec, (str, os.PathLike)):
        path = Path(os.fspath(spec)).expanduser()
        if path.is_dir() and (path / MODEL_DIR_CARD).is_file():
            return path
    return None


def load_card(spec: CardSpec) -> Card:
    """Resolve ``spec`` (card name, path to a card JSON, a model directory holding ``card.json``, card dict,
    reference kwargs dict, or Card) to a Card."""
    if isinstance(spec, Card):
        return spec
    if isinstance(spec, Mapping):
        if "modalities" in spec:
            return _validate(spec, "<dict>")
        return _validate(from_reference_kwargs(spec), "<reference kwargs>")
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.is_dir() and (path / MODEL_DIR_CARD).is_file():
        path = path / MODEL_DIR_CARD  # a model directory (bindkit train / bindkit convert --card): its card
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise CardError(f"card file {path} not found")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CardError(f"card file {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise CardError(f"card file {path}: a card must be a JSON object, got {type(data).__name__}")
        if "modalities" not in data and any(k.endswith("_embed_dim") for k in data):
            data = from_reference_kwargs(data, name=path.stem)
        return _validate(data, str(path))
    files = _card_files()
    if text not in files:
        raise _unknown_card(text, files)
    return load_card(files[text])
