"""``bindkit datasets synthetic``: write the procedural synthetic world (files + pair manifests) to a folder."""

from __future__ import annotations

import argparse
import time

from .common import add_result_args, positive_int

_LAYOUT = """\
layout of OUT (paths in every manifest are relative to the manifest's folder):
  image_text.csv image_audio.csv image_depth.csv image_thermal.csv image_imu.csv
                              training pairs (train split), columns image,<modality>
  classes_<attr>.json         class names for shape, colour, size, material, temperature, motion
  templates_<attr>.json       prompt templates for zero-shot classification of <attr>
  train/  test/  compositional/
      image/ audio/ depth/ thermal/ imu/   the files (PNG, 16-bit WAV, 16-bit PNG in mm, 8-bit PNG, CSV)
      labels.csv                           every file, caption and label of each sample
  test/, compositional/ also hold:
      image_<modality>.csv                 retrieval pairs
      <modality>_<attr>.csv                zero-shot files, columns <modality>,label
  world.json, README.md       parameters, held-out combinations, file formats

what the signals encode:
  image: everything; caption: a random subset, with synonyms; audio: size (pitch), material (timbre),
  motion (rhythm); depth: shape and size; thermal: temperature (fixed scale, hot is bright) and shape;
  IMU: motion. Six shape x colour combinations appear only in compositional/.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "datasets",
        help="make data sets: the procedural synthetic world (image, text, audio, depth, thermal, IMU)",
        description="Make data sets bindkit can train and evaluate on, without downloading anything.",
    )
    sub = p.add_subparsers(dest="dataset", metavar="DATASET")
    p.set_defaults(func=lambda args: _no_dataset(p))
    s = sub.add_parser(
        "synthetic",
        help="a deterministic procedural world of shapes, rendered in six modalities",
        description="Write a procedural world of objects (shape, colour, size, material, temperature, motion),\n"
        "each rendered as a paired image, caption, sound, depth map, thermal map and IMU recording,\n"
        "with pair manifests for `bindkit train` and held-out test files for `bindkit eval`.\n"
        "The same --seed and options give byte-identical files.",
        epilog=_LAYOUT + "\nexamples:\n"
        "  bindkit datasets synthetic --out world --n 5000\n"
        "  bindkit train world/image_text.csv --card bindkit_small --out m1\n"
        "  bindkit eval m1 --zero-shot world/test/image_shape.csv --classes world/classes_shape.json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty; see --overwrite)")
    s.add_argument("--n", type=positive_int, default=5000, metavar="N",
                   help="training samples (default 5000)")
    s.add_argument("--n-test", type=int, default=None, metavar="N",
                   help="samples in test/ (default: N/10, at least 50; 0: none)")
    s.add_argument("--n-compositional", type=int, default=None, metavar="N",
                   help="samples in compositional/ (default: as --n-test; 0: none)")
    s.add_argument("--n-val", type=int, default=0, metavar="N",
                   help="samples in a val/ folder laid out like test/ (default 0: `bindkit train` makes "
                   "its own validation split)")
    s.add_argument("--seed", type=int, default=0, metavar="S", help="world seed (default 0)")
    s.add_argument("--size", type=positive_int, default=64, metavar="PX",
                   help="image, depth and thermal side in pixels (default 64)")
    s.add_argument("--audio-seconds", type=float, default=2.0, metavar="S", help="sound length (default 2.0)")
    s.add_argument("--imu-seconds", type=float, default=4.0, metavar="S", help="IMU length (default 4.0)")
    s.add_argument("--imu-rate", type=float, default=100.0, metavar="HZ",
                   help="IMU sample rate (default 100; the loader resamples to the card's length)")
    s.add_argument("--audio-mic", choices=["clean", "shifted"], default="clean",
                   help="the microphone the sounds are recorded with: clean (default, what bindkit_toy was "
                   "trained on) or shifted (band-pass, resonance, coloured noise, low gain: a domain shift; "
                   "every other file is the same as the clean world's with the same --seed)")
    s.add_argument("--workers", type=positive_int, default=1, metavar="N",
                   help="processes rendering in parallel (default 1; output is identical)")
    s.add_argument("--overwrite", action="store_true", help="replace a synthetic world already in --out")
    add_result_args(s, quiet="no progress bar or summary",
                    json="print the summary as JSON: out, counts per split, zero-shot files, seconds")
    s.set_defaults(func=run_synthetic)


def _no_dataset(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def run_synthetic(args: argparse.Namespace) -> int:
    from ..datasets.synthetic.writer import DatasetError, default_held_out_count, generate

    n_test = default_held_out_count(args.n) if args.n_test is None else args.n_test
    n_comp = n_test if args.n_compositional is None else args.n_compositional
    splits = {"train": args.n, "test": n_test, "compositional": n_comp, "val": args.n_val}
    for name, count in splits.items():
        if count < 0:
            raise DatasetError(f"--n-{name}: must be >= 0, got {count}")
    start = time.perf_counter()
    summary = generate(args.out, seed=args.seed, splits=splits, overwrite=args.overwrite, workers=args.workers,
                       show_progress=False if args.quiet else None, size=args.size,
                       audio_seconds=args.audio_seconds, imu_seconds=args.imu_seconds, imu_rate=args.imu_rate,
                       audio_mic=args.audio_mic)
    took = time.perf_counter() - start
    if args.json:
        import json

        print(json.dumps({**summary, "out": str(summary["out"]), "seconds": round(took, 3)}, default=str))
    elif not args.quiet:
        counts = ", ".join(f"{k} {v}" for k, v in summary["counts"].items())
        print(f"wrote a synthetic world to {summary['out']} ({counts} samples, seed {args.seed}) in {took:.1f} s")
        print(f"  training pairs: {summary['out']}/image_{{text,audio,depth,thermal,imu}}.csv")
        if summary["zero_shot"]:
            print(f"  zero-shot tests: {len(summary['zero_shot'])} files such as {summary['zero_shot'][0]}")
        print(f"  see {summary['out']}/README.md")
    return 0
