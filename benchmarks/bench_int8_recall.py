"""int8 queries over an fp32-built index: recall@10 against the fp32 queries' own top 10, on the synthetic world.

    python benchmarks/bench_int8_recall.py [--model bindkit_toy] [--n 400] [--queries 200]

Builds an index of n held-out scenes (image, audio, depth, thermal, IMU, caption) with the fp32 model, then
queries it with every kind of input embedded by the fp32 model and by the int8 one (``quantize="int8"``); prints,
per query kind, the mean overlap of the two top-10 lists over all result modalities and the mean cosine between
int8 and fp32 query vectors.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

import bindkit
from bindkit.datasets import synthetic

KINDS = ("image", "audio", "depth", "thermal", "imu", "text")


def _item(s: dict, kind: str):
    return (s["audio"], s["audio_rate"]) if kind == "audio" else s[kind]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bindkit_toy")
    ap.add_argument("--n", type=int, default=400, help="indexed scenes (default 400)")
    ap.add_argument("--queries", type=int, default=200, help="query scenes, not indexed (default 200)")
    args = ap.parse_args(argv)

    fp32 = bindkit.load_model(args.model)
    int8 = bindkit.load_model(args.model, quantize="int8")
    gallery = [synthetic.sample(i, seed=0, split="test") for i in range(args.n)]
    queries = [synthetic.sample(i, seed=0, split="compositional") for i in range(args.queries)]
    print(f"model {args.model}: {args.n} indexed scenes x {len(KINDS)} kinds (fp32), "
          f"{args.queries} query scenes per kind")
    print(f"{'query kind':<12}{'recall@10 int8 vs fp32':>24}{'cosine int8/fp32 (min / mean)':>32}")
    with tempfile.TemporaryDirectory() as tmp:
        index = bindkit.Index.create(Path(tmp) / "idx", model=fp32)
        for kind in KINDS:
            index.add([_item(s, kind) for s in gallery], modality=kind, show_progress_bar=False)
        for kind in KINDS:
            items = {kind: [_item(s, kind) for s in queries]}
            a = fp32.embed(**items, show_progress_bar=False)[kind]
            b = int8.embed(**items, show_progress_bar=False)[kind]
            cos = np.sum(a * b, axis=1)
            ra = index.search(vector=a, k=10)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                rb = index.search(vector=b, k=10)
            overlap = [len({h.id for h in x[m]} & {h.id for h in y[m]}) / max(1, len(x[m]))
                       for x, y in zip(ra, rb) for m in x]
            print(f"{kind:<12}{np.mean(overlap):>24.3f}{cos.min():>16.4f} / {cos.mean():.4f}")
        index.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
