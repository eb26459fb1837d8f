"""``bindkit convert``: reference checkpoint -> directory of per-modality safetensors files."""

from __future__ import annotations

import argparse

from ..modality import ENCODERS
from .common import add_alias, add_positional_alias, add_result_args, positional_or_option


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert a reference checkpoint (.pth) into per-modality safetensors files",
        description="Convert a reference-layout checkpoint (e.g. imagebind_huge.pth) into OUT/"
        "<modality>.safetensors, one file per modality, plus card.json and manifest.json (sizes, sha256). "
        "Loading one modality from the result reads only that file. Peak memory is about one modality.",
        epilog="example: bindkit convert ~/.cache/bindkit/imagebind_huge.pth --out weights/imagebind_huge "
        "--card imagebind_huge --dtype fp16",
    )
    p.add_argument("src", metavar="SRC", help="reference .pth/.pt, .safetensors, or a converted directory")
    out = p.add_argument("--out", metavar="DIR", help="destination directory (created; required)")
    add_positional_alias(p, "out_dir", metavar="OUT_DIR", of=out)
    p.add_argument("--card", metavar="CARD", help="card name or path stored with the weights (card.json)")
    p.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default=None,
                   help="storage dtype of floating-point tensors (default: as in SRC)")
    mods = p.add_argument("--modalities", action="append", metavar="LIST",
                          help=f"convert only these modalities ({', '.join(ENCODERS)}; image = vision), "
                          "comma-separated or repeated (default: every modality in SRC)")
    add_alias(p, "--modality", of=mods)
    add_result_args(p, quiet="no progress bar or table (the output folder still prints)",
                    json="print the output folder and its manifest (files, sizes, sha256) as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..weights import convert
    from ..weights.read import MANIFEST

    out_dir = positional_or_option(args, command="convert", dest="out", positional="out_dir", flag="--out",
                                   metavar="DIR")
    mods = None
    if args.modalities:
        mods = [m.strip() for part in args.modalities for m in part.split(",") if m.strip()]
    out = convert(args.src, out_dir, card=args.card, dtype=args.dtype, modalities=mods,
                  progress=not args.quiet)
    manifest = json.loads((out / MANIFEST).read_text())
    if args.json:
        print(json.dumps({"out": str(out), "manifest": manifest}, indent=2))
        return 0
    if not args.quiet:
        print(f"{'modality':<9} {'keys':>5} {'dtype':>9} {'MB':>9}  file")
        for m, info in manifest["files"].items():
            print(f"{m:<9} {info['keys']:>5} {info['dtype']:>9} {info['bytes'] / 1e6:>9.1f}  {info['file']}")
    print(out)
    return 0
