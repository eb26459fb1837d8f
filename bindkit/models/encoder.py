"""Encoder = stem -> trunk -> head -> unit vector; BindModel = the encoders of one card + ``encode``."""

from __future__ import annotations

import hashlib
import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..cards import Card
from ..errors import ModalityError
from ..modality import ENCODERS, encoder_of, input_kind
from .config import AudioCfg, DepthCfg, EncoderCfg, ImuCfg, TextCfg, VisionCfg, encoder_config
from .stems import ConvStem, IMUStem, TextStem, VisionStem
from .transformer import LN_EPS, Trunk, pooled_rows
from .trim import Packing, run_trimmed


class Head(nn.Module):
    """LayerNorm -> (dropout) -> linear projection to the shared space, on one pooled token."""

    def __init__(self, dim: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, out_dim, bias=False)

    def forward(self, token: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dropout(self.norm(token)))


class Encoder(nn.Module):
    """One modality's tower. ``forward`` returns unit vectors (B, out_dim) for one batch without a clips axis.

    ``log_logit_scale`` is the modality's training temperature (the reference multiplies outputs by
    ``exp(log_logit_scale)``); bindkit keeps it as metadata and never applies it to returned vectors.
    """

    def __init__(self, name: str, cfg: "Mapping[str, Any] | EncoderCfg", out_dim: int):
        super().__init__()
        self.name = name
        #: The typed hyper-parameters (a card's modality entry read into its dataclass, defaults filled in).
        self.config = c = encoder_config(name, cfg)
        dim, blocks, heads = int(c.embed_dim), int(c.num_blocks), int(c.num_heads)
        if isinstance(c, VisionCfg):
            self.stem = VisionStem(dim, c.image_size, c.patch_size, c.num_frames, c.conv_stem)
        elif isinstance(c, TextCfg):
            self.stem = TextStem(dim, c.vocab_size, c.context_length)
        elif isinstance(c, AudioCfg):
            self.stem = ConvStem(dim, (c.num_mel_bins, c.target_length), c.kernel_size, c.stride, c.conv_stem)
        elif isinstance(c, DepthCfg):  # depth and thermal
            self.stem = ConvStem(dim, c.image_size, c.kernel_size, c.stride, c.conv_stem)
        elif isinstance(c, ImuCfg):
            self.stem = IMUStem(dim, c.channels, c.length, c.kernel_size)
        else:  # pragma: no cover - cards are validated before this point
            raise ModalityError(f"unknown encoder {name!r}")
        self.trunk = Trunk(
            dim,
            blocks,
            heads,
            pre_norm=bool(c.pre_transformer_ln),
            add_bias_kv=bool(c.add_bias_kv),
            drop_path=float(c.drop_path),
            causal=name == "text",
            # ImageBind: 4. Students may use less, or one ratio per block: text pools one token, so a last block's
            # MLP runs on one row per text and can be wide at little cost (Trunk.pooled)
            mlp_ratio=c.mlp_ratio,
        )
        self.head = Head(dim, out_dim, float(c.head_dropout))
        scale = c.logit_scale
        if scale == "learnable":  # text: learned temperature, clipped at max_logit_scale
            self.log_logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        elif scale is not None:
            self.register_buffer("log_logit_scale", torch.tensor(math.log(float(scale))))
        else:
            self.log_logit_scale = None
        self.max_logit_scale = float(c.max_logit_scale)

    @property
    def logit_scale(self) -> float | None:
        """The temperature the reference multiplies this modality's embeddings by (None for vision)."""
        if self.log_logit_scale is None:
            return None
        return min(float(self.log_logit_scale.detach().float().exp()), self.max_logit_scale)

    #: Text only: run the trunk up to the batch's last end-of-text token (exact, see ``bindkit.models.trim``).
    #: Set False on an instance to time or check the full-length computation.
    trim_text: bool = True
    #: Text only: with trimming, also pack rows of unequal lengths so each runs only its own positions.
    pack_text: bool = True
    #: Text only: run the last block for the pooled (end-of-text) token alone (exact; see ``Trunk.pooled``).
    pool_last_block: bool = True
    #: Set by ``quantize_model(model, "bf16")``: run under ``torch.autocast`` to this dtype (matmuls, convolutions
    #: and attention in bfloat16; LayerNorms and softmax in float32). None: full precision.
    autocast_dtype: torch.dtype | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.autocast_dtype is not None:
            with torch.autocast(x.device.type, dtype=self.autocast_dtype):
                out = self._forward(x)
            return F.normalize(out.float(), dim=-1)  # unit norm in float32
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.name == "text":
            if self.trim_text:
                # stochastic depth drops whole rows, so training with it keeps the rows apart
                return run_trimmed(self._text_forward, x, self.pack_text and not self.trunk.drops_paths)
            return self._text_forward(x, x.argmax(dim=-1))
        return F.normalize(self.head(self.trunk(self.stem(x))[:, 0]), dim=-1)

    def _text_forward(self, x: torch.Tensor, eot: torch.Tensor, packing: Packing | None = None) -> torch.Tensor:
        # Pool the end-of-text token: it has the highest id in the vocabulary; causal attention means later
        # (padding) tokens never influence it.
        # Only the pooled token's output is used, so the last block runs for it alone (Trunk.pooled).
        tokens = self.stem.packed(x, packing) if packing is not None else self.stem(x)
        if self.pool_last_block:
            pooled = self.trunk.pooled(tokens, eot, packing=packing)
        else:
            pooled = pooled_rows(self.trunk(tokens, packing=packing), eot, packing)
        return F.normalize(self.head(pooled), dim=-1)


