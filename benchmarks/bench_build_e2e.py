"""End-to-end index build vs model-only throughput on imagebind_huge's vision shapes (random weights).

Does loading (scan, hashing, JPEG decode, resize/crop/normalise, commits, the final optimise) starve the model?
For each engine (fp32, and the dynamic-int8 encoder of ``load_model(quantize="int8")``):

* ``build``      — :func:`bindkit.index.build.build` over a folder of N generated JPEGs (640x480 by default):
  the real ``bindkit index build`` path (scan, content hashes, loader threads, one transaction per batch,
  ``optimize``), into a fresh index each time; items/s over the whole call;
* ``model only`` — the vision encoder on the same N images already preprocessed into tensors, at the same batch
  size; items/s;
* ``load only``  — ``bindkit.preprocess("image", paths)`` (decode + preprocess of the N images, loader threads),
  shown so the loading cost can be compared with the model's.

The variants take turns within each round (interleaved) and each figure is the median over rounds; quote the
ratio build / model only (target: >= 0.90). On a shared machine whose load drifts between calls, the build's
own ``model busy`` share is the steadier figure: the time spent inside ``model.encode`` during the build over the
build's wall time (1.0: the model never waits for loading). The per-batch costs are what matter, so a smaller N (with a batch
size that still gives several batches) measures the same ratio, slightly pessimistically (the fixed costs of a
build are spread over fewer items).

Usage: python benchmarks/bench_build_e2e.py [--n 200] [--batch 32] [--rounds 2] [--engines fp32,int8]
       [--size 640x480] [--card imagebind_huge] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bindkit  # noqa: E402
from bindkit.index.build import build  # noqa: E402
from bindkit.models.quantize import quantize_model  # noqa: E402


def make_photos(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> list[str]:
    """``n`` photo-like JPEGs (smooth colour fields, shapes, sensor noise; quality 90) of ``size`` (w, h)."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    paths = []
    for i in range(n):
        base = np.zeros((h, w, 3), np.float32)
        for c in range(3):  # a smooth gradient per channel
            a, b, d = rng.uniform(-1, 1, 3)
            base[..., c] = 128 + 60 * np.sin(a * xx / w * 6 + b * yy / h * 6 + d * 6)
        img = Image.fromarray(base.clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(3, 9))):
            x0, y0 = rng.integers(0, w), rng.integers(0, h)
            r = int(rng.integers(20, min(w, h) // 3))
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0 - r, y0 - r, x0 + r, y0 + r], fill=fill)
        img = img.filter(ImageFilter.GaussianBlur(1.2))
        noisy = np.asarray(img, np.float32) + rng.normal(0, 6, (h, w, 3))
        path = folder / f"photo_{i:04d}.jpg"
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(str(path))
    return paths


def interleaved_median(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Median seconds of each function over ``rounds`` turns (no warm-up round: callers warm up)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
            print(f"[e2e] round {r + 1}/{rounds}: {name} {times[name][-1]:.1f} s", flush=True)
    return {name: statistics.median(v) for name, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--card", default="imagebind_huge")
    ap.add_argument("--n", type=int, default=200, help="images in the folder")
    ap.add_argument("--batch", type=int, default=32, help="batch size of the build and of the model-only run")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds (median)")
    ap.add_argument("--engines", default="fp32,int8")
    ap.add_argument("--size", default="640x480", help="JPEG size WxH")
    ap.add_argument("--workers", type=int, default=None, help="loader threads (default: bindkit's)")
    ap.add_argument("--quick", action="store_true", help="n=8, batch 4, 1 round, fp32 only (a smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.n, args.batch, args.rounds, args.engines = 8, 4, 1, "fp32"
    engines = args.engines.split(",")
    size = tuple(int(v) for v in args.size.lower().split("x"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.card} vision, n={args.n}, "
          f"batch {args.batch}, {args.size} JPEGs, engines {', '.join(engines)}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="bindkit_e2e_"))
    try:
        t = time.perf_counter()
        photos = work / "photos"
        photos.mkdir()
        paths = make_photos(photos, args.n, size)
        mb = sum(Path(p).stat().st_size for p in paths) / 1e6
        print(f"[e2e] wrote {args.n} JPEGs ({mb:.1f} MB) in {time.perf_counter() - t:.1f} s", flush=True)

        t = time.perf_counter()
        torch.manual_seed(0)
        fp32 = bindkit.build_model(args.card, modalities=["vision"])
        models = {"fp32": fp32}
        if "int8" in engines:
            models["int8"] = quantize_model(copy.deepcopy(fp32))
        models = {e: models[e] for e in engines}
        print(f"[e2e] built the models in {time.perf_counter() - t:.1f} s", flush=True)

        kwargs = {} if args.workers is None else {"num_workers": args.workers}
        t = time.perf_counter()
        tensors = bindkit.preprocess("image", paths, card=fp32, **kwargs)
        print(f"[e2e] preprocessed {args.n} images in {time.perf_counter() - t:.2f} s (first, cold)", flush=True)
        builds = [0]
        busy: dict[str, list[float]] = {engine: [] for engine in models}

        def run_build(engine: str) -> None:
            model = models[engine]
            builds[0] += 1
            out = work / f"index_{builds[0]}"
            inside = [0.0]
            encode = model.encode

            def timed_encode(*a: Any, **kw: Any) -> Any:  # time the model spends working during the build
                t = time.perf_counter()
                try:
                    return encode(*a, **kw)
                finally:
                    inside[0] += time.perf_counter() - t

            model.encode = timed_encode
            t = time.perf_counter()
            try:
                report = build([photos], out, model, modality="image", batch_size=args.batch,
                               workers=args.workers, progress=False)
            finally:
                del model.encode
            busy[engine].append(inside[0] / (time.perf_counter() - t))
            assert report["counts"]["embedded"] == args.n, report["counts"]
            shutil.rmtree(out)

        def run_model(model: Any) -> None:
            with torch.inference_mode():
                for start in range(0, args.n, args.batch):
                    model.encode("image", tensors[start:start + args.batch])

        fns: dict[str, Callable[[], Any]] = {"load only": lambda: bindkit.preprocess("image", paths, card=fp32,
                                                                                      **kwargs)}
        for engine, model in models.items():
            fns[f"{engine} build"] = lambda e=engine: run_build(e)
            fns[f"{engine} model only"] = lambda m=model: run_model(m)
        with torch.inference_mode():  # warm-up: one batch per engine
            for model in models.values():
                model.encode("image", tensors[: args.batch])
        med = interleaved_median(fns, args.rounds)

        print(f"[e2e] load only     : {args.n / med['load only']:8.2f} images/s (decode + preprocess, "
              f"median of {args.rounds})")
        for engine in models:
            b, m = med[f"{engine} build"], med[f"{engine} model only"]
            print(f"[e2e] {engine} build      : {args.n / b:8.3f} images/s   model only {args.n / m:8.3f} images/s"
                  f"   build / model = {m / b:.3f}   (median of {args.rounds});  model busy during the build "
                  f"{statistics.median(busy[engine]):.1%}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
