"""CPU performance levers of issue 11 on imagebind_huge shapes (random weights: speed does not depend on values).

1. Text trimming: the text encoder at batch 32 on short captions (<= 20 tokens), full 77 positions vs trimmed to
   the batch's last end-of-text token, in fp32 and int8 (max |difference| trimmed vs full printed too).
2. int8 vs fp32 items/s per encoder (default vision, text, audio) and the cosine of their outputs on random
   inputs; with --samples DIR, also the cosine on the sample files in DIR (image/, audio/ subfolders).

Ratios are taken within one run; on a shared machine absolute figures are noisy.

Usage: python benchmarks/bench_cpu_perf.py [--card imagebind_huge] [--parts trim,int8] [--encoders vision,text,audio]
       [--seconds 3] [--samples ../shared/samples]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bindkit  # noqa: E402
from bindkit import perf  # noqa: E402
from bindkit.models.quantize import quantize_model  # noqa: E402
from bindkit.models.trim import plan_buckets  # noqa: E402

BATCH = {"vision": 2, "text": 32, "audio": 2, "depth": 4, "thermal": 4, "imu": 8}


def short_captions(n: int, vocab: int, ctx: int, seed: int = 0) -> torch.Tensor:
    """``n`` captions of 6..20 tokens (start, words, end), zero-padded to ``ctx``."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(n, ctx, dtype=torch.long)
    for i in range(n):
        length = int(torch.randint(6, 21, (1,), generator=g))
        ids[i, 0] = 49406
        ids[i, 1:length - 1] = torch.randint(300, 40000, (length - 2,), generator=g)
        ids[i, length - 1] = vocab - 1
    return ids


def bench_trim(card: str, seconds: float) -> None:
    t = time.perf_counter()
    model = bindkit.build_model(card, modalities=["text"])
    cfg = model.card.modalities["text"]
    print(f"[trim] built {card} text encoder in {time.perf_counter() - t:.1f} s "
          f"({sum(p.numel() for p in model.parameters()) / 1e6:.0f} M params)")
    ids = short_captions(BATCH["text"], int(cfg["vocab_size"]), int(cfg["context_length"]))
    enc = model.encoders["text"]
    print(f"[trim] batch {len(ids)}, caption lengths {int(ids.argmax(-1).min()) + 1}..{int(ids.argmax(-1).max()) + 1} "
          f"tokens of {ids.shape[1]}")
    lengths = sorted((ids.argmax(-1) + 1).tolist())
    cuts = plan_buckets(lengths)
    print(f"[trim] buckets (rows x length): " + ", ".join(f"{b - a}x{lengths[b - 1]}" for a, b in
                                                        zip([0] + cuts[:-1], cuts)))
    results = {}
    for engine in ("fp32", "int8"):
        if engine == "int8":
            quantize_model(model)
        outs = {}
        for trim in (False, True):
            enc.trim_text = trim
            s = perf.timed(lambda: model.encode("text", ids), seconds)
            outs[trim] = model.encode("text", ids)
            results[engine, trim] = len(ids) / s
            print(f"[trim] {engine} {'trimmed' if trim else 'full 77'}: {len(ids) / s:8.2f} texts/s", flush=True)
        print(f"[trim] {engine}: max |trimmed - full| = {(outs[True] - outs[False]).abs().max().item():.2e}")
    base = results["fp32", False]
    print(f"[trim] speed-up vs fp32 full: trimmed fp32 {results['fp32', True] / base:.2f}x, "
          f"full int8 {results['int8', False] / base:.2f}x, trimmed int8 {results['int8', True] / base:.2f}x")


def bench_int8(card: str, encoders: list[str], seconds: float, samples: Path | None) -> None:
    for enc in encoders:
        kind = perf.BENCH_KIND[enc]
        torch.manual_seed(0)
        model = bindkit.build_model(card, modalities=[enc])
        x = perf.synthetic_batch(model, kind, BATCH[enc])
        files = _sample_files(samples, kind) if samples else []
        fp32_files = model.embed(**{kind: files}, show_progress_bar=False)[kind] if files else None
        s32 = perf.timed(lambda: model.encode(kind, x), seconds)
        ref = model.encode(kind, x)
        quantize_model(model)
        s8 = perf.timed(lambda: model.encode(kind, x), seconds)
        cos = (ref * model.encode(kind, x)).sum(-1)
        line = (f"[int8] {enc:7} batch {len(x)}: fp32 {len(x) / s32:7.2f} items/s, int8 {len(x) / s8:7.2f} items/s, "
                f"{s32 / s8:.2f}x; cosine on random inputs min {cos.min().item():.5f} mean {cos.mean().item():.5f}")
        if files:
            lo, mean, worst = perf.cosine_stats(fp32_files, model.embed(**{kind: files}, show_progress_bar=False)[kind])
            line += f"; on {len(files)} sample files min {lo:.5f} mean {mean:.5f}"
        print(line, flush=True)
        del model


def _sample_files(root: Path, kind: str) -> list[str]:
    if kind == "text":
        return ["a dog", "a car driving on a wet road at night", "a bird singing in a tree", "rain", "an empty beach"]
    sub = {"image": "image", "audio": "audio", "depth": "depth", "thermal": "thermal", "imu": "imu"}.get(kind)
    return [str(p) for p in sorted((root / sub).glob("*")) if p.is_file()][:6] if sub else []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--card", default="imagebind_huge")
    ap.add_argument("--parts", default="trim,int8")
    ap.add_argument("--encoders", default="vision,text,audio")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--samples", type=Path)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; fp32 matmul peak "
          f"{perf.matmul_peak_fp32():.1f} GFLOPS, int8 {perf.matmul_peak_int8()[0]:.1f} GOPS", flush=True)
    parts = args.parts.split(",")
    if "trim" in parts:
        bench_trim(args.card, args.seconds)
    if "int8" in parts:
        bench_int8(args.card, args.encoders.split(","), args.seconds, args.samples)


if __name__ == "__main__":
    main()
