"""Cheaper arithmetic for inference: dynamic int8 (CPU) and bfloat16 autocast (CPU or GPU).

**int8**: the Linear layers of every encoder's trunk and head run in int8.

``torch.ao.quantization.quantize_dynamic`` stores the Linear weights as per-tensor int8 and quantises each
activation batch on the fly (fbgemm on x86, qnnpack on ARM); stems (patch convolutions, embeddings), LayerNorms
and attention's softmax stay float32. Measured on imagebind_huge shapes: ~1.7-1.9x the fp32 throughput, cosine to
fp32 >= 0.998 with random weights — real checkpoints can have outlier activations that cost int8 more, so fp32
stays the default and ``bindkit bench --fidelity FILES...`` measures the cosine on your own files and weights.

**bf16**: every bindkit encoder runs under ``torch.autocast(dtype=torch.bfloat16)``: matmuls, convolutions and
attention in bfloat16 (the trunk's and head's Linear weights stored in bfloat16), stems' weights, LayerNorms and
softmax in float32, outputs renormalised in float32. Fast where
the hardware has bfloat16 arithmetic (x86 CPUs with AVX512-BF16 or AMX, recent GPUs); elsewhere it is emulated
and may be slower than fp32 (a warning says so). On a 2-core AVX512-BF16 CPU without AMX, imagebind_huge shapes:
1.7-2.6x fp32 (int8: 2.6-4.3x) at cosine to fp32 >= 0.99997 (int8: >= 0.9988) with random weights.

A quantised encoder's fingerprint is its weights' fingerprint plus a variant suffix (``"<digest>+int8"``):
indexes see that the vectors come from the same weights computed another way (see :func:`split_fingerprint`).
This module imports torch only when it quantises, so indexes can use :func:`split_fingerprint` freely.
"""

from __future__ import annotations

import platform
import warnings
from typing import Any, TYPE_CHECKING

from ..errors import ArgumentError, DeviceError

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel

#: The quantisation modes ``load_model(quantize=...)`` and ``--quantize`` accept (None / "none" = fp32).
QUANTIZE_MODES: tuple[str, ...] = ("int8", "bf16")

_X86 = ("x86_64", "amd64", "i386", "i686", "x86")


def normalize_mode(mode: str | None) -> str | None:
    """``"int8"`` / ``"bf16"`` for their spellings, None for fp32 (``None``, ``"none"``, ``"fp32"``);
    ArgumentError otherwise."""
    if mode is None:
        return None
    key = str(mode).strip().lower()
    if key in ("", "none", "fp32", "float32"):
        return None
    if key in ("int8", "qint8", "dynamic-int8"):
        return "int8"
    if key in ("bf16", "bfloat16"):
        return "bf16"
    raise ArgumentError(f"quantize={mode!r} is not a quantisation bindkit knows; use 'int8', 'bf16' or None (fp32)")


