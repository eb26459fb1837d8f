"""Encoder throughput of imagebind_huge on this machine (random weights: speed does not depend on values).

For each modality: items/s of bindkit's encoder in fp32 and bf16, and of a reference-style forward pass over the
same weights (``tests/reference_oracle.py``: sequence-first nn.functional multi-head attention with an explicit
float mask, as the reference's layers are defined) — ratios within one run. Also times building the huge
architecture with random init vs on the meta device (what load_model does before assigning weights).

Usage: python benchmarks/bench_encode.py [--modalities text,imu] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import bindkit  # noqa: E402
import reference_oracle  # noqa: E402
from bindkit.models import reference_layout  # noqa: E402

BATCH = {"vision": 4, "text": 32, "audio": 2, "depth": 8, "thermal": 8, "imu": 8}


def make_batch(kind: str, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if kind == "text":
        ids = torch.zeros(n, 77, dtype=torch.long)
        ids[:, 0], ids[:, 1:8] = 49406, torch.randint(300, 4000, (n, 7), generator=g)
        ids[:, 8] = 49407
        return ids
    shape = {"vision": (n, 3, 224, 224), "audio": (n, 3, 1, 128, 204), "depth": (n, 1, 224, 224),
             "thermal": (n, 1, 224, 224), "imu": (n, 6, 2000)}[kind]
    return torch.randn(shape, generator=g)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modalities", default="vision,text,audio,depth,thermal,imu")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")

    t = time.perf_counter()
    bindkit.build_model("imagebind_huge", device="meta")
    meta_s = time.perf_counter() - t
    print(f"build imagebind_huge on meta: {meta_s:.2f} s")

    heads = {m: c["num_heads"] for m, c in bindkit.load_card("imagebind_huge").modalities.items()}
    rows = []
    for mod in args.modalities.split(","):
        t = time.perf_counter()
        model = bindkit.build_model("imagebind_huge", modalities=[mod])
        build_s = time.perf_counter() - t
        n = BATCH[mod]
        x = make_batch(mod, n)
        ref_sd = {reference_layout.to_reference(k): v for k, v in model.encoders.state_dict().items()}
        bf = bindkit.load_model("imagebind_huge", weights=ref_sd, modalities=[mod], dtype="bf16")
        with torch.inference_mode():
            ref_s = timed(lambda: reference_oracle.forward(ref_sd, heads, mod, x), args.repeats)
            ours_s = timed(lambda: model.encode(mod, x), args.repeats)
            bf16_s = timed(lambda: bf.encode(mod, x), args.repeats)
        rows.append((mod, n, build_s, n / ref_s, n / ours_s, n / bf16_s))
        del model, bf, ref_sd

    print(f"\n{'modality':<9}{'batch':>6}{'build s':>9}{'ref-style/s':>13}{'bindkit fp32/s':>16}"
          f"{'bindkit bf16/s':>16}{'fp32 x':>8}{'bf16 x':>8}")
    for mod, n, b, r, o, h in rows:
        print(f"{mod:<9}{n:>6}{b:>9.1f}{r:>13.2f}{o:>16.2f}{h:>16.2f}{o / r:>8.2f}{h / r:>8.2f}")


if __name__ == "__main__":
    main()