def _expected_shape(kind: str, cfg: dict[str, Any]) -> tuple[str, ...]:
    """Human-readable expected batch shape (N first) for error messages and checks."""
    if kind == "image":
        s = str(cfg["image_size"])
        return ("N", "3", s, s)
    if kind == "video":
        s = str(cfg["image_size"])
        return ("N", "S", "3", str(cfg.get("num_frames", VisionCfg.num_frames)), s, s)
    if kind == "text":
        return ("N", f"<={cfg['context_length']}")
    if kind == "audio":
        return ("N", "S", "1", str(cfg["num_mel_bins"]), str(cfg["target_length"]))
    if kind in ("depth", "thermal"):
        s = str(cfg["image_size"])
        return ("N", "1", s, s)
    return ("N", str(cfg["channels"]), str(cfg["length"]))  # imu


def _check_batch(kind: str, batch: torch.Tensor, cfg: dict[str, Any]) -> torch.Tensor:
    """Validate rank, shape and dtype of a preprocessed batch; returns it with a clips axis where the kind
    has one (audio/video), so the caller can flatten clips uniformly."""
    want = _expected_shape(kind, cfg)
    if not isinstance(batch, torch.Tensor):
        raise ModalityError(f"encode({kind!r}) takes a torch.Tensor batch, got {type(batch).__name__}; "
                            "use bindkit.preprocess or model.embed for files and raw items")
    shape = tuple(batch.shape)
    if kind == "audio" and batch.ndim == 4:
        batch, shape = batch.unsqueeze(1), (shape[0], 1) + shape[1:]
    ok = len(shape) == len(want) and all(
        w in ("N", "S") or (w.startswith("<=") and s <= int(w[2:])) or str(s) == w
        or (kind == "video" and i == 3 and s == 1)
        for i, (s, w) in enumerate(zip(shape, want))
    )
    if not ok or shape[0] == 0:
        hint = " (did you forget the batch dimension? use x.unsqueeze(0))" if len(shape) == len(want) - 1 else ""
        raise ModalityError(
            f"encode({kind!r}) expects a batch of shape {' x '.join(want)}, got {' x '.join(map(str, shape)) or 'a scalar'}"
            f"{hint}"
        )
    if kind == "text":
        if batch.dtype.is_floating_point or batch.dtype == torch.bool:
            raise ModalityError(f"encode('text') expects integer token ids, got dtype {batch.dtype}")
        if batch.numel() and (int(batch.min()) < 0 or int(batch.max()) >= int(cfg["vocab_size"])):
            raise ModalityError(f"encode('text'): token ids must lie in [0, {cfg['vocab_size']})")
    elif not batch.dtype.is_floating_point:
        raise ModalityError(f"encode({kind!r}) expects a floating-point batch, got dtype {batch.dtype}")
    return batch


