"""Turn a `bindkit train` output into the committed bindkit_toy: fp16 safetensors (<= 20 MB), its card with a
description that says what it is, its training record, and the card in encoders/.

    python benchmarks/finalize_bindkit_toy.py TRAINED_DIR [--out weights/bindkit_toy] [--encoders encoders]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import bindkit

DESCRIPTION = (
    "bindkit_toy: a model trained by bindkit on its synthetic world only (bindkit.datasets.synthetic: scenes of one "
    "object with a shape, colour, size, material, temperature and motion, rendered as image, caption, sound, depth, "
    "thermal and IMU). It knows that world and nothing else: it does not understand real photos, speech or sensors. "
    "Architecture: the bindkit_small card (ImageBind's layout, narrow and shallow, with an early-convolution image "
    "stem; 64 px images, 32-token text, 2 s audio, 64 px depth/thermal, 500-step IMU, 128-d space). Image and text "
    "were trained CLIP-style from scratch on "
    "image-caption pairs; audio, depth, thermal and IMU were then bound through images only, with the image and text "
    "encoders frozen, so any X->text ability is emergent. Stored in fp16. Reproduce: "
    "benchmarks/reproduce_bindkit_toy.sh (commands and figures in docs/bindkit_toy.md). Trained by bindkit "
    "on generated data: Apache-2.0, like the code.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trained", type=Path, help="a directory written by `bindkit train --name bindkit_toy`")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "weights" / "bindkit_toy")
    ap.add_argument("--encoders", type=Path, default=Path(__file__).resolve().parents[1] / "encoders")
    args = ap.parse_args(argv)

    card = json.loads((args.trained / "card.json").read_text())
    card["name"] = "bindkit_toy"
    card["description"] = DESCRIPTION
    card["weights"] = {"license": "Apache-2.0", "license_note": "trained by bindkit on generated data",
                       "source": "weights/bindkit_toy (committed; reproduce with benchmarks/reproduce_bindkit_toy.sh)"}
    if args.out.exists():
        shutil.rmtree(args.out)
    bindkit.convert(args.trained, args.out, card=bindkit.load_card(card), dtype="fp16", progress=False)
    manifest = json.loads((args.out / "manifest.json").read_text())
    manifest["source"] = "bindkit train (see train_record.json)"
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for name in ("train_record.json", "val_metrics.csv"):
        shutil.copyfile(args.trained / name, args.out / name)
    (args.encoders / "bindkit_toy.json").write_text((args.out / "card.json").read_text())
    size = sum(p.stat().st_size for p in args.out.glob("*.safetensors"))
    print(f"{args.out}: {size / 1e6:.1f} MB of safetensors; card {args.encoders / 'bindkit_toy.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
