"""A second, deliberately plain forward pass over a REFERENCE-LAYOUT state dict, used as a test oracle.

It shares no code with bindkit.models: it reads the reference key names directly and uses
``torch.nn.functional.multi_head_attention_forward`` (sequence-first, explicit bias_k/bias_v and float causal
mask, as the checkpoint's attention layers were defined). It is validated against the reference outputs in
../shared/fixtures, then used to check bindkit on configurations the fixtures do not cover.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _ln(x, sd, prefix, eps):
    return F.layer_norm(x, x.shape[-1:], sd[prefix + ".weight"], sd[prefix + ".bias"], eps)


def _trunk(x, sd, mod, heads, mask=None):
    p = f"modality_trunks.{mod}"
    if f"{p}.pre_transformer_layer.0.weight" in sd:
        x = _ln(x, sd, f"{p}.pre_transformer_layer.0", 1e-6)
    x = x.transpose(0, 1)  # (L, B, D)
    i = 0
    while f"{p}.blocks.{i}.norm_1.weight" in sd:
        b = f"{p}.blocks.{i}"
        h = _ln(x, sd, f"{b}.norm_1", 1e-6)
        a, _ = F.multi_head_attention_forward(
            h, h, h, x.shape[-1], heads,
            sd[f"{b}.attn.in_proj_weight"], sd[f"{b}.attn.in_proj_bias"],
            sd.get(f"{b}.attn.bias_k"), sd.get(f"{b}.attn.bias_v"), False, 0.0,
            sd[f"{b}.attn.out_proj.weight"], sd[f"{b}.attn.out_proj.bias"],
            training=False, need_weights=False, attn_mask=mask,
        )
        x = x + a
        h = _ln(x, sd, f"{b}.norm_2", 1e-6)
        x = x + F.linear(F.gelu(F.linear(h, sd[f"{b}.mlp.fc1.weight"], sd[f"{b}.mlp.fc1.bias"])),
                         sd[f"{b}.mlp.fc2.weight"], sd[f"{b}.mlp.fc2.bias"])
        i += 1
    return x.transpose(0, 1)


def _cls_pos(tokens, sd, mod, pos_key):
    cls = sd[f"modality_preprocessors.{mod}.cls_token"].expand(tokens.shape[0], -1, -1)
    return torch.cat([cls, tokens], 1) + sd[pos_key]


def _head(x, sd, mod, idx):
    h = f"modality_heads.{mod}"
    x = F.layer_norm(x, x.shape[-1:], sd[f"{h}.0.weight"], sd[f"{h}.0.bias"], 1e-6)
    return F.normalize(F.linear(x, sd[f"{h}.{idx}.weight"]), dim=-1)


def forward(sd: dict, heads: dict, kind: str, x: torch.Tensor) -> torch.Tensor:
    """Unit-norm embeddings (N, D) of a preprocessed batch, computed from reference-layout weights ``sd``;
    ``heads[mod]`` gives each encoder's number of attention heads."""
    if kind in ("video", "audio"):
        n, s = x.shape[:2]
        e = forward(sd, heads, "vision" if kind == "video" else "audio_clip", x.flatten(0, 1))
        return F.normalize(e.view(n, s, -1).mean(1), dim=-1)
    if kind in ("vision", "image"):
        w = sd["modality_preprocessors.vision.rgbt_stem.proj.1.weight"]
        if x.ndim == 4:
            x = x.unsqueeze(2).repeat(1, 1, w.shape[2], 1, 1)
        t = F.conv3d(x, w, stride=w.shape[2:]).flatten(2).transpose(1, 2)
        t = _cls_pos(t, sd, "vision", "modality_preprocessors.vision.pos_embedding_helper.pos_embed")
        return _head(_trunk(t, sd, "vision", heads["vision"])[:, 0], sd, "vision", 2)
    if kind == "text":
        p = "modality_preprocessors.text"
        t = F.embedding(x, sd[f"{p}.token_embedding.weight"]) + sd[f"{p}.pos_embed"]
        t = _trunk(t, sd, "text", heads["text"], mask=sd[f"{p}.mask"])
        t = t[torch.arange(x.shape[0]), x.argmax(-1)]
        h = "modality_heads.text.proj"
        t = F.layer_norm(t, t.shape[-1:], sd[f"{h}.0.weight"], sd[f"{h}.0.bias"], 1e-6)
        return F.normalize(F.linear(t, sd[f"{h}.1.weight"]), dim=-1)
    if kind == "imu":
        p = "modality_preprocessors.imu"
        w = sd[f"{p}.imu_stem.proj.weight"]
        k = w.shape[1] // x.shape[1]
        patches = torch.stack([x[:, :, j * k:(j + 1) * k].reshape(x.shape[0], -1)
                               for j in range(x.shape[2] // k)], 1)
        t = F.linear(patches, w)
        t = F.layer_norm(t, t.shape[-1:], sd[f"{p}.imu_stem.norm_layer.weight"], sd[f"{p}.imu_stem.norm_layer.bias"])
        t = _cls_pos(t, sd, "imu", f"{p}.pos_embed")
        return _head(_trunk(t, sd, "imu", heads["imu"])[:, 0], sd, "imu", 3)
    mod = "audio" if kind == "audio_clip" else kind
    stem = "depth_stem" if mod == "depth" else "rgbt_stem"
    p = f"modality_preprocessors.{mod}"
    w = sd[f"{p}.{stem}.proj.weight"]
    t = F.conv2d(x, w, stride=10 if mod == "audio" else w.shape[-1]).flatten(2).transpose(1, 2)
    t = F.layer_norm(t, t.shape[-1:], sd[f"{p}.{stem}.norm_layer.weight"], sd[f"{p}.{stem}.norm_layer.bias"])
    t = _cls_pos(t, sd, mod, f"{p}.pos_embedding_helper.pos_embed")
    return _head(_trunk(t, sd, mod, heads[mod])[:, 0], sd, mod, 2)
