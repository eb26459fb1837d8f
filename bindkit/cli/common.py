"""Helpers the subcommands share: argument types and the one way a command finds its model.

Not a subcommand itself (``bindkit.cli`` registers only the modules it lists)."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value}")
    return value


def parse_bytes(text: str) -> int:
    """``"8G"``, ``"512M"``, ``"1.5GiB"``, ``"1000000"`` -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"expected a size such as 8G or 512M, got {text!r}")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))


def default_device() -> str:
    """The device of a command given no ``--device``: ``$BINDKIT_DEVICE``, else ``cuda:<LOCAL_RANK>`` when CUDA is
    available, else ``cpu`` (:func:`bindkit.factory.auto_device`)."""
    from ..factory import auto_device

    return str(auto_device())


def add_device_arg(p: "argparse.ArgumentParser | argparse._ArgumentGroup") -> None:
    """``--device`` for commands that choose their device (:func:`default_device` when it is not given)."""
    p.add_argument("--device", metavar="DEV", help="cpu, cuda, cuda:N... (default: $BINDKIT_DEVICE, else "
                   "cuda:LOCAL_RANK if available, else cpu)")


def add_quantize_arg(p: argparse.ArgumentParser) -> None:
    """``--quantize int8|bf16``: the opt-in cheaper arithmetic of every command that embeds."""
    p.add_argument("--quantize", choices=["int8", "bf16"], default=None, metavar="{int8,bf16}",
                   help="int8: dynamic int8 Linear layers on the CPU, ~1.8-3.5x faster with cosine to fp32 ~0.998+ "
                   "(check yours: bindkit bench --fidelity FILES); bf16: bfloat16 autocast, ~1.7-2.6x faster on CPUs "
                   "with AVX512-BF16/AMX and on recent GPUs, cosine ~0.9999 (emulated, so slower, elsewhere); "
                   "default fp32. An index keeps one kind: int8/bf16 queries on an fp32 index warn, adding their "
                   "vectors to it is refused (and vice versa)")


def add_optimiser_args(p: argparse.ArgumentParser, *, epochs_help: str, batch_size: int, batch_help: str,
                       lr: float, weight_decay: float, epochs: int | None = 10,
                       epochs_default_help: str = "") -> argparse._ArgumentGroup:
    """The "optimisation" group shared by ``bindkit train`` and ``bindkit distill`` (AdamW, warm-up + cosine):
    --epochs, --batch-size, --lr, --weight-decay, --warmup, --grad-clip, --max-steps, --seed. The defaults that
    differ between the two are arguments; returns the group so a command can add its own options to it."""
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=positive_int, default=epochs,
                     help=f"{epochs_help} (default {epochs_default_help or epochs})")
    opt.add_argument("--batch-size", type=positive_int, default=batch_size, metavar="N",
                     help=f"{batch_help} (default {batch_size})")
    opt.add_argument("--lr", type=non_negative_float, default=lr, help=f"peak learning rate (default {lr:g})")
    opt.add_argument("--weight-decay", type=non_negative_float, default=weight_decay, metavar="WD",
                     help=f"AdamW weight decay on weight matrices (default {weight_decay:g})")
    opt.add_argument("--warmup", type=non_negative_float, default=0.05, metavar="W",
                     help="linear warm-up: a fraction of all steps (< 1) or a number of steps (default 0.05)")
    opt.add_argument("--grad-clip", type=non_negative_float, default=1.0, metavar="NORM",
                     help="clip the gradient norm (0: off; default 1.0)")
    opt.add_argument("--max-steps", type=positive_int, metavar="N",
                     help="train exactly N steps (the schedule spans them) instead of --epochs")
    return opt


def add_checkpoint_args(run: argparse._ArgumentGroup) -> None:
    """--save-every and --stop-after, as ``bindkit train`` and ``bindkit distill`` checkpoint (both continue with
    --resume)."""
    run.add_argument("--save-every", type=positive_int, metavar="N",
                     help="checkpoint every N steps too (default: at the end of every epoch)")
    run.add_argument("--stop-after", type=positive_int, metavar="N",
                     help="checkpoint and exit after N steps of this invocation (time-limited jobs); continue "
                     "with --resume")


