"""CPU performance levers of issue 11 on imagebind_huge shapes (random weights: speed does not depend on values).

1. Text trimming: the text encoder at batch 32 on short captions (<= 20 tokens), full 77 positions vs trimmed
   (each caption's own positions, packed: the default), in fp32 and int8 (max |difference| trimmed vs full
   printed too).
2. int8 vs fp32 items/s per encoder (default vision, text, audio) and the cosine of their outputs on random
   inputs; with --samples DIR, also the cosine on the sample files in DIR (image/, audio/ subfolders).

Variants are timed in turns (interleaved rounds, best of): on a shared machine the load changes over minutes;
ratios within one run are what to quote, absolute figures are noisy.

Usage: python benchmarks/bench_cpu_perf.py [--card imagebind_huge] [--parts trim,int8] [--encoders vision,text,audio]
       [--rounds 3] [--samples ../shared/samples]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bindkit  # noqa: E402
from bindkit import perf  # noqa: E402
from bindkit.models.quantize import quantize_model  # noqa: E402

BATCH = {"vision": 2, "text": 32, "audio": 2, "depth": 4, "thermal": 4, "imu": 8}


def short_captions(n: int, vocab: int, ctx: int, seed: int = 0, lengths: tuple[int, int] = (6, 20)) -> torch.Tensor:
    """``n`` captions of ``lengths[0]..lengths[1]`` tokens (start, words, end), zero-padded to ``ctx``."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(n, ctx, dtype=torch.long)
    for i in range(n):
        length = int(torch.randint(lengths[0], lengths[1] + 1, (1,), generator=g))
        ids[i, 0] = 49406
        ids[i, 1:length - 1] = torch.randint(300, 40000, (length - 2,), generator=g)
        ids[i, length - 1] = vocab - 1
    return ids


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Best (minimum) seconds per call of each function, the functions taking turns ``rounds`` times after one
    warm-up each: on a shared machine, load changes over minutes, and interleaving + best-of keeps the ratios
    fair."""
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def bench_trim(card: str, rounds: int) -> None:
    t = time.perf_counter()
    torch.manual_seed(0)
    model = bindkit.build_model(card, modalities=["text"])
    cfg = model.card.modalities["text"]
    print(f"[trim] built {card} text encoder in {time.perf_counter() - t:.1f} s "
          f"({sum(p.numel() for p in model.parameters()) / 1e6:.0f} M params)")
    int8 = quantize_model(copy.deepcopy(model))
    for caption_lengths in ((6, 20), (12, 12)):
        ids = short_captions(BATCH["text"], int(cfg["vocab_size"]), int(cfg["context_length"]),
                             lengths=caption_lengths)
        _trim_case(model, int8, ids, rounds)


def _trim_case(model: Any, int8: Any, ids: torch.Tensor, rounds: int) -> None:
    print(f"[trim] batch {len(ids)}, caption lengths {int(ids.argmax(-1).min()) + 1}..{int(ids.argmax(-1).max()) + 1} "
          f"tokens of {ids.shape[1]}")
    lengths = (ids.argmax(-1) + 1).tolist()
    print(f"[trim] positions run: full {ids.numel()}, trimmed and packed {sum(lengths)} "
          f"(benchmarks/bench_trim.py compares trimming, buckets and packing)")
    models = {"fp32": model, "int8": int8}

    def run(engine: str, trim: bool) -> Callable[[], torch.Tensor]:
        def fn() -> torch.Tensor:
            enc = models[engine].encoders["text"]
            enc.trim_text = trim
            return models[engine].encode("text", ids)
        return fn

    fns = {f"{e} {'trimmed' if tr else 'full 77'}": run(e, tr) for e in ("fp32", "int8") for tr in (False, True)}
    outs = {name: fn() for name, fn in fns.items()}
    best = interleaved(fns, rounds)
    base = best["fp32 full 77"]
    for name, s in best.items():
        print(f"[trim] {name:14}: {len(ids) / s:8.2f} texts/s  {base / s:5.2f}x fp32 full   (best of {rounds})")
    for e in ("fp32", "int8"):
        diff = (outs[f"{e} trimmed"] - outs[f"{e} full 77"]).abs().max().item()
        print(f"[trim] {e}: max |trimmed - full| = {diff:.2e}")
    cos = (outs["int8 trimmed"] * outs["fp32 full 77"]).sum(-1)
    print(f"[trim] int8 trimmed vs fp32 full: cosine min {cos.min().item():.5f} mean {cos.mean().item():.5f}")


def bench_int8(card: str, encoders: list[str], rounds: int, samples: Path | None) -> None:
    for enc in encoders:
        kind = perf.BENCH_KIND[enc]
        torch.manual_seed(0)
        model = bindkit.build_model(card, modalities=[enc])
        int8 = quantize_model(copy.deepcopy(model))
        x = perf.synthetic_batch(model, kind, BATCH[enc])
        best = interleaved({"fp32": lambda: model.encode(kind, x), "int8": lambda: int8.encode(kind, x)}, rounds)
        cos = (model.encode(kind, x) * int8.encode(kind, x)).sum(-1)
        line = (f"[int8] {enc:7} batch {len(x)}: fp32 {len(x) / best['fp32']:7.2f} items/s, int8 "
                f"{len(x) / best['int8']:7.2f} items/s, {best['fp32'] / best['int8']:.2f}x (best of {rounds}); "
                f"cosine on random inputs min {cos.min().item():.5f} mean {cos.mean().item():.5f}")
        files = _sample_files(samples, kind) if samples else []
        if files:
            a = model.embed(**{kind: files}, show_progress_bar=False)[kind]
            lo, mean, _ = perf.cosine_stats(a, int8.embed(**{kind: files}, show_progress_bar=False)[kind])
            line += f"; on {len(files)} sample files min {lo:.5f} mean {mean:.5f}"
        print(line, flush=True)
        del model, int8


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
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (best of)")
    ap.add_argument("--samples", type=Path)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; fp32 matmul peak "
          f"{perf.matmul_peak_fp32():.1f} GFLOPS, int8 {perf.matmul_peak_int8()[0]:.1f} GOPS", flush=True)
    parts = args.parts.split(",")
    if "trim" in parts:
        bench_trim(args.card, args.rounds)
    if "int8" in parts:
        bench_int8(args.card, args.encoders.split(","), args.rounds, args.samples)


if __name__ == "__main__":
    main()
