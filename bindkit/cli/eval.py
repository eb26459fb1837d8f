"""``bindkit eval MODEL``: zero-shot classification through text prompts, or cross-modal retrieval, on a manifest."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import positive_int

_EPILOG = """\
zero-shot (--zero-shot TEST --classes CLASSES.json):
  TEST has one modality column (image, video, audio, depth, thermal, imu or text) and a `label` column
  holding a class name or a 0-based index into CLASSES.json (a JSON list of names); other columns are
  ignored. Each class is embedded as text through every template ("a photo of a {}." by default), the
  prompt vectors are normalised, averaged and renormalised (CLIP's prompt ensembling), and each item is
  given the class with the highest cosine. Prints accuracy, balanced accuracy, chance and per-class
  accuracy. With a model that never saw <modality>-text pairs this is ImageBind's emergent zero-shot test.

retrieval (--retrieval PAIRS):
  PAIRS has two modality columns; row i of one matches row i of the other (a pair manifest as used by
  `bindkit train`). Every item queries all items of the other side, both ways; prints R@1/5/10 (the
  share of queries whose match ranks in the top k; ties count against the model) and the median rank.

Put MODEL first: --templates takes every word after it.
Paths in TEST/PAIRS are relative to the file's folder. Rows with missing files, corrupt media, empty text
or unknown labels are skipped, counted and listed on stderr; they do not stop the evaluation.

examples:
  bindkit eval imagebind_huge --zero-shot esc50.csv --classes esc50_classes.json \\
      --templates "a photo of a {}." "the sound of a {}"
  bindkit eval m2 --zero-shot world/test/audio_material.csv --classes world/classes_material.json \\
      --templates world/templates_material.json
  bindkit eval m2 --retrieval world/test/image_audio.csv --json
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model: zero-shot classification via text prompts, or cross-modal retrieval R@k",
        description="Evaluate MODEL on a test manifest: zero-shot accuracy against text prompts of class\n"
        "names, or retrieval recall between the two sides of a pair manifest.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL",
                   help="model to evaluate: an encoder card name or path (e.g. imagebind_huge, with --weights "
                   "or its local weights), or anything else bindkit.load_model accepts")
    p.add_argument("--weights", metavar="PATH", help="checkpoint or converted weights folder for MODEL's card")
    p.add_argument("--device", metavar="DEV", help="torch device (default: cuda:LOCAL_RANK if available, else cpu)")
    task = p.add_mutually_exclusive_group(required=True)
    task.add_argument("--zero-shot", metavar="TEST", help="zero-shot test file: one modality column + label")
    task.add_argument("--retrieval", metavar="PAIRS", help="pair manifest: two modality columns")
    p.add_argument("--classes", metavar="CLASSES.json", help="JSON list of class names (needed with --zero-shot)")
    p.add_argument("--templates", nargs="+", metavar="T",
                   help="prompt templates with {} for the class name, and/or .json files listing them "
                   "(default: \"a photo of a {}.\")")
    p.add_argument("--modality", metavar="KIND", help="zero-shot: the column to classify when TEST has several")
    p.add_argument("--columns", metavar="A,B", help="retrieval: the two columns to use when PAIRS has more")
    p.add_argument("--k", type=positive_int, nargs="+", default=[1, 5, 10], metavar="K",
                   help="retrieval: recall cut-offs (default 1 5 10)")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N", help="items per forward pass")
    p.add_argument("--json", action="store_true", help="print one JSON object (accuracy, per_class, n, ... or "
                   "the R@k figures) instead of the table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _needed_modalities(args: argparse.Namespace) -> list[str]:
    """The encoders the task needs (read from the file's header), so only those are loaded."""
    from ..evaluate import EvalError, modality_columns, read_table
    from ..modality import input_kind

    path = args.zero_shot or args.retrieval
    columns, _ = read_table(path)
    kinds = modality_columns(columns)
    if args.zero_shot:
        if args.modality:
            return sorted({input_kind(args.modality), "text"})
        if len(kinds) != 1:
            what = "several" if kinds else "no"
            raise EvalError(f"{path}: {what} modality columns ({', '.join(columns)}); a zero-shot file has one "
                            "(choose with --modality)")
        return sorted({next(iter(kinds)), "text"})
    if args.columns:
        return sorted({input_kind(c.strip()) for c in args.columns.split(",")})
    return sorted(kinds)


def run(args: argparse.Namespace) -> int:
    from ..evaluate import EvalError, load_classes, load_templates, retrieval, zero_shot
    from .common import load_model_for

    if args.zero_shot and not args.classes:
        raise EvalError("--zero-shot needs --classes CLASSES.json (a JSON list of class names)")
    if args.retrieval and (args.classes or args.templates or args.modality):
        raise EvalError("--classes, --templates and --modality go with --zero-shot, not --retrieval")
    classes = load_classes(args.classes) if args.zero_shot else None
    templates = load_templates(args.templates) if args.zero_shot else None
    modalities = _needed_modalities(args)  # a bad file fails here, before any weights are read
    model = load_model_for(None, args.model, args.weights, args.device, modalities=modalities)
    show = False if (args.quiet or args.json) else None
    if args.zero_shot:
        report = zero_shot(model, args.zero_shot, classes, templates, modality=args.modality,
                           batch_size=args.batch_size, show_progress=show)
    else:
        cols = [c.strip() for c in args.columns.split(",")] if args.columns else None
        report = retrieval(model, args.retrieval, args.k, columns=cols, batch_size=args.batch_size,
                           show_progress=show)
    report["model"] = getattr(model.card, "name", str(args.model))
    _report_skipped(report)
    if report["n"] == 0:
        raise EvalError(f"{report['file']}: none of its {report['rows']} row(s) could be evaluated "
                        "(see the skipped rows above)")
    if args.json:
        out = {k: v for k, v in report.items() if k != "predictions"}
        print(json.dumps(out))
    elif args.zero_shot:
        _print_zero_shot(report)
    else:
        _print_retrieval(report)
    return 0


def _report_skipped(report: dict[str, Any]) -> None:
    skipped = report["skipped_rows"]
    if not skipped:
        return
    print(f"skipped {len(skipped)} of {report['rows']} row(s) of {report['file']} (not scored):", file=sys.stderr)
    for s in skipped[:10]:
        print(f"  row {s['row']} ({s['item']}): {s['reason']}", file=sys.stderr)
    if len(skipped) > 10:
        print(f"  ... and {len(skipped) - 10} more (--json lists them all)", file=sys.stderr)


def _pct(x: float | None) -> str:
    return "   n/a" if x is None else f"{100 * x:5.1f}%"


def _print_zero_shot(r: dict[str, Any]) -> None:
    print(f"zero-shot {r['modality']} -> text   model {r['model']}   {r['file']}")
    print(f"items {r['n']} of {r['rows']} ({r['skipped']} skipped), {len(r['classes'])} classes, "
          f"{len(r['templates'])} template(s)")
    line = f"accuracy {_pct(r['accuracy'])}   chance {_pct(r['chance'])}   balanced {_pct(r['balanced_accuracy'])}"
    if "top5" in r:
        line += f"   top-5 {_pct(r['top5'])}"
    print(line)
    width = max(len(c) for c in r["classes"])
    print("per class:")
    for name in r["classes"]:
        print(f"  {name:<{width}}  {_pct(r['per_class'][name])}  (n={r['per_class_n'][name]})")


def _print_retrieval(r: dict[str, Any]) -> None:
    a, b = r["modalities"]
    print(f"retrieval {a} <-> {b}   model {r['model']}   {r['file']}")
    print(f"pairs {r['n']} of {r['rows']} ({r['skipped']} skipped)")
    keys = [k for k in r["chance"]]
    print(f"  {'':<{len(a) + len(b) + 4}}  " + "  ".join(f"{k:>6}" for k in keys) + "  median rank")
    for direction in (f"{a}_to_{b}", f"{b}_to_{a}"):
        d = r[direction]
        label = direction.replace("_to_", " -> ")
        print(f"  {label:<{len(a) + len(b) + 4}}  " + "  ".join(_pct(d[k]) for k in keys)
              + f"  {d['median_rank']:g}")
    print(f"  {'chance':<{len(a) + len(b) + 4}}  " + "  ".join(_pct(r['chance'][k]) for k in keys))
