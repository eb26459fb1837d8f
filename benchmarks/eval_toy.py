"""The metrics table of a model trained on the synthetic world (bindkit_toy by default), on its held-out splits.

    python benchmarks/eval_toy.py WORLD [--model bindkit_toy] [--splits test compositional] [--json OUT]

WORLD is a folder written by ``bindkit datasets synthetic`` (its ``test/`` and ``compositional/`` splits were never
trained on). Prints, per split:

- image -> X retrieval (R@1, R@5 both ways, against chance) for every pair manifest of the split;
- zero-shot accuracy X -> text prompts for every ``<modality>_<attribute>.csv`` file, against chance. For
  audio, depth, thermal and IMU this is *emergent*: bindkit_toy never saw those modalities paired with text.

Reproducing bindkit_toy itself: see docs/bindkit_toy.md (benchmarks/reproduce_bindkit_toy.sh).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import bindkit
from bindkit import evaluate
from bindkit.modality import encoder_of


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("world", type=Path, help="a folder written by `bindkit datasets synthetic`")
    ap.add_argument("--model", default="bindkit_toy", help="card name or model directory (default bindkit_toy)")
    ap.add_argument("--splits", nargs="+", default=["test", "compositional"])
    ap.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = ap.parse_args(argv)

    model = bindkit.load_model(args.model)
    print(f"model {args.model} ({model.card.name}), world {args.world}")
    out: dict = {"model": args.model, "splits": {}}
    for split in args.splits:
        folder = args.world / split
        if not folder.is_dir():
            print(f"no {folder}: skipped")
            continue
        t0 = time.perf_counter()
        res: dict = {"retrieval": {}, "zero_shot": {}}
        print(f"\n== {split}")
        print(f"{'retrieval':<24}{'n':>5}{'R@1 ->':>9}{'R@1 <-':>9}{'R@5 ->':>9}{'R@5 <-':>9}{'chance R@1':>12}")
        for pairs in sorted(folder.glob("image_*.csv")):
            cols = pairs.stem.split("_")
            if len(cols) != 2 or cols[1] not in ("text", "audio", "depth", "thermal", "imu") \
                    or encoder_of(cols[1]) not in model.modalities:
                continue
            r = evaluate.retrieval(model, pairs, ks=(1, 5), show_progress=False)
            a, b = cols
            fw, bw = r[f"{a}_to_{b}"], r[f"{b}_to_{a}"]
            res["retrieval"][pairs.stem] = r
            print(f"{a + ' <-> ' + b:<24}{r['n']:>5}{fw['R@1']:>9.3f}{bw['R@1']:>9.3f}{fw['R@5']:>9.3f}"
                  f"{bw['R@5']:>9.3f}{r['chance']['R@1']:>12.4f}")
        print(f"\n{'zero-shot (-> text)':<24}{'n':>5}{'accuracy':>10}{'chance':>9}{'x chance':>10}")
        for test in sorted(folder.glob("*_*.csv")):
            m = re.fullmatch(r"(image|audio|depth|thermal|imu)_(\w+)", test.stem)
            classes_file = args.world / f"classes_{m.group(2)}.json" if m else None
            if not m or not classes_file.is_file() or encoder_of(m.group(1)) not in model.modalities:
                continue
            templates = args.world / f"templates_{m.group(2)}.json"
            s = evaluate.zero_shot(model, test, evaluate.load_classes(classes_file),
                                   evaluate.load_templates([str(templates)] if templates.is_file() else None),
                                   show_progress=False)
            res["zero_shot"][test.stem] = {k: s[k] for k in ("n", "accuracy", "chance", "per_class")}
            emergent = "" if m.group(1) == "image" else "  (emergent)"
            print(f"{m.group(1) + ' -> ' + m.group(2):<24}{s['n']:>5}{s['accuracy']:>10.3f}{s['chance']:>9.3f}"
                  f"{s['accuracy'] / s['chance']:>9.1f}x{emergent}")
        res["seconds"] = round(time.perf_counter() - t0, 1)
        out["splits"][split] = res
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
