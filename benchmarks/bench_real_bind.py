"""Real-data binding benchmark: handwritten digits (images, real) + spoken digit names (audio, espeak-ng in many
voices with room, noise and telephone-band degradations), bound through images with bindkit's documented
command shape and its DEFAULTS:

    bindkit train image_text.csv --card bindkit_small --out m1
    bindkit train image_audio.csv --init m1 --freeze image,text --out m2
    bindkit eval m2 --zero-shot audio_test.csv --classes labels.json --templates "{}" "the digit {}" --json

Reports image zero-shot on held-out images, emergent audio -> text zero-shot on held-out voices (no
audio-text pair was ever trained on), per-class accuracy, confusion matrices and wall times, as JSON.

    python benchmarks/bench_real_bind.py                       # builds the data in out/real_bind/data first
    python benchmarks/bench_real_bind.py --stage1 "--pairing instance" --stage2 "--pairing instance"
    python benchmarks/bench_real_bind.py --small               # the test suite's size (a minute)

Needs scikit-learn and espeak-ng (tests/setup.sh installs it). The data (bindkit.datasets.digits) is generated
with a fixed seed; the training seed is --seed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bindkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "bindkit", *args]


def run(cmd: list[str], log: Path) -> float:
    t0 = time.time()
    with open(log, "a") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    return time.time() - t0


def evaluate(model: Path, data: Path, test: str, log: Path) -> dict:
    out = subprocess.run(_bindkit("eval", str(model), "--zero-shot", str(data / test), "--classes",
                                  str(data / "labels.json"), "--templates", "{}", "the digit {}", "--json"),
                         check=True, capture_output=True, text=True, cwd=ROOT)
    with open(log, "a") as fh:
        fh.write(out.stderr)
    rep = json.loads(out.stdout)
    return rep["results"][0] if "results" in rep else rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "out" / "real_bind"), help="work folder (default out/real_bind)")
    ap.add_argument("--data", help="data folder (default OUT/data, or OUT/data_small; built when missing)")
    ap.add_argument("--small", action="store_true", help="the tests' size: 6 voices, a few takes")
    ap.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    ap.add_argument("--stage1", default="", help="extra arguments for the image-text run (default: none)")
    ap.add_argument("--stage2", default="", help="extra arguments for the image-audio run (default: none)")
    ap.add_argument("--json", help="also write the report here")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from bindkit.datasets.digits import Settings, write_spoken_digits

    # absolute paths: the commands run from the repository root, so that `python -m bindkit` is this checkout's
    out = Path(args.out).resolve()
    data = Path(args.data).resolve() if args.data else out / ("data_small" if args.small else "data")
    report: dict = {"data": str(data), "seed": args.seed, "stage1_args": args.stage1, "stage2_args": args.stage2}
    if not (data / "labels.json").exists():
        t0 = time.time()
        report["data_summary"] = write_spoken_digits(data, Settings.small() if args.small else Settings())
        report["data_s"] = round(time.time() - t0, 1)
    runs = out / f"runs_seed{args.seed}"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    log = runs / "log.txt"
    m1, m2 = runs / "m1", runs / "m2"
    t1 = run(_bindkit("train", str(data / "image_text.csv"), "--card", "bindkit_small", "--out", str(m1),
                      "--seed", str(args.seed), "-q", *shlex.split(args.stage1)), log)
    t2 = run(_bindkit("train", str(data / "image_audio.csv"), "--init", str(m1), "--freeze", "image,text",
                      "--out", str(m2), "--seed", str(args.seed), "-q", *shlex.split(args.stage2)), log)
    t0 = time.time()
    img = evaluate(m2, data, "image_test.csv", log)
    aud = evaluate(m2, data, "audio_test.csv", log)
    t3 = time.time() - t0
    for name, r in (("image_zero_shot", img), ("audio_to_text_zero_shot", aud)):
        report[name] = {k: r.get(k) for k in ("accuracy", "top5", "balanced_accuracy", "per_class", "n", "confusion")
                        if k in r}
    report["wall_s"] = {"image_text_train": round(t1, 1), "image_audio_train": round(t2, 1),
                        "eval": round(t3, 1), "total": round(t1 + t2 + t3, 1)}
    for m in (m1, m2):
        rec = json.loads((m / "train_record.json").read_text())
        report[f"{m.name}_record"] = {"steps": rec.get("steps"), "total_steps": rec.get("total_steps"),
                                      "best": rec.get("best"), "stopped_early": rec.get("stopped_early")}
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(f"image zero-shot {img['accuracy']:.3f} | emergent audio -> text {aud['accuracy']:.3f} (chance 0.100) | "
          f"{report['wall_s']['total']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
