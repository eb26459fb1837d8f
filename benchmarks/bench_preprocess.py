"""Preprocessing throughput (files/s): one file at a time in a plain loop vs the threaded batch path.

    python benchmarks/bench_preprocess.py [--repeat 8] [--workers 2 4] [--torch-threads 1 2]

Uses the sample images and WAVs (repeated), after one warm-up pass. Ratios are within this run only. The
plain loop runs torch ops in the main thread, whose OpenMP intra-op pool is very sensitive to other load on
the machine (the small fbank/resample ops spin at barriers); the load average is printed for that reason.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from bindkit.inputs import preprocess

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SAMPLES = Path(os.environ.get("BINDKIT_SHARED", REPO.parent / "shared")) / "samples"


def timed(fn, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    ap.add_argument("--repeat", type=int, default=8, help="copies of each sample file (default 8)")
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds; the best is reported")
    ap.add_argument("--torch-threads", type=int, nargs="+", default=[1, torch.get_num_threads()],
                    help="torch intra-op thread counts to try (default: 1 and torch's default)")
    args = ap.parse_args()
    sets = {
        "image": sorted(args.samples.glob("image/*.jpg")) * args.repeat,
        "audio": sorted(args.samples.glob("audio/*.wav")) * args.repeat,
    }
    if not all(sets.values()):
        raise SystemExit(f"no sample media under {args.samples}; pass --samples")

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"cpu cores: {os.cpu_count()}, load average (1 min): {load:.1f}, best of {args.rounds} rounds\n")
    print(f"{'kind':<6} {'torch thr':>9} {'files':>5} {'path':<30} {'seconds':>8} {'files/s':>8} {'vs loop':>8}")
    for threads in args.torch_threads:
        torch.set_num_threads(threads)  # intra-op threads of the calling thread (the loop runs in the main one)
        for kind, files in sets.items():
            preprocess(kind, files[:3], num_workers=1)  # warm-up: imports, tokenizer/filter caches
            loop = timed(lambda: [preprocess(kind, [f], num_workers=1) for f in files], args.rounds)
            rows = [("plain loop, one file per call", loop)]
            for w in args.workers:
                sec = timed(lambda: preprocess(kind, files, num_workers=w), args.rounds)
                rows.append((f"one call, {w} loader threads", sec))
            for label, sec in rows:
                print(f"{kind:<6} {threads:>9} {len(files):>5} {label:<30} {sec:>8.3f} {len(files) / sec:>8.1f} "
                      f"{loop / sec:>7.2f}x")

if __name__ == "__main__":
    main()