def add_model_args(p: argparse.ArgumentParser, *, for_index: bool = True) -> None:
    """``--model``, ``--weights``, ``--device``, ``--quantize``. ``for_index``: the defaults come from the index the command
    works on (the card and weights it was built with) and the device is chosen automatically."""
    if for_index:
        p.add_argument("--model", metavar="CARD", help="encoder card (default: the one the index was built with, "
                       "else imagebind_huge)")
        p.add_argument("--weights", metavar="PATH", help="checkpoint or converted weights folder (default: as "
                       "recorded in the index, else the card's local/cached weights)")
        add_device_arg(p)
    else:
        p.add_argument("--model", default="imagebind_huge", metavar="CARD",
                       help="encoder card name or path (default: imagebind_huge)")
        p.add_argument("--weights", metavar="PATH", help="checkpoint (.pth, .safetensors) or converted directory "
                       "(default: the card's weights in weights/ or the cache, downloaded if absent)")
        p.add_argument("--device", default="cpu", metavar="DEV", help="torch device (default cpu)")
    add_quantize_arg(p)


def load_model_for(index_dir: str | os.PathLike | None, model: str | None, weights: str | None,
                   device: str | None, modalities: list[str] | None = None, *, require_index: bool = False,
                   download: bool = True, quantize: str | None = None) -> Any:
    """The model a command needs: ``--model``/``--weights`` when given, else the card and weights recorded in
    the index ``index_dir`` when it exists, else imagebind_huge (local weights, or download).

    ``require_index``: ``index_dir`` must already be an index (checked before any weights are read or
    downloaded, so a mistyped folder fails at once). A ``model`` other than the one the index was built with
    is refused the same way (IndexStoreError naming both), before it can start a download. ``quantize``: as
    ``bindkit.load_model`` (``--quantize``; int8 runs on the CPU, so it implies ``cpu`` when no device is given;
    bf16 follows the usual default device)."""
    import bindkit

    from ..errors import IndexStoreError
    from ..index.store import DB_NAME, Store
    from ..index.student import card_record

    recorded: dict[str, Any] = {}
    if index_dir is not None and (require_index or (Path(index_dir) / DB_NAME).is_file()):
        store = Store(index_dir)  # IndexStoreError naming the folder when it is not an index
        try:
            recorded = store.get_info("model") or {}
        finally:
            store.close()
    if model is not None and recorded.get("card"):
        asked_card = bindkit.load_card(model)  # CardError for an unknown card
        asked = asked_card.name
        student_of = (card_record(asked_card) or {}).get("teacher")  # a distilled student may query (bindkit distill)
        if asked != recorded["card"] and student_of != recorded["card"]:
            raise IndexStoreError(
                f"index {index_dir} was built with model {recorded['card']!r}, but --model {model} asks for "
                f"{asked!r}; vectors of different models never mix: drop --model (the index's model is the "
                f"default) or build a new index with {asked!r}")
    card = model or recorded.get("card") or "imagebind_huge"
    if weights is None and card == recorded.get("card"):
        weights = recorded.get("weights")
    if quantize == "int8" and device is None:
        device = "cpu"
    return bindkit.load_model(card, weights=weights, modalities=modalities, device=device or default_device(),
                              download=download, quantize=quantize)


def shown(text: object) -> str:
    """``text`` safe to print on any terminal: a file name's bytes that are not valid UTF-8 (surrogate-escaped,
    PEP 383) appear as ``\\xNN`` escapes, e.g. ``caf\\xe9.jpg``, instead of failing the print. ``--json`` output
    keeps them exact (as ``\\udcNN`` escapes, which ``json.loads`` + ``os.fsencode`` turn back into the bytes)."""
    s = str(text)
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
