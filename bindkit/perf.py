"""Measuring what the machine and the encoders do: matmul peak, encoder FLOPs, items/s, int8 fidelity.

Used by ``bindkit bench`` and the scripts in ``benchmarks/``. Everything here measures the current process on
the current machine; figures from a shared or busy machine are noisy, so compare ratios taken within one run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel

#: The input kind ``bindkit bench`` feeds each encoder (``vision`` is timed on images).
BENCH_KIND = {"vision": "image", "text": "text", "audio": "audio", "depth": "depth", "thermal": "thermal",
              "imu": "imu"}

#: Length of the synthetic captions (tokens including start and end of text): a typical short caption.
CAPTION_TOKENS = 12


def timed(fn: Callable[[], Any], seconds: float = 1.0, min_runs: int = 1, warmup: int = 1,
          best: bool = False) -> float:
    """Seconds per call of ``fn`` after ``warmup`` calls, repeating until ``seconds`` have passed (at least
    ``min_runs`` calls): the mean, or with ``best`` the fastest call (robust to a busy machine's bursts)."""
    for _ in range(warmup):
        fn()
    runs, start, fastest = 0, time.perf_counter(), math.inf
    while True:
        t = time.perf_counter()
        fn()
        fastest = min(fastest, time.perf_counter() - t)
        runs += 1
        elapsed = time.perf_counter() - start
        if runs >= min_runs and elapsed >= seconds:
            return fastest if best else elapsed / runs


def matmul_peak_fp32(n: int = 2048, seconds: float = 1.0) -> float:
    """Measured fp32 GFLOPS of one big ``torch.matmul`` (n x n x n, 2n^3 FLOPs) on the CPU (fastest of >= 3)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    return 2 * n ** 3 / timed(lambda: torch.matmul(a, b), seconds, min_runs=3, best=True) / 1e9


def matmul_peak_bf16(n: int = 1024, seconds: float = 1.0) -> float:
    """Measured bfloat16 GFLOPS of one big ``torch.matmul`` on the CPU (fastest of >= 3): the peak the ``bf16``
    engine (autocast) can reach; far below fp32's where the CPU has no bfloat16 arithmetic (hence n = 1024 by
    default: emulated, a 2048^3 product takes seconds)."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).bfloat16() for _ in range(2))
    return 2 * n ** 3 / timed(lambda: torch.matmul(a, b), seconds, min_runs=3, best=True) / 1e9


def matmul_peak_int8(n: int = 2048, seconds: float = 1.0) -> tuple[float, str]:
    """Measured int8 GOPS (multiply-adds x 2) on the CPU, and how: ``torch._int_mm`` (int8 x int8 -> int32)
    when this build has it, else a dynamic int8 Linear (which also quantises its input)."""
    g = torch.Generator().manual_seed(0)
    try:
        a = torch.randint(-100, 100, (n, n), dtype=torch.int8, generator=g)
        b = torch.randint(-100, 100, (n, n), dtype=torch.int8, generator=g)
        torch._int_mm(a[:32, :32].contiguous(), b[:32, :32].contiguous())
        return 2 * n ** 3 / timed(lambda: torch._int_mm(a, b), seconds, min_runs=3, best=True) / 1e9, "torch._int_mm"
    except (RuntimeError, AttributeError, NotImplementedError):
        from .models.quantize import int8_engine

        int8_engine()
        lin = torch.ao.nn.quantized.dynamic.Linear(n, n)
        lin.set_weight_bias(torch.quantize_per_tensor(torch.randn(n, n, generator=g), 0.05, 0, torch.qint8), None)
        x = torch.randn(n, n, generator=g)
        return 2 * n ** 3 / timed(lambda: lin(x), seconds, min_runs=3, best=True) / 1e9, "dynamic int8 Linear"


