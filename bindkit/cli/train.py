"""``bindkit train``: contrastive training on pair manifests (from a card, or continuing from a model)."""

from __future__ import annotations

import argparse
import sys
import textwrap

from .common import (add_checkpoint_args, add_device_arg, add_download_arg, add_optimiser_args, add_result_args,
                     non_negative_float, options_from, run_result_json)

_EPILOG = """\
examples:
  # 1. an image-text space from scratch (CLIP-style), on a small card that trains on a CPU
  bindkit train image_text.csv --card bindkit_small --out m1
  # 2. bind audio to it through images only, leaving the image and text encoders bit-for-bit unchanged
  bindkit train image_audio.csv --init m1 --freeze image,text --out m2
  # m2 holds image, text and audio; audio->text search works without any audio-text pair
  bindkit index build sounds/ --model m2 --out idx && bindkit search idx --text "a dog barking" --model m2
  # 3. adapt m2's audio encoder to another microphone with LoRA: only the adapters train (a few % of the
  #    encoder); OUT holds audio.lora.safetensors + a manifest pointing at m2 (path and fingerprints)
  bindkit train mic2/image_audio.csv --init m2 --freeze image,text --lora r=8,alpha=16 --out m2_mic2
  bindkit eval m2_mic2 --retrieval mic2/test/image_audio.csv     # m2_mic2 loads as m2 + its adapter
  # continue a run that was killed (same arguments + --resume)
  bindkit train image_text.csv --card bindkit_small --out m1 --resume
  # several GPUs or CPU processes (DDP: gloo on CPU, nccl on GPU; --batch-size is the global batch)
  torchrun --nproc_per_node=4 -m bindkit train image_text.csv --card bindkit_small --out m1

manifests: CSV, JSONL or Parquet with two columns named by modality (image, video, text, audio, depth,
thermal, imu), e.g. "image,text" or "image,audio"; media paths are relative to the manifest, a text column
holds the text itself. An optional "label" column (the class of each row) switches on label pairing (see
--pairing): for pairs matched by class rather than recorded together. Other columns (id...) are ignored.
Several manifests train together: each step takes one batch from each and sums their losses.

schedule: without --epochs/--max-steps the run is sized to the data (120,000 pairs seen, within 10-60 epochs:
1k pairs -> 60 epochs, 12k+ -> 10) and stops early when the held-out score has not improved for a quarter of
the epochs; the best epoch is published.

output (OUT): card.json + <modality>.safetensors + manifest.json (the trained model, best epoch by held-out
R@1, label-level with label pairing) — use it as bindkit.load_model("OUT") or --model OUT anywhere; train_record.json (data + sha256,
arguments, metrics per epoch, versions); metrics.csv (per step), val_metrics.csv (per epoch);
checkpoints/last (what --resume continues from) and checkpoints/best.

LoRA (--lora r=8,alpha=16,targets=qkv,out,fc1,fc2[,head], needs --init): every encoder that trains (in a
manifest and not --freeze-d) gets low-rank adapters on its attention (qkv, out) and MLP (fc1, fc2)
projections; `head` also trains those encoders' heads. Everything else stays bit-for-bit. The trainable
parameter count is printed (adapters + heads). OUT then holds, instead of full weights, one
<encoder>.lora.safetensors per adapted encoder (keyed by module name; metadata: base card, base fingerprint,
rank, alpha, targets, training record) and a manifest pointing at the base model by path and fingerprint:
load_model("OUT") and --model OUT load the base plus the adapters, and refuse a base that moved (pass
--weights NEW_PATH) or whose weights changed. --init OUT continues the same adapters; --resume, checkpoints,
metrics.csv and train_record.json work as for any run.
"""


def _modalities(text: str) -> list[str]:
    from ..errors import ModalityError
    from ..modality import encoder_of

    out = [p.strip() for p in text.split(",") if p.strip()]
    try:
        for p in out:
            encoder_of(p)
    except ModalityError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return out


