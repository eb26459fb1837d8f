"""The one place that knows the reference checkpoint's key names.

Reference keys look like ``modality_trunks.audio.blocks.3.attn.in_proj_weight``; ours like
``audio.trunk.blocks.3.attn.qkv.weight`` (relative to ``BindModel.encoders``). Each rule is a pair of templates;
placeholders ``{m}`` (encoder), ``{i}`` (block), ``{p}`` (weight|bias), ``{n}`` (1|2), ``{fc}``, ``{kv}`` become
regex groups, so one table serves both directions.
"""

from __future__ import annotations

import re
from typing import Iterable

from ..modality import ENCODERS

_GROUPS = {
    "m": f"(?P<m>{'|'.join(ENCODERS)})",
    "i": r"(?P<i>\d+)",
    "p": r"(?P<p>weight|bias)",
    "n": r"(?P<n>[12])",
    "fc": r"(?P<fc>fc[12])",
    "kv": r"(?P<kv>[kv])",
    "c": r"(?P<c>audio|thermal)",
    "h": r"(?P<h>vision|audio|depth|thermal)",
    "rest": r"(?P<rest>.+)",
}

# (reference template, our template); specific rules before generic ones, in both directions
_RULES: list[tuple[str, str]] = [
    ("modality_preprocessors.{m}.cls_token", "{m}.stem.cls_token"),
    ("modality_preprocessors.vision.rgbt_stem.proj.1.weight", "vision.stem.patch.weight"),
    ("modality_preprocessors.{c}.rgbt_stem.proj.weight", "{c}.stem.patch.weight"),
    ("modality_preprocessors.{c}.rgbt_stem.norm_layer.{p}", "{c}.stem.norm.{p}"),
    ("modality_preprocessors.depth.depth_stem.proj.weight", "depth.stem.patch.weight"),
    ("modality_preprocessors.depth.depth_stem.norm_layer.{p}", "depth.stem.norm.{p}"),
    ("modality_preprocessors.imu.imu_stem.proj.weight", "imu.stem.patch.weight"),
    ("modality_preprocessors.imu.imu_stem.norm_layer.{p}", "imu.stem.norm.{p}"),
    ("modality_preprocessors.imu.pos_embed", "imu.stem.pos_embed"),
    ("modality_preprocessors.text.pos_embed", "text.stem.pos_embed"),
    ("modality_preprocessors.{m}.pos_embedding_helper.pos_embed", "{m}.stem.pos_embed"),
    ("modality_preprocessors.text.token_embedding.weight", "text.stem.token_embedding.weight"),
    ("modality_preprocessors.text.mask", "text.stem.mask"),
    ("modality_trunks.{m}.pre_transformer_layer.0.{p}", "{m}.trunk.pre_norm.{p}"),
    ("modality_trunks.{m}.blocks.{i}.attn.in_proj_{p}", "{m}.trunk.blocks.{i}.attn.qkv.{p}"),
    ("modality_trunks.{m}.blocks.{i}.attn.out_proj.{p}", "{m}.trunk.blocks.{i}.attn.proj.{p}"),
    ("modality_trunks.{m}.blocks.{i}.attn.bias_{kv}", "{m}.trunk.blocks.{i}.attn.bias_{kv}"),
    ("modality_trunks.{m}.blocks.{i}.norm_{n}.{p}", "{m}.trunk.blocks.{i}.norm{n}.{p}"),
    ("modality_trunks.{m}.blocks.{i}.mlp.{fc}.{p}", "{m}.trunk.blocks.{i}.mlp.{fc}.{p}"),
    ("modality_heads.text.proj.0.{p}", "text.head.norm.{p}"),
    ("modality_heads.text.proj.1.weight", "text.head.proj.weight"),
    ("modality_heads.{h}.0.{p}", "{h}.head.norm.{p}"),
    ("modality_heads.{h}.2.weight", "{h}.head.proj.weight"),
    ("modality_heads.imu.0.{p}", "imu.head.norm.{p}"),
    ("modality_heads.imu.3.weight", "imu.head.proj.weight"),
    ("modality_postprocessors.{m}.1.log_logit_scale", "{m}.log_logit_scale"),
    # bindkit-only: the early-convolution stack of a stem with "conv_stem" (not in ImageBind's layout)
    ("modality_preprocessors.vision.rgbt_stem.early_conv.{rest}", "vision.stem.conv.{rest}"),
    ("modality_preprocessors.{m}.stem.early_conv.{rest}", "{m}.stem.conv.{rest}"),
    # encoders taken from open_clip (bindkit.models.open_clip_tower): open_clip's own key names after the prefix
    ("modality_open_clip.{m}.{rest}", "{m}.open_clip.{rest}"),
]

def _compile(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{\w+\})", template)
    return re.compile("".join(_GROUPS[p[1:-1]] if p.startswith("{") else re.escape(p) for p in parts) + r"\Z")


_FORWARD = [(_compile(ref), ours) for ref, ours in _RULES]
_BACKWARD = [(_compile(ours), ref) for ref, ours in _RULES]


def _translate(key: str, table: list[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, target in table:
        m = pattern.match(key)
        if m:
            return target.format(**m.groupdict())
    return None


def to_ours(ref_key: str) -> str | None:
    """Our parameter name for a reference key (None when the key is not part of the layout)."""
    return _translate(ref_key, _FORWARD)


def to_reference(our_key: str) -> str | None:
    """The reference key name for one of our parameter names."""
    return _translate(our_key, _BACKWARD)


def encoder_of_key(ref_key: str) -> str | None:
    """The encoder a reference key belongs to, or None: ``modality_heads.vision.2.weight`` -> ``"vision"``,
    ``logit_scale`` -> None."""
    parts = ref_key.split(".")
    if len(parts) > 1 and parts[0].startswith("modality_") and parts[1] in ENCODERS:
        return parts[1]
    return None


def is_reference_layout(keys: Iterable[str]) -> bool:
    return any(k.startswith("modality_") for k in keys)