def _sdpa_flops(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query, key, value)


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs (2 per multiply-add) of the matmuls, convolutions and attention ``fn`` runs, counted with
    ``torch.utils.flop_counter.FlopCounterMode`` (CPU attention kernels included). Count a float32 model: int8
    kernels are not counted, and they do the same multiply-adds."""
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    extra = {}
    for name in ("_scaled_dot_product_flash_attention_for_cpu",):
        if hasattr(aten, name):
            extra[getattr(aten, name)] = _sdpa_flops
    with FlopCounterMode(display=False, custom_mapping=extra) as counter:
        fn()
    return int(counter.get_total_flops())


def synthetic_batch(model: "BindModel", kind: str, n: int, seed: int = 0) -> torch.Tensor:
    """A preprocessed batch of ``n`` random items of ``kind`` in the shapes ``model``'s card expects (audio: the
    card's clips per file; text: :data:`CAPTION_TOKENS`-token captions, padded to the context)."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.card.modalities["vision" if kind in ("image", "video") else kind]
    if kind == "text":
        ctx, vocab = int(cfg["context_length"]), int(cfg["vocab_size"])
        ids = torch.zeros(n, ctx, dtype=torch.long)
        words = min(CAPTION_TOKENS, ctx) - 2
        ids[:, 0] = min(49406, vocab - 2)
        ids[:, 1:words + 1] = torch.randint(300, min(4000, vocab - 2), (n, words), generator=g)
        ids[:, words + 1] = vocab - 1
        return ids
    if kind == "image":
        s = int(cfg["image_size"])
        return torch.randn(n, 3, s, s, generator=g)
    if kind == "audio":
        clips = int(model.card.preprocess_for("audio").get("clips_per_file", 3))
        return torch.randn(n, clips, 1, int(cfg["num_mel_bins"]), int(cfg["target_length"]), generator=g)
    if kind in ("depth", "thermal"):
        s = int(cfg["image_size"])
        return torch.randn(n, 1, s, s, generator=g)
    if kind == "imu":
        return torch.randn(n, int(cfg["channels"]), int(cfg["length"]), generator=g)
    raise ValueError(f"no synthetic batch for {kind!r}")


@dataclass
class Throughput:
    """One measurement: ``items_per_s`` of ``encoder`` with ``engine`` at ``batch``; ``gflops`` achieved from the
    FLOPs per item counted on the float32 model (``flops_per_item``)."""

    encoder: str
    engine: str
    batch: int
    items_per_s: float
    flops_per_item: int

    @property
    def gflops(self) -> float:
        return self.items_per_s * self.flops_per_item / 1e9


def measure_encoder(models: dict[str, Any], encoder: str, batch_sizes: list[int], seconds: float,
                    flops_per_item: dict[int, int]) -> list[Throughput]:
    """Items/s of ``encoder`` for each engine's model (``{"fp32": model, "int8": quantised copy}``) at each batch
    size, on synthetic inputs (values do not change speed). The engines take turns, call by call, and each
    figure is the best call: on a shared machine the load changes over minutes, and turns + best-of keep the
    engines' ratio fair."""
    kind = BENCH_KIND[encoder]
    out = []
    for n in batch_sizes:
        x = synthetic_batch(next(iter(models.values())), kind, n)
        fns = {engine: (lambda m=m: m.encode(kind, x)) for engine, m in models.items()}
        for fn in fns.values():
            fn()  # warm-up
        best = {engine: math.inf for engine in fns}
        start = time.perf_counter()
        while True:
            for engine, fn in fns.items():
                t = time.perf_counter()
                fn()
                best[engine] = min(best[engine], time.perf_counter() - t)
            if time.perf_counter() - start >= seconds * len(fns):
                break
        out += [Throughput(encoder, engine, n, n / best[engine], flops_per_item[n]) for engine in fns]
    return out


def flops_per_item(model: "BindModel", encoder: str, batch_sizes: list[int]) -> dict[int, int]:
    """FLOPs per item of ``encoder`` for each batch size's synthetic batch (equal for every size, except text,
    whose trimmed length is the captions')."""
    kind = BENCH_KIND[encoder]
    x = synthetic_batch(model, kind, 1)
    per = count_flops(lambda: model.encode(kind, x))
    return {n: per for n in batch_sizes}


def cosine_stats(a: Any, b: Any) -> tuple[float, float, int]:
    """(min, mean, argmin) of the row-wise cosine of two arrays of unit vectors (rows with NaN skipped)."""
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a).all(1) & np.isfinite(b).all(1)
    if not ok.any():
        return math.nan, math.nan, -1
    cos = np.where(ok, (np.nan_to_num(a) * np.nan_to_num(b)).sum(1), np.inf)
    worst = int(cos.argmin())
    return float(cos[worst]), float(cos[ok].mean()), worst