class BindModel(nn.Module):
    """The encoders of one card, mapping every modality into one ``dim``-dimensional space of unit vectors.

    Build it with :func:`bindkit.build_model` or :func:`bindkit.load_model`.
    """

    #: ``"int8"`` or ``"bf16"`` once :func:`bindkit.models.quantize.quantize_model` ran
    #: (``load_model(quantize=...)``).
    quantized: str | None = None

    def __init__(self, card: Card, modalities: list[str] | None = None):
        super().__init__()
        names = list(card.modalities) if modalities is None else list(modalities)
        towers: dict[str, nn.Module] = {}
        if any(m in names for m in card.open_clip_modalities):  # encoders taken from open_clip
            from .open_clip_tower import build_towers

            card, towers = build_towers(card, names)
        self.card = card.restrict(names)
        self.encoders = nn.ModuleDict(
            {m: towers[m] if m in towers else Encoder(m, card.modalities[m], card.out_embed_dim) for m in names})
        self._fingerprints: dict[str, str] = {}

    @property
    def dim(self) -> int:
        """Dimension of the shared embedding space."""
        return self.card.out_embed_dim

    @property
    def modalities(self) -> tuple[str, ...]:
        """Encoder names this model holds (``vision`` serves both ``image`` and ``video``)."""
        return tuple(m for m in ENCODERS if m in self.encoders)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def logit_scale(self, modality: str) -> float | None:
        """The reference's output scale (training temperature) for ``modality``; None for vision."""
        return self._encoder(modality).logit_scale

    def _encoder(self, modality: str) -> Encoder:
        enc = encoder_of(modality)
        if enc not in self.encoders:
            raise ModalityError(
                f"this model was built without the {enc!r} encoder (it has: {', '.join(self.modalities)}); "
                f"load it with modalities=[..., {enc!r}]"
            )
        return self.encoders[enc]

    def encode(self, modality: str, batch: torch.Tensor) -> torch.Tensor:
        """Embed a preprocessed batch into unit vectors.

        Args:
            modality: ``image`` (alias ``vision``), ``video``, ``text``, ``audio``, ``depth``, ``thermal``, ``imu``.
            batch: image N x 3 x H x W; video N x S x 3 x T x H x W (S clips); text N x L int64 token ids;
                audio N x S x 1 x mel x frames (S clips; N x 1 x mel x frames is one clip); depth and thermal
                N x 1 x H x W; imu N x 6 x T. See :func:`bindkit.preprocess`.

        Returns:
            float32 tensor (N, dim) of unit vectors (clips are embedded separately, averaged, renormalised).
        """
        kind = input_kind(modality)
        encoder = self._encoder(kind)
        batch = _check_batch(kind, batch, self.card.modalities[encoder.name])
        param = next(encoder.parameters())
        batch = batch.to(param.device, param.dtype if batch.dtype.is_floating_point else batch.dtype)
        clips = kind in ("video", "audio")
        with torch.inference_mode(not self.training):
            if clips:
                n, s = batch.shape[:2]
                out = encoder(batch.flatten(0, 1)).view(n, s, -1).mean(dim=1)
                out = F.normalize(out, dim=-1)
            else:
                out = encoder(batch)
        return out.float()

    def embed(self, **kwargs: Any):
        """Embed raw items (paths, bytes, PIL images, arrays, strings) of any modalities; see
        :func:`bindkit.inputs.batch.embed` for the arguments. Returns an ``Embeddings`` dict of unit-norm float32
        numpy arrays in input order, with ``.errors`` listing items that failed."""
        from ..inputs.batch import embed

        return embed(self, **kwargs)

    def fingerprint(self, modality: str) -> str:
        """A digest identifying this encoder's weights, used by indexes to refuse vectors from another model.
        Computed on the weights' source values as float32: recorded by ``bindkit convert`` for converted
        directories, taken before any dtype cast by ``load_model``, else hashed from the parameters (cached)."""
        from .extensions import extensions  # e.g. LoRA (bindkit.adapt): an adapted encoder has its own fingerprint

        enc = self._encoder(modality).name
        exts = extensions()
        if enc not in self._fingerprints:
            state = self.encoders[enc].state_dict()
            self._fingerprints[enc] = tensor_fingerprint(
                {k: t for k, t in state.items() if not any(e.owns_key(k) for e in exts)})
        suffixes = [s for e in exts if (s := e.fingerprint_suffix(self.encoders[enc]))]
        return self._fingerprints[enc] + "".join(suffixes)

    def merge_adapters(self) -> "BindModel":
        """Fold adapters (LoRA: :func:`bindkit.adapt.merge_adapters`) into the weights. Returns the model."""
        from .extensions import extensions

        for ext in extensions():
            ext.merge(self)
        return self

    def unmerge_adapters(self) -> "BindModel":
        """Restore the weights :meth:`merge_adapters` changed, exactly. Returns the model."""
        from .extensions import extensions

        for ext in extensions():
            ext.unmerge(self)
        return self


def encoder_fingerprint(state: dict[str, torch.Tensor], encoder: str) -> str:
    """The fingerprint ``BindModel.fingerprint(encoder)`` gives for ``state`` in bindkit's layout
    (``"text.stem.pos_embed"``...), hashed on these values whatever dtype the model later computes in."""
    prefix = encoder + "."
    return tensor_fingerprint({k[len(prefix):]: t for k, t in state.items() if k.startswith(prefix)})


def reference_fingerprint(state: dict[str, torch.Tensor], encoder: str) -> str:
    """:func:`encoder_fingerprint` of reference-layout weights (``bindkit convert`` records it before casting
    to fp16/bf16 storage)."""
    from .reference_layout import to_ours

    ours = {name: t for key, t in state.items() if (name := to_ours(key))}
    return encoder_fingerprint(ours, encoder)


def tensor_fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """Blake2b digest over sorted names, shapes and float32 values (dtype-independent for fp32 sources)."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        t = tensors[name]
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        if t.device.type != "meta":
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()
