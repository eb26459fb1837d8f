"""``bindkit eval MODEL``: zero-shot classification through text prompts, cross-modal retrieval, on a manifest, or
a distilled student against its teacher."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import add_device_arg, add_download_arg, positional_or_option, positive_int

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

distillation (--distill HELDOUT, MODEL a student made by `bindkit distill`):
  HELDOUT holds items of the student's modality it was not trained on (a .txt file of texts, a manifest
  column, a folder of media). Both the student and its teacher (recorded in the student; or --teacher) embed
  them; prints the mean student-teacher cosine (and median, 5th percentile, min) and R@k vs teacher: for each
  held-out query, the share of the teacher's own top-k that the student's top-k finds, among the held-out
  items themselves and, with --index IDX (built with the teacher), among every modality IDX holds, searched
  through bindkit.Index.open(IDX, model=student) as a user would. Also both models' items/s (same run).

Put MODEL first (or give it as --model MODEL): --templates takes every word after it.
Paths in TEST/PAIRS are relative to the file's folder. Rows with missing files, corrupt media, empty text
or unknown labels are skipped, counted and listed on stderr; they do not stop the evaluation.

examples:
  bindkit eval imagebind_huge --zero-shot esc50.csv --classes esc50_classes.json \\
      --templates "a photo of a {}." "the sound of a {}"
  bindkit eval m2 --zero-shot world/test/audio_material.csv --classes world/classes_material.json \\
      --templates world/templates_material.json
  bindkit eval m2 --retrieval world/test/image_audio.csv --json
  bindkit eval toy_text_student --distill heldout_captions.txt --index toy_images
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
    p.add_argument("model_arg", nargs="?", metavar="MODEL",
                   help="model to evaluate: an encoder card name or path (e.g. imagebind_huge, with --weights "
                   "or its local weights), or anything else bindkit.load_model accepts")
    p.add_argument("--model", metavar="MODEL", help="the same as the positional MODEL (give one of the two)")
    p.add_argument("--weights", metavar="PATH", help="checkpoint or converted weights folder for MODEL's card")
    add_device_arg(p)
    add_download_arg(p)
    task = p.add_mutually_exclusive_group(required=True)
    task.add_argument("--zero-shot", metavar="TEST", help="zero-shot test file: one modality column + label")
    task.add_argument("--retrieval", metavar="PAIRS", help="pair manifest: two modality columns")
    task.add_argument("--distill", metavar="HELDOUT", help="held-out items (.txt, manifest or folder) to compare "
                      "the student MODEL with its teacher on")
    p.add_argument("--teacher", metavar="MODEL", help="distill: the teacher (default: the one the student records)")
    p.add_argument("--teacher-weights", metavar="PATH", help="distill: weights for --teacher CARD")
    p.add_argument("--index", metavar="IDX", help="distill: an index built with the teacher; R@k vs teacher is also "
                   "measured on its items, searched with each model")
    p.add_argument("--classes", metavar="CLASSES.json", help="JSON list of class names (needed with --zero-shot)")
    p.add_argument("--templates", nargs="+", metavar="T",
                   help="prompt templates with {} for the class name, and/or .json files listing them "
                   "(default: \"a photo of a {}.\")")
    p.add_argument("--modality", metavar="KIND", help="zero-shot: the column to classify when TEST has several; "
                   "distill: the modality (default: the one the student was distilled for)")
    p.add_argument("--columns", metavar="A,B", help="retrieval: the two columns to use when PAIRS has more; "
                   "distill: the one manifest column to read")
    p.add_argument("--k", type=positive_int, nargs="+", default=[1, 5, 10], metavar="K",
                   help="retrieval and distill: recall cut-offs (default 1 5 10)")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N", help="items per forward pass")
    p.add_argument("--json", action="store_true", help="print one JSON object (accuracy, per_class, n, ... or "
                   "the R@k figures) instead of the table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _needed_modalities(args: argparse.Namespace) -> list[str]:
    """The encoders the task needs (read from the file's header), so only those are loaded."""
    from ..eval import EvalError, modality_columns, read_table
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
    from ..eval import EvalError, load_classes, load_templates, retrieval, zero_shot
    from .common import load_model_for

    positional_or_option(args, command="eval", dest="model", positional="model_arg", flag="--model",
                         metavar="MODEL")
    if args.distill:
        return run_distill_eval(args)
    if args.teacher or args.teacher_weights or args.index:
        raise EvalError("--teacher, --teacher-weights and --index go with --distill")
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
    _print_confusion(r["classes"], r["confusion"])


def _print_confusion(classes: list[str], confusion: list[list[int]], max_classes: int = 20) -> None:
    """The confusion matrix (rows: true class, columns: predicted), up to ``max_classes`` classes (--json has
    it whole)."""
    if len(classes) > max_classes:
        print(f"confusion: {len(classes)} classes, too many to print (--json has the matrix)")
        return
    cells = max(3, max(len(str(v)) for row in confusion for v in row))
    heads = [c[:cells] for c in classes]
    width = max(len(c) for c in classes)
    print("confusion (rows: true class, columns: predicted):")
    print(f"  {'':<{width}}  " + " ".join(f"{h:>{cells}}" for h in heads))
    for name, row in zip(classes, confusion):
        print(f"  {name:<{width}}  " + " ".join(f"{v:>{cells}}" for v in row))


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


def _distill_setup(args: argparse.Namespace) -> tuple[str, str, str | None]:
    """(modality, teacher, teacher weights) for --distill: from the options, else from the student's record."""
    import bindkit

    from ..errors import CardError
    from ..eval import EvalError
    from ..index.student import card_record
    from ..modality import input_kind

    try:
        card = bindkit.load_card(args.model)
    except CardError:
        card = None  # a checkpoint of a card: not a student; --teacher and --modality are then needed
    record = (card_record(card) if card is not None else None) or {}
    kind = args.modality or record.get("modality")
    recorded = record.get("teacher_source") or (record.get("teacher") if record.get("teacher_weights") else None)
    teacher = args.teacher or recorded
    weights = args.teacher_weights or (record.get("teacher_weights") if not args.teacher else None)
    if not kind or not teacher:
        what = ("records no teacher it was distilled from" if not record else
                f"records its teacher {record['teacher']!r} but not where to load it from (it was distilled from "
                "a model object)")
        raise EvalError(f"{args.model} {what}; pass --teacher MODEL (and --teacher-weights PATH, --modality KIND as "
                        "needed) to compare it with a teacher")
    return input_kind(kind), teacher, weights


def run_distill_eval(args: argparse.Namespace) -> int:
    """``bindkit eval STUDENT --distill HELDOUT``."""
    from pathlib import Path

    import bindkit

    from ..distill.data import read_items
    from ..eval import EvalError, distillation
    from .common import default_device, load_model_for

    if args.classes or args.templates:
        raise EvalError("--classes and --templates go with --zero-shot, not --distill")
    kind, teacher_spec, teacher_weights = _distill_setup(args)
    items = read_items(Path(args.distill), kind, args.columns)  # a bad file fails here, before any weights are read
    student = load_model_for(None, args.model, args.weights, args.device, modalities=[kind])
    teacher = bindkit.load_model(teacher_spec, weights=teacher_weights, modalities=[kind],
                                 device=args.device or default_device())
    report = distillation(student, teacher, items.items, kind, index=args.index, ks=args.k,
                          batch_size=args.batch_size, show_progress=False if (args.quiet or args.json) else None)
    report.update({"model": student.card.name, "teacher": teacher.card.name, "file": str(args.distill)})
    _report_skipped({**report, "rows": len(items)})
    if report["n"] == 0:
        raise EvalError(f"{args.distill}: none of its {len(items)} item(s) could be embedded by both models")
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"distillation {kind}   student {report['model']}   teacher {report['teacher']}   {report['file']}")
    print(f"items {report['n']} of {len(items)} ({report['skipped']} skipped)")
    print(f"student-teacher cosine   mean {report['mean_cosine']:.4f}   median {report['median_cosine']:.4f}   "
          f"5th percentile {report['p05_cosine']:.4f}   min {report['min_cosine']:.4f}")
    print("R@k vs teacher (the share of the teacher's own top-k that the student's top-k finds):")
    names = {name: f"{name} ({report['candidates'][name]} candidates)" for name in report["recall_vs_teacher"]}
    width = max(len(v) for v in names.values())
    keys = [f"R@{k}" for k in sorted(set(args.k))]
    print(f"  {'':<{width}}  " + "  ".join(f"{k:>6}" for k in keys))
    for name, d in report["recall_vs_teacher"].items():
        print(f"  {names[name]:<{width}}  " + "  ".join(_pct(d.get(k)) for k in keys))
    sp = report["items_per_s"]
    print(f"speed (embed: loading + encoding, this run): student {sp['student']:.0f} items/s, teacher "
          f"{sp['teacher']:.0f} items/s ({sp['student'] / max(sp['teacher'], 1e-9):.2f}x)")
    return 0
