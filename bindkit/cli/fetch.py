"""``bindkit fetch``: download a card's weights (licence notice first; resumes; checks size/sha256)."""

from __future__ import annotations

import argparse

from .common import add_alias, add_result_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fetch",
        help="download the weights a card names (prints their licence first)",
        description="Download the weights of CARD (e.g. imagebind_huge, about 4.5 GB, CC BY-NC 4.0) into the "
        "cache ($XDG_CACHE_HOME/bindkit or ~/.cache/bindkit) or --out. The licence is printed before the "
        "download starts. An interrupted download resumes from its .part file when run again; the size and "
        "sha256 are checked when the card gives them.",
        epilog="example: bindkit fetch imagebind_huge --convert --dtype fp16",
    )
    p.add_argument("card", metavar="CARD", help="card name or path to a card JSON")
    out = p.add_argument("--out", dest="dest", metavar="DIR", help="download directory (default: the user cache)")
    add_alias(p, "--dest", of=out)
    p.add_argument("--force", action="store_true", help="download again even if the file exists")
    p.add_argument("--convert", action="store_true",
                   help="also convert the download into OUT/<card name>/ (per-modality safetensors)")
    p.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default=None,
                   help="with --convert: storage dtype (default: as downloaded)")
    add_result_args(p, quiet="no progress bar (the paths still print)",
                    json="print {\"weights\": PATH, \"converted\": DIR or null} as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cards import load_card
    from ..weights import convert, fetch_weights

    card = load_card(args.card)
    path = fetch_weights(card, args.dest, progress=not args.quiet, force=args.force)
    if not args.json:
        print(path)
    converted = None
    if args.convert:
        converted = convert(path, path.parent / card.name, card=card, dtype=args.dtype, progress=not args.quiet)
        if not args.json:
            print(converted)
    if args.json:
        import json

        print(json.dumps({"weights": str(path), "converted": None if converted is None else str(converted)}))
    return 0
