"""GPU throughput of every encoder: fp32 vs fp16/bf16 autocast (scaled_dot_product_attention's flash /
memory-efficient kernels), optionally torch.compile, with the cosine of each low-precision output to fp32.

Runs unchanged on any CUDA machine; without one it prints why and exits 0 (nothing to measure). Random weights
by default (speed does not depend on values; the cosine does a little: pass --weights for your checkpoint).

    python benchmarks/bench_gpu.py                          # imagebind_huge, all encoders, fp16 and bf16
    python benchmarks/bench_gpu.py --modalities vision,text --compile --seconds 5
    python benchmarks/bench_gpu.py --card imagebind_tiny --device cpu --seconds 0.2   # dry run of the code paths

Per encoder and batch size it prints items/s for fp32 (TF32 off: the reference numbers), tf32, fp16 and bf16
autocast (and each compiled with --compile), the speed-up over fp32 and the min/mean cosine to fp32 over the
batch. Inputs sit in pinned host memory and are copied each call, as a loader would hand them over.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bindkit  # noqa: E402
from bindkit import perf  # noqa: E402
from bindkit.modality import encoder_of  # noqa: E402

#: Default batch sizes per encoder on a GPU (items; audio items hold 3 clips).
BATCH = {"vision": 64, "text": 256, "audio": 32, "depth": 64, "thermal": 64, "imu": 128}


def sdpa_context(which: str) -> contextlib.AbstractContextManager:
    """Restrict scaled_dot_product_attention to one kernel family ('auto' leaves PyTorch's choice)."""
    if which == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
               "math": SDPBackend.MATH}[which]
    return sdpa_kernel([backend])


def timed(fn: Callable[[], Any], device: torch.device, seconds: float) -> float:
    """Seconds per call, synchronising the device around the timed region."""
    def run() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return perf.timed(run, seconds, warmup=2)


def bench_encoder(args: argparse.Namespace, enc: str, device: torch.device) -> None:
    kind = perf.BENCH_KIND[enc]
    t = time.perf_counter()
    torch.manual_seed(0)
    if args.weights:
        model = bindkit.load_model(args.card, weights=args.weights, modalities=[enc], device=device)
    else:
        model = bindkit.build_model(args.card, modalities=[enc], device=device)
    print(f"{enc}: model ready in {time.perf_counter() - t:.1f} s", flush=True)
    sizes = [int(s) for s in args.batch_sizes.split(",")] if args.batch_sizes else [BATCH[enc]]
    for n in sizes:
        x = perf.synthetic_batch(model, kind, n)
        if device.type == "cuda":
            x = x.pin_memory()
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        ref = model.encode(kind, x)
        base = None
        variants: list[tuple[str, Any, bool]] = [("fp32", None, False)]
        if device.type == "cuda":
            variants.append(("tf32", "tf32", False))
        variants += [(d, d, False) for d in args.dtypes.split(",")]
        if args.compile:
            variants += [(f"{d}+compile", d, True) for d in args.dtypes.split(",")]
        encoder = model.encoders[enc]
        for name, dt, compiled in variants:
            torch.backends.cuda.matmul.allow_tf32 = dt == "tf32"
            torch.backends.cudnn.allow_tf32 = dt == "tf32"
            cast = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(dt or "")
            autocast = torch.autocast(device.type, dtype=cast) if cast else contextlib.nullcontext()
            original = encoder.trunk
            try:
                if compiled:
                    encoder.trunk = torch.compile(original, dynamic=(enc == "text"))
                with autocast, sdpa_context(args.sdpa):
                    per_call = timed(lambda: model.encode(kind, x), device, args.seconds)
                    out = model.encode(kind, x)
            except Exception as exc:  # noqa: BLE001 - a kernel this GPU/dtype lacks: report it, go on
                print(f"  {enc:8} batch {n:>4} {name:14} unsupported here: {type(exc).__name__}: "
                      f"{str(exc).splitlines()[0][:120]}", flush=True)
                continue
            finally:
                encoder.trunk = original
            rate = n / per_call
            base = base or rate
            cos = (ref * torch.nn.functional.normalize(out.float(), dim=-1)).sum(-1)  # low-precision norms drift
            print(f"  {enc:8} batch {n:>4} {name:14} {rate:10.1f} items/s  {rate / base:5.2f}x fp32  "
                  f"cosine to fp32 min {cos.min().item():.5f} mean {cos.mean().item():.5f}", flush=True)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--card", default="imagebind_huge", help="encoder card (default imagebind_huge)")
    ap.add_argument("--weights", help="checkpoint or converted folder (default: random weights)")
    ap.add_argument("--modalities", default="vision,text,audio,depth,thermal,imu")
    ap.add_argument("--batch-sizes", help="comma-separated, for every encoder (default: per encoder, "
                    + ", ".join(f"{k} {v}" for k, v in BATCH.items()) + ")")
    ap.add_argument("--dtypes", default="fp16,bf16", help="autocast dtypes to compare with fp32 (default fp16,bf16)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd trunks")
    ap.add_argument("--sdpa", choices=["auto", "flash", "efficient", "math"], default="auto",
                    help="attention kernel: auto (PyTorch picks flash/memory-efficient for fp16/bf16), or force one")
    ap.add_argument("--seconds", type=float, default=3.0, help="time each measurement at least this long")
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu for a dry run of the code paths")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here (torch.cuda.is_available() is False): nothing to measure; run it on "
              "a machine with an NVIDIA GPU (or --device cpu for a dry run)")
        return 0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    print(f"bench_gpu: {args.card}{'' if args.weights else ' (random weights)'} on {name}, torch {torch.__version__}, "
          f"sdpa {args.sdpa}")
    if device.type == "cuda":
        n = 8192
        a = torch.randn(n, n, device=device, dtype=torch.float16)
        s = timed(lambda: a @ a, device, 1.0)
        print(f"matmul peak: fp16 {2 * n ** 3 / s / 1e12:.1f} TFLOPS ({n}^3)")
    for enc in [m.strip() for m in args.modalities.split(",") if m.strip()]:
        bench_encoder(args, encoder_of(enc), device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