def _lora(text: str) -> str:
    from ..adapt.spec import parse_lora_spec  # no torch: a bad --lora fails before anything heavy loads
    from ..errors import ArgumentError

    if not text.strip():
        return ""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--lora takes key=value settings (e.g. --lora r=8,alpha=16), not {text!r}; "
                                         "for the defaults, put a bare --lora after the manifests")
    try:
        return str(parse_lora_spec(text))
    except ArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _split(text: str) -> float:
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {value}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train or extend a model on pair manifests (contrastive, ImageBind-style)",
        description=textwrap.fill(
            "Train encoders so that paired items land together in one space: symmetric InfoNCE between the two "
            "sides of each pair (ImageBind's loss, temperature per modality from the card), AdamW with warm-up + "
            "cosine, gradient clipping, per-modality augmentation, a held-out split evaluated every epoch (R@1 "
            "both ways), best and last checkpoints, exact resume, and DDP under torchrun.", 100),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("manifests", nargs="+", metavar="MANIFEST", help="pair manifest(s): .csv, .jsonl or .parquet")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (new, or the run to --resume)")
    src = p.add_argument_group("model")
    src.add_argument("--card", metavar="CARD", help="card to train from scratch (name or JSON path; default "
                     "bindkit_small); with --init, the card new encoders come from (default: the init model's)")
    src.add_argument("--init", metavar="MODEL", help="continue from a model: a directory written by bindkit "
                     "train or bindkit convert --card, or a card name (with --weights). Its encoders are kept; "
                     "encoders the manifests need that it lacks are added from the card, at random")
    src.add_argument("--weights", metavar="PATH", help="weights for --init CARD (checkpoint or converted folder)")
    add_download_arg(src)
    src.add_argument("--freeze", type=_modalities, default=[], metavar="MODS",
                     help="comma-separated modalities kept bit-for-bit unchanged (no gradients, eval mode, not in "
                     "the optimizer), e.g. image,text to bind a new modality to an existing space")
    src.add_argument("--name", metavar="NAME", help="the model's card name (default: the --out folder's name)")
    src.add_argument("--lora", nargs="?", const="", default=None, type=_lora, metavar="SPEC",
                     help="train LoRA adapters on the training encoders instead of their weights (needs --init): "
                     "r=RANK,alpha=A,targets=qkv,out,fc1,fc2[,head] (default r=8,alpha=16, all four projections, "
                     "no head); see below. --init a LoRA output continues its adapters")
    opt = add_optimiser_args(p, epochs_help="passes over the largest manifest", epochs=None,
                             epochs_default_help="sized to the data: 120000 pairs seen, within 10-60 epochs, "
                             "with early stopping", batch_size=64,
                             batch_help="global pairs per batch and manifest; more negatives help contrastive "
                             "training", lr=5e-4, weight_decay=0.05)
    opt.add_argument("--seed", type=int, default=0, help="seed for initialisation, data order, split and "
                     "augmentation (default 0)")
    data = p.add_argument_group("data")
    data.add_argument("--val-split", type=_split, default=0.1, metavar="F",
                      help="fraction of each manifest held out and evaluated every epoch (default 0.1; 0: none)")
    data.add_argument("--pairing", choices=("auto", "label", "instance"), default="auto",
                      help="label: each item's partner is redrawn every epoch among the other side's items of the "
                      "same label, and same-label items in a batch are positives (for pairs matched by class, "
                      "not recorded together); instance: each row is one pair. auto (default): label when the "
                      "manifest has a 'label' column")
    opt.add_argument("--patience", type=int, default=None, metavar="EPOCHS",
                     help="stop when the held-out score has not improved for this many epochs and publish the "
                     "best (default: a quarter of the epochs, at least 5, when --epochs and --max-steps are not "
                     "given; 0: never stop early)")
    data.add_argument("--no-augment", dest="augment", action="store_const", const="none", default="trainable",
                      help="no augmentation at all (default: augment the sides whose encoder trains)")
    data.add_argument("--augment-frozen", dest="augment", action="store_const", const="all",
                      help="augment frozen sides too (they are then embedded every step instead of cached once)")
    data.add_argument("--max-bad-rows", type=_split, default=0.05, metavar="F",
                      help="fraction of rows that may be unusable (missing files, empty cells) and are skipped; "
                      "more is an error before training (default 0.05)")
    run = p.add_argument_group("run")
    run.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    add_checkpoint_args(run)
    add_device_arg(run)
    run.add_argument("--workers", type=int, default=0, metavar="N",
                     help="data-loading worker processes per rank (default 0: load in the training process)")
    run.add_argument("--cache-mb", type=non_negative_float, default=2048, metavar="MB",
                     help="memory for preprocessed items, so each file is decoded once per run (default 2048)")
    run.add_argument("--amp", dest="amp", action="store_true", default=None,
                     help="mixed precision (default: on for CUDA)")
    run.add_argument("--no-amp", dest="amp", action="store_false", help="full precision on CUDA")
    add_result_args(run, quiet="no progress bar (OUT still prints at the end)",
                    json="print {out, step, total_steps, finished, best, epochs} as JSON at the end instead of OUT")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from ..train.options import TrainOptions
    from ..train.trainer import train_with

    result = train_with(options_from(
        TrainOptions, args, progress=False if args.quiet else None,
        command=["bindkit"] + sys.argv[1:] if sys.argv[1:2] == ["train"] else None))
    if result.record:
        print(run_result_json(result) if args.json else result.out)
    return 0
