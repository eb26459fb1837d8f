"""``bindkit models``: every card and model directory bindkit can see, and whether each runs here."""

from __future__ import annotations

import argparse
import json

from .common import add_result_args, shown


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the models bindkit can use here: encoders, dimension, size, licence, where the weights are",
        description="List every encoder card (shipped with bindkit, in $BINDKIT_ENCODERS) and every model directory "
        "in the weights folders ($BINDKIT_WEIGHTS, the package's own, ~/.cache/bindkit, a clone's weights/): its "
        "encoders, embedding dimension, parameter count, licence, where its weights are or how big their download "
        "is, and whether it runs here now. What runs here comes first. Any NAME shown works as --model NAME "
        "(a model directory: its path).",
        epilog="examples:\n  bindkit models\n  bindkit models -q\n  bindkit models --json | python -m json.tool",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_result_args(p, quiet="print the model names only, one a line (what runs here first)",
                    json="print a JSON list (one object per model) instead of a table")
    p.set_defaults(func=run)


def _count(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"


def run(args: argparse.Namespace) -> int:
    from ..catalog import list_models

    models = list_models()
    if args.json:
        print(json.dumps([m.to_dict() for m in models], indent=2))
        return 0
    if args.quiet:
        for m in models:
            print(shown(m.name))
        return 0
    print(f"{'NAME':<26} {'RUNS HERE':<10} {'DIM':>5} {'PARAMS':>8}  ENCODERS")
    for m in models:
        status = "yes" if m.runs_here else ("download" if m.download else "no")
        print(f"{shown(m.name):<26} {status:<10} {m.dim:>5} {_count(m.parameters):>8}  {','.join(m.modalities)}")
        where = shown(m.weights) if m.weights else (f"not here; {m.download}" if m.download else "none")
        print(f"    weights: {where}")
        print(f"    licence: {m.license}")
        if not m.runs_here or m.kind != "card":
            print(f"    {m.note}")
    print("\nUse one with --model NAME (e.g. bindkit index build FOLDER --model bindkit_toy --out idx).")
    return 0
