"""Per-encoder configuration: one dataclass per encoder kind, every hyper-parameter's default in one place.

A card stores each modality's hyper-parameters as a JSON object (``card.modalities["audio"]``); that dict stays
the card's format on disk and in :class:`~bindkit.cards.Card`. :func:`encoder_config` reads it into the dataclass
of its encoder (:class:`VisionCfg`, :class:`TextCfg`, :class:`AudioCfg`, :class:`DepthCfg`, :class:`ThermalCfg`,
:class:`ImuCfg`), which is what :class:`~bindkit.models.encoder.Encoder` builds from, as open_clip's
``CLIPVisionCfg`` / ``CLIPTextCfg`` and nanoGPT's ``GPTConfig`` do. Keys a card gives that an encoder does not
use are ignored (as they always were); the keys every card must give are checked by :mod:`bindkit.cards`.

To add a hyper-parameter: a field with its default on the dataclass(es) it applies to, then use it in
``Encoder.__init__`` or the stem.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Union


def _tuple(value: Any) -> Any:
    """JSON lists as tuples (the dataclasses are frozen); anything else as it is."""
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True, kw_only=True)
class EncoderCfg:
    """What every bindkit encoder has: the transformer trunk, the head and the temperature."""

    embed_dim: int
    num_blocks: int
    num_heads: int
    #: LayerNorm before the first block (ImageBind: vision only).
    pre_transformer_ln: bool = False
    #: Learned bias key/value in attention (ImageBind: all encoders but vision and text).
    add_bias_kv: bool = True
    drop_path: float = 0.0
    #: MLP width / embed_dim: one for every block, or one per block (0: attention only). ImageBind: 4.
    mlp_ratio: Union[int, tuple[int, ...]] = 4
    head_dropout: float = 0.0
    #: The modality's training temperature: a number, ``"learnable"`` (text), or None (vision: none).
    logit_scale: Union[float, str, None] = None
    max_logit_scale: float = math.inf

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> "EncoderCfg":
        """The config of a card's modality entry (keys this encoder does not use are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: _tuple(v) for k, v in cfg.items() if k in names})


@dataclass(frozen=True, kw_only=True)
class VisionCfg(EncoderCfg):
    """Images and video: a 3-D patch convolution over (frames, height, width)."""

    image_size: int
    #: (frames, height, width) of a patch.
    patch_size: tuple[int, int, int]
    #: Frames of a clip; an image is one frame repeated this many times.
    num_frames: int = 2
    #: Channels of the early-convolution stack before the patch convolution (bindkit's small cards; () none).
    conv_stem: tuple[int, ...] = ()
    pre_transformer_ln: bool = True
    add_bias_kv: bool = False


@dataclass(frozen=True, kw_only=True)
class TextCfg(EncoderCfg):
    """Token ids: embeddings plus learned positions, causal attention, the end-of-text token pooled."""

    vocab_size: int
    context_length: int
    add_bias_kv: bool = False


@dataclass(frozen=True, kw_only=True)
class AudioCfg(EncoderCfg):
    """Log-mel spectrograms (num_mel_bins x target_length): a 2-D patch convolution, possibly overlapping."""

    num_mel_bins: int
    target_length: int
    kernel_size: int
    #: Patch stride; None: the kernel size (no overlap).
    stride: int | None = None
    conv_stem: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class DepthCfg(EncoderCfg):
    """Single-channel maps (image_size x image_size): a 2-D patch convolution."""

    image_size: int
    kernel_size: int
    stride: int | None = None
    conv_stem: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ThermalCfg(DepthCfg):
    """Thermal maps: as depth."""


@dataclass(frozen=True, kw_only=True)
class ImuCfg(EncoderCfg):
    """IMU series (channels x length): non-overlapping windows of kernel_size steps."""

    channels: int
    length: int
    kernel_size: int


#: The config class of each encoder.
CONFIGS: dict[str, type[EncoderCfg]] = {
    "vision": VisionCfg, "text": TextCfg, "audio": AudioCfg, "depth": DepthCfg, "thermal": ThermalCfg, "imu": ImuCfg,
}


def encoder_config(name: str, cfg: "Mapping[str, Any] | EncoderCfg") -> EncoderCfg:
    """The typed config of encoder ``name`` from a card's modality entry (a config is returned as it is).
    KeyError for an unknown encoder name; TypeError when a key the encoder needs is missing."""
    if isinstance(cfg, EncoderCfg):
        return cfg
    return CONFIGS[name].from_dict(cfg)


__all__ = ["AudioCfg", "CONFIGS", "DepthCfg", "EncoderCfg", "ImuCfg", "TextCfg", "ThermalCfg", "VisionCfg",
           "encoder_config"]