def _cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports (``flags`` on x86, ``Features`` on ARM); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("flags", "features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


def bf16_native(device: Any) -> bool:
    """True when ``device`` computes bfloat16 in hardware: x86 CPUs with AVX512-BF16 or AMX-BF16, ARM CPUs with
    BF16, CUDA devices of compute capability 8.0 (Ampere) or newer. Elsewhere PyTorch emulates bfloat16, usually
    slower than float32. Where the CPU's flags cannot be read (not Linux), the answer is False."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        flags = _cpu_flags()
        return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    return True


def int8_engine() -> str:
    """The quantised engine for this CPU (fbgemm/x86 on x86-64, qnnpack on ARM), made current.

    Raises:
        DeviceError: this PyTorch build has no int8 engine for this machine.
    """
    import torch

    engines = list(torch.backends.quantized.supported_engines)
    machine = platform.machine().lower()
    preferred = ("fbgemm", "x86") if machine in _X86 else ("qnnpack",)
    for engine in preferred:
        if engine in engines:
            if torch.backends.quantized.engine != engine:
                torch.backends.quantized.engine = engine
            return engine
    raise DeviceError(
        f"int8 is not supported on this machine ({machine or 'unknown CPU'}): this PyTorch build's quantised "
        f"engines are {', '.join(e for e in engines if e != 'none') or 'none'}, and bindkit needs "
        f"{' or '.join(preferred)}; use the default fp32 path (no --quantize)")


def split_fingerprint(fingerprint: str) -> tuple[str, str | None]:
    """``"<digest>+int8"`` -> (``"<digest>"``, ``"int8"``); a plain digest -> (digest, None)."""
    base, sep, variant = str(fingerprint).partition("+")
    return base, (variant or None) if sep else None


def quantize_model(model: "BindModel", mode: str | None = "int8") -> Any:
    """Quantise ``model`` (a float32 :class:`~bindkit.BindModel`, on the CPU for int8) in place; returns it.

    ``"int8"``: every ``nn.Linear`` of each encoder's trunk and head becomes a dynamic int8 Linear. ``"bf16"``:
    every encoder runs under bfloat16 autocast (``Encoder.autocast_dtype``), its trunk's and head's Linear weights
    stored in bfloat16. The encoders' fingerprints are taken first (of the float32 weights) and get the ``+int8`` /
    ``+bf16`` suffix. Encoders taken from open_clip (:mod:`bindkit.models.open_clip_tower`) stay float32 with their
    own fingerprint.

    Raises:
        ArgumentError: unknown ``mode``.
        DeviceError: int8 on a model not on the CPU, or this machine/PyTorch build has no int8 engine.
        ArgumentError: a float16/bfloat16 model (quantise float32 weights), one in training mode, one that is
            already quantised, or one that carries adapters.
    """
    import torch

    mode = normalize_mode(mode)
    if mode is None:
        return model
    if getattr(model, "quantized", None):
        raise ArgumentError(f"this model is already quantised ({model.quantized}); load a fresh one")
    from .extensions import extensions

    if any(e.fingerprint_suffix(enc) for e in extensions() for enc in model.encoders.values()):
        raise ArgumentError("this model carries adapters (LoRA); quantise it as it loads, which folds them into "
                            "its weights first: bindkit.load_model(..., adapters=[...], quantize=...) or "
                            "load_model(LORA_MODEL_DIR, quantize=...)")
    what = {"int8": "int8 quantisation", "bf16": "bf16 autocast"}[mode]
    if model.dtype != torch.float32:
        raise ArgumentError(f"{what} needs float32 weights, the model holds {model.dtype}; load it without dtype=")
    if model.training:
        raise ArgumentError(f"{what} is for inference; call model.eval() first (training needs fp32)")
    device = model.device
    if mode == "int8":
        if device.type != "cpu":
            raise DeviceError(f"int8 quantisation runs on the CPU only, but the model is on {device}; load it "
                              "with device='cpu', or use --quantize bf16 on a GPU")
        int8_engine()
    elif not bf16_native(device):
        warnings.warn(f"{device} has no bfloat16 arithmetic (CPU: AVX512-BF16 or AMX; GPU: Ampere or newer): "
                      "PyTorch emulates it, likely slower than fp32; measure with bindkit bench --engines fp32,bf16",
                      RuntimeWarning, stacklevel=3)  # the caller of load_model or quantize_model
    convert = _to_int8 if mode == "int8" else _to_bf16
    for enc in model.modalities:
        encoder = model.encoders[enc]
        if not hasattr(encoder, "trunk"):  # an open_clip tower: its code reads Linear weights' dtype; kept fp32
            continue
        base = model.fingerprint(enc)  # of the float32 weights, before the Linear layers are converted
        convert(encoder)
        model._fingerprints[enc] = f"{split_fingerprint(base)[0]}+{mode}"
    model.quantized = mode
    return model


def _to_int8(encoder: Any) -> None:
    """Every ``nn.Linear`` of the trunk and head becomes a dynamic int8 Linear (fbgemm / qnnpack)."""
    import torch
    from torch import nn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice for its eager quantisation API
        for part in (encoder.trunk, encoder.head):
            torch.ao.quantization.quantize_dynamic(part, {nn.Linear}, dtype=torch.qint8, inplace=True)


def _to_bf16(encoder: Any) -> None:
    """bfloat16 autocast for the encoder; the Linear layers of its trunk and head store their weights in bfloat16
    from now on (autocast would cast them again on every call, which costs more than it saves on small batches).
    Stems and LayerNorms stay float32."""
    import torch
    from torch import nn

    for part in (encoder.trunk, encoder.head):
        for mod in part.modules():
            if isinstance(mod, nn.Linear):
                mod.to(torch.bfloat16)
    encoder.autocast_dtype = torch.bfloat16
