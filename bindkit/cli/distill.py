"""``bindkit distill``: train a small student that reproduces a teacher's vectors for one modality."""

from __future__ import annotations

import argparse
import sys
import textwrap

from .common import (add_checkpoint_args, add_device_arg, add_download_arg, add_optimiser_args, add_result_args,
                     non_negative_float, options_from, positive_int, run_result_json)

_EPILOG = """\
examples:
  # a text student of bindkit_toy, 1/8 of its text encoder's work per token, from unpaired captions
  bindkit distill --teacher bindkit_toy --modality text --student-card bindkit_toy_text_student \\
      --data captions.txt --out toy_text_student
  # measure it: student-teacher cosine and R@10 vs teacher on held-out captions, searching an image index
  # built with the teacher
  bindkit eval toy_text_student --distill heldout.txt --index toy_images
  # query the teacher's index with the student (adding items with it is refused: add with the teacher)
  bindkit search toy_images --text "a red metal star" --model toy_text_student
  # an image student from folders of unlabelled images, continuing a run that was interrupted
  bindkit distill --teacher m2 --modality image --student-card my_small_vision --data photos/ more_photos/ \\
      --out m2_image_student --resume

data (--data): unpaired items of the one modality, no labels or pairs needed: texts from a .txt file (one per
line) or a manifest column (.csv/.tsv/.jsonl/.parquet; the column named by the modality, or --column); media
from folders (walked recursively; files of other kinds are ignored) or a manifest column of paths (relative
to the manifest). Repeated items are used once. Use thousands of items like those the student will see.

how: the teacher embeds every item once into a cache on disk (OUT/teacher_cache, or --cache to share one
between runs; an interrupted fill continues where it stopped). The student — the --student-card's encoder for
the modality, with the teacher's output dimension, starting from the teacher's tensors of the same names (the
first blocks of a shallower student; the leading part of a narrower one's) — learns to output the teacher's
unit vectors: loss = (1 - cosine) + W x InfoNCE of its vectors against the teacher's in-batch vectors
(--contrastive W). A small held-out split (--val-split) reports the mean student-teacher cosine every epoch;
the best epoch is published.

output (OUT): card.json + <encoder>.safetensors + manifest.json: a model directory (bindkit.load_model("OUT"),
--model OUT) that records the teacher it serves (card, dimension, modality, the teacher's encoder fingerprints).
bindkit.Index.open(teacher_index, model=OUT's model) accepts it for queries of that modality only and refuses
it for adding items. distill_record.json (data, arguments, teacher, cache, per-epoch metrics), metrics.csv (per
step), checkpoints/last (what --resume continues from) and checkpoints/best.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "distill",
        help="train a small student that reproduces a teacher's vectors for one modality (searches its indexes)",
        description=textwrap.fill(
            "Distil one modality of a teacher model into a smaller student that outputs vectors in the teacher's "
            "space, from unpaired data of that modality alone. The student queries indexes built with the "
            "teacher (faster, smaller); items are still added with the teacher.", 100),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--teacher", required=True, metavar="MODEL",
                   help="the model whose space the student serves: a model directory or a card name (with "
                   "--teacher-weights or its local weights)")
    p.add_argument("--teacher-weights", metavar="PATH", help="checkpoint or converted folder for --teacher CARD")
    add_download_arg(p)
    p.add_argument("--modality", default="text", metavar="KIND",
                   help="the one modality to distil: text (default), image, video, audio, depth, thermal or imu")
    p.add_argument("--student-card", required=True, metavar="CARD",
                   help="card (name or JSON path) of the student's architecture; only its encoder for --modality "
                   "is used, and its out_embed_dim must equal the teacher's dimension")
    p.add_argument("--data", required=True, nargs="+", metavar="SOURCE",
                   help=".txt file (texts), manifest (.csv/.tsv/.jsonl/.parquet) or folder (media); several allowed")
    p.add_argument("--column", metavar="COL", help="the manifest column to read (default: the one named by "
                   "--modality)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (new, or the run to --resume)")
    p.add_argument("--name", metavar="NAME", help="the student's card name (default: the --out folder's name)")
    opt = add_optimiser_args(p, epochs_help="passes over the data", batch_size=256,
                             batch_help="items per step; also the InfoNCE negatives", lr=2e-3, weight_decay=0.01)
    opt.add_argument("--contrastive", type=non_negative_float, default=0.1, metavar="W",
                     help="weight of the InfoNCE term against the teacher's in-batch vectors (0: cosine only; "
                     "default 0.1)")
    opt.add_argument("--temperature", type=float, default=0.05, metavar="T",
                     help="InfoNCE temperature (default 0.05)")
    opt.add_argument("--one-hot-targets", dest="teacher_targets", action="store_false",
                     help="classic InfoNCE targets (each item's own teacher vector only); default: the teacher's "
                     "own in-batch distribution, so near-duplicate items are not pushed apart")
    opt.add_argument("--seed", type=int, default=0, help="seed for initialisation, split and order (default 0)")
    opt.add_argument("--val-split", type=float, default=0.02, metavar="F",
                     help="fraction held out to report the student-teacher cosine per epoch (default 0.02; 0: none)")
    opt.add_argument("--no-teacher-init", dest="init_from_teacher", action="store_false",
                     help="start from random weights (default: from the teacher's tensors of the same names: whole "
                     "where shapes match, their leading part where the student is narrower, e.g. its first blocks, "
                     "heads, MLP units and residual dimensions)")
    opt.add_argument("--teacher-blocks", type=_blocks, metavar="I,J,...",
                     help="which teacher block starts each student block, e.g. 0,3 for a 2-block student of a "
                     "4-block teacher (its first and last); default the first ones")
    run = p.add_argument_group("run")
    run.add_argument("--cache", metavar="DIR", help="teacher-vector cache folder (default OUT/teacher_cache); runs "
                     "on the same data and teacher share it")
    run.add_argument("--resume", action="store_true", help="continue the run in --out (its cache fill or its "
                     "training)")
    add_checkpoint_args(run)
    run.add_argument("--teacher-batch-size", type=positive_int, default=256, metavar="N",
                     help="items per teacher forward pass while filling the cache (default 256)")
    add_device_arg(run)
    run.add_argument("--workers", type=int, default=0, metavar="N",
                     help="threads loading media items (default: up to 8)")
    add_result_args(run, quiet="no progress bars (OUT still prints at the end)",
                    json="print {out, step, total_steps, finished, best, epochs} as JSON at the end instead of OUT")
    p.set_defaults(func=run_distill)


def _blocks(text: str) -> list[int]:
    try:
        blocks = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        blocks = []
    if not blocks or min(blocks) < 0:
        raise argparse.ArgumentTypeError(f"expected block numbers separated by commas, like 0,3; got {text!r}")
    return blocks


def run_distill(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..distill.loop import distill_with
    from ..distill.options import DistillOptions

    result = distill_with(options_from(
        DistillOptions, args, data=[Path(d) for d in args.data], progress=False if args.quiet else None,
        command=["bindkit"] + sys.argv[1:] if sys.argv[1:2] == ["distill"] else None))
    if result.finished:
        print(run_result_json(result) if args.json else result.out)
    return 0
