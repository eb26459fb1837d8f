"""``bindkit search DIR --text ... [--image P ...]``: query an index from the command line."""

from __future__ import annotations

import argparse
import json

from ..errors import BindkitError, InputError
from ..modality import QUERY_KINDS, input_kind
from .common import add_alias, add_model_args, add_result_args, load_model_for, positive_int, shown


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search", help="search an index by text, image, audio, video, depth, thermal or IMU",
        description="Search an index. Several query inputs are combined by embedding arithmetic (unit vectors, "
        "weighted, summed, renormalised). Results: the top k per result modality.",
        epilog='examples:\n  bindkit search my_index --text "a dog barking" -k 5\n'
        "  bindkit search my_index --image dog.jpg --audio rain.wav --modalities image,video --where split=test\n"
        '  bindkit search my_index --text "beach" --weight text=0.5 --image sunset.jpg --json',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("index", metavar="DIR", help="index folder")
    for kind in QUERY_KINDS:
        p.add_argument(f"--{kind}", action="append", metavar="TEXT" if kind == "text" else "PATH",
                       help=f"{kind} query input (repeatable: several inputs are combined)")
    p.add_argument("--weight", action="append", metavar="KIND=W", help="weight of a query kind (default 1)")
    p.add_argument("-k", type=positive_int, default=10, help="hits per result modality (default 10)")
    kinds = p.add_argument("--modalities", metavar="LIST", help="result modalities, comma-separated, e.g. "
                           "image,video (default: all)")
    add_alias(p, "--modality", of=kinds)
    p.add_argument("--where", action="append", metavar="EXPR",
                   help="metadata filter KEY=VALUE (also !=, >, >=, <, <=), repeatable (all must hold)")
    add_model_args(p)
    add_result_args(p, quiet="only the hits, one per line: KIND<TAB>SCORE<TAB>PATH or 'text' (no headers or notes)",
                    json="print JSON: {kind: [{id, score, modality, uri, text, metadata}]}")
    p.add_argument("--profile", action="store_true", help="print where the time went (start-up, imports, model "
                   "load, index open, embed, search, total) on stderr. A search against a running `bindkit serve "
                   "--index DIR` (POST /search) skips everything but embed and search: the warm path")
    p.set_defaults(func=run)


def _weights(exprs: list[str] | None, given: list[str]) -> dict[str, float]:
    """``["text=0.5"]`` -> ``{"text": 0.5}``; each KIND must be one of the query kinds ``given``."""
    out: dict[str, float] = {}
    for expr in exprs or []:
        kind, _, value = expr.partition("=")
        try:
            weight = float(value)
        except ValueError:
            raise InputError(expr, "query", "expected --weight KIND=NUMBER, e.g. text=0.5") from None
        kind = input_kind(kind)
        if kind not in given:
            raise InputError(expr, "query", f"no --{kind} query input to weight (the inputs are "
                             f"{', '.join(given)})")
        out[kind] = weight
    return out


def empty_result_note(size: int, where: object) -> str:
    """What to print when a search found nothing: the index is empty, or nothing matched."""
    if not size:
        return "no results: the index is empty (add items with `bindkit index build SOURCES --out DIR`)"
    return f"no results among {size} items" + (" (no item matches the --where filters)" if where else "")


def run(args: argparse.Namespace) -> int:
    from .profile import Profile

    prof = Profile(enabled=getattr(args, "profile", False))
    with prof.phase("imports (torch, faiss...)"):
        import numpy as np

        from .. import factory  # noqa: F401  (torch: timed here rather than inside the model load)
        from ..index import Index, parse_where
        from ..modality import encoder_of

    inputs = {kind: getattr(args, kind) for kind in QUERY_KINDS if getattr(args, kind)}
    if not inputs:
        raise BindkitError("give at least one query input: --text, --image, --audio, --video, --depth, "
                           "--thermal or --imu")
    where = parse_where(args.where or [])
    weights = _weights(args.weight, list(inputs))
    with prof.phase("model load (query encoders)"):
        model = load_model_for(args.index, args.model, args.weights, args.device, require_index=True,
                               modalities=sorted({encoder_of(k) for k in inputs}), quantize=args.quantize)
    with prof.phase("index open"):
        index = Index.open(args.index, model=model)
    with index:
        # Every input (several per kind allowed) is a unit vector; the query is their weighted sum (search
        # renormalises it): the same embedding arithmetic as Index.search with one input per kind.
        with prof.phase("embed query"):
            total = np.zeros(index.dim, np.float32)
            for kind, items in inputs.items():
                emb = model.embed(**{kind: items}, show_progress_bar=False, strict=True)[kind]
                total += weights.get(kind, 1.0) * emb.sum(0)
        with prof.phase("search"):
            hits = index.search(vector=total, k=args.k, modalities=args.modalities, where=where)
            size = len(index)
    try:
        return _print_hits(args, hits, size, where)
    finally:
        prof.report()


def _print_hits(args: argparse.Namespace, hits: dict, size: int, where: object) -> int:
    if args.json:
        print(json.dumps({kind: [{"id": h.id, "score": h.score, "modality": h.modality, "uri": h.uri,
                                  "text": h.text, "metadata": h.metadata} for h in lst]
                          for kind, lst in hits.items()}, indent=2))
        return 0
    if args.quiet:
        for kind, lst in hits.items():
            for h in lst:
                print(f"{kind}\t{h.score:.4f}\t{shown(h.uri) if h.uri is not None else repr(h.text)}")
        return 0
    if not any(hits.values()):
        print(empty_result_note(size, where))
        return 0
    for kind, lst in hits.items():
        print(f"== {kind} ({len(lst)} hits)")
        for rank, h in enumerate(lst, 1):
            what = shown(h.uri) if h.uri is not None else repr(h.text)
            meta = f"  {json.dumps(h.metadata)}" if h.metadata else ""
            print(f"{rank:>3}. {h.score:+.4f}  {what}{meta}")
    return 0
