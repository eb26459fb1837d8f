"""Helpers the subcommands share: argument types, the one way a command finds its model, and the CLI vocabulary.

Not a subcommand itself (``bindkit.cli`` registers only the modules it lists).

The vocabulary (every subcommand; ``tests/test_cli_vocabulary.py`` walks the parsers and holds them to it,
``docs/cli.md`` is the table for users):

``--model NAME``
    the model a command uses: a card name, a card JSON, or a model folder (``bindkit train``/``convert --card``
    output). ``embed``, ``index build``, ``search``, ``serve``, ``eval``, ``bench``, ``demo``. ``bindkit eval
    MODEL`` keeps its documented positional; ``--model`` is the alternative. Named otherwise, because they mean
    something else: ``train --card`` (an architecture to train from scratch: no weights), ``train --init`` (a
    model to continue from: the output is a new model, so ``--model`` would not say which), ``distill --teacher``
    / ``--student-card`` and ``eval --teacher`` (two models in one command), ``convert --card`` (the card written
    beside converted weights), ``fetch CARD`` (whose weights to download; nothing is loaded).
``--out PATH``
    every file or folder a command writes. Old spellings: ``fetch --dest``, ``demo --index``, ``convert SRC
    OUT_DIR`` (positional).
``--modality KIND`` / ``--modalities LIST``
    ``--modality``: the kind of the inputs, one of image, video, text, audio, depth, thermal, imu (``embed
    -m``, ``index build``, ``eval``, ``distill``). ``--modalities``: comma-separated kinds to return or load
    (``search`` results, ``serve`` and ``bench`` encoders, ``convert``, ``index optimize``). Old spellings:
    ``search --modality``, ``convert --modality``, ``index optimize --modality`` (each meaning what it meant).
``--workers N``
    loader/decoder threads or processes. Old spellings: ``embed --num-workers``, ``serve --decode-workers``.
    (``bench --threads`` sets torch's compute threads, not workers.)
``-q/--quiet`` and ``--json``
    on every command that prints a result (all but ``serve``, a server, and ``demo``, a guided tour).
    ``--quiet``: no progress bars or chatter; each command's help says what it still prints (``search`` its
    hits, ``train`` its output folder, ``embed`` nothing). ``--json``: the result as JSON on stdout.
``--download``
    consent in advance to downloading a model's weights that are not here (:func:`add_download_arg`; without it
    :class:`DownloadConsent` asks y/N on a terminal and refuses otherwise). Every command that may download
    (``bench`` never does).

Old spellings stay for one release as hidden aliases (:func:`add_alias`, :func:`add_positional_alias`): they are
not in ``--help``, parse to the same value, and print a one-line deprecation note on stderr.
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import re
import sys
import weakref
from pathlib import Path
from typing import Any, NoReturn


def _parse_number(text: str, cast: Any, expected: str) -> Any:
    try:
        return cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _parse_number(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a number >= 0."""
    value = _parse_number(text, float, "a number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    value = _parse_number(text, float, "a number in (0, 1]")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value}")
    return value


def parse_bytes(text: str) -> int:
    """``"8G"``, ``"512M"``, ``"1.5GiB"``, ``"1000000"`` -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"expected a size such as 8G or 512M, got {text!r}")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))


def deprecated_note(old: str, new: str) -> None:
    """The one-line note an old spelling prints on stderr (stdout stays clean for ``--json``)."""
    print(f"bindkit: {old} is deprecated and will be removed in the next release; use {new}", file=sys.stderr)


class DeprecatedAlias(argparse.Action):
    """Marker base of the hidden old spellings :func:`add_alias` registers (tests find them by it)."""

    preferred: str = ""


@functools.lru_cache(maxsize=None)
def _deprecated(base: type) -> type:
    """``base`` (an argparse action class) that prints :func:`deprecated_note` before it acts (once per parse:
    a repeated option is noted once)."""

    def __call__(self: Any, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        noted = getattr(self, "_noted", None)
        if noted is None or noted() is not namespace:
            deprecated_note(option_string or self.option_strings[0], self.preferred)
            self._noted = weakref.ref(namespace)
        base.__call__(self, parser, namespace, values, option_string)

    return type(f"Deprecated{base.__name__}", (base, DeprecatedAlias), {"__call__": __call__})


def add_alias(container: "argparse.ArgumentParser | argparse._ArgumentGroup", *old: str,
              of: argparse.Action) -> argparse.Action:
    """Register ``old`` option strings as a hidden alias of the option ``of`` (the action ``add_argument``
    returned): the same dest, type, nargs and choices; left out of ``--help``; when used it prints a one-line
    deprecation note naming the new spelling on stderr, then acts exactly as ``of`` would."""
    alias = copy.copy(of)
    alias.__class__ = _deprecated(type(of))
    alias.option_strings = list(old)
    alias.help = argparse.SUPPRESS
    alias.default = argparse.SUPPRESS  # the namespace default comes from ``of``
    alias.required = False
    alias.preferred = max(of.option_strings, key=len)  # type: ignore[attr-defined]
    return container._add_action(alias)


def usage_error(command: str, message: str) -> NoReturn:
    """Exit with status 2 and ``bindkit COMMAND: error: MESSAGE`` on stderr, as argparse does for a bad argument
    (for the checks argparse cannot express: a positional *or* an option)."""
    print(f"bindkit {command}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


class _DeprecatedPositional(DeprecatedAlias):
    """A hidden optional positional that is the old spelling of an option; notes its use when given."""

    def __init__(self, option_strings: list[str], dest: str, *, preferred: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.preferred = preferred

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if values is not None:
            deprecated_note(f"the positional {self.metavar}", self.preferred)
        setattr(namespace, self.dest, values)


def add_positional_alias(p: argparse.ArgumentParser, dest: str, *, metavar: str, of: argparse.Action) -> None:
    """Register the hidden positional ``dest`` (shown as ``metavar`` in notes) as the old spelling of the option
    ``of`` (``convert SRC OUT_DIR`` for ``--out``): optional, left out of ``--help`` and the usage line, noted
    on stderr when given. The command merges the two with :func:`positional_or_option`."""
    p.add_argument(dest, nargs="?", metavar=metavar, help=argparse.SUPPRESS, action=_DeprecatedPositional,
                   preferred=f"{max(of.option_strings, key=len)} {of.metavar or metavar}")


def positional_or_option(args: argparse.Namespace, *, command: str, dest: str, positional: str, flag: str,
                         metavar: str) -> Any:
    """The value given as the positional ``positional`` or as the option ``flag`` (stored in ``args.<dest>``):
    ``convert SRC OUT_DIR`` (old) or ``--out``; ``eval MODEL`` or ``--model``. Giving both, or neither, is a
    usage error (status 2)."""
    old, new = getattr(args, positional, None), getattr(args, dest, None)
    if old is not None and new is not None:
        usage_error(command, f"give {metavar} once: as {flag} {metavar} or as the positional {metavar}, not both")
    if old is not None:
        setattr(args, dest, old)
    value = getattr(args, dest, None)
    if value is None:
        usage_error(command, f"the following arguments are required: {flag} {metavar}")
    return value


def add_result_args(p: "argparse.ArgumentParser | argparse._ArgumentGroup", *, quiet: str, json: str) -> None:
    """``-q/--quiet`` and ``--json``, with the command's own help for each (what it leaves out; what the JSON
    holds): the pair every command that prints a result has."""
    p.add_argument("-q", "--quiet", action="store_true", help=quiet)
    p.add_argument("--json", action="store_true", help=json)


def run_result_json(result: Any) -> str:
    """The ``--json`` line of ``bindkit train`` and ``bindkit distill`` (a TrainResult or DistillResult): where
    the model is, how far the run got, its best epoch and its per-epoch metrics."""
    import json

    epochs = result.epochs if hasattr(result, "epochs") else result.history
    return json.dumps({"out": str(result.out), "step": result.step, "total_steps": result.total_steps,
                       "finished": result.finished, "best": result.best, "epochs": epochs}, default=str)


def options_from(cls: Any, args: argparse.Namespace, **given: Any) -> Any:
    """An options dataclass (:class:`bindkit.train.options.TrainOptions`, ``DistillOptions``) from the parsed
    arguments: each field from ``given`` when there, else from the argument of the same name, else its default.
    The options are declared once, in the dataclass; a command passes in ``given`` what its namespace holds under
    another name or in another form (``command``: the namespace's ``command`` is the subcommand's name)."""
    values = {name: given[name] if name in given else getattr(args, name) for name in cls.names()
              if name in given or hasattr(args, name)}
    return cls(**values)


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
        p.add_argument("--model", metavar="CARD", help="encoder card name, model directory or path (default: "
                       "imagebind_huge; `bindkit models` lists them)")
        p.add_argument("--weights", metavar="PATH", help="checkpoint (.pth, .safetensors) or converted directory "
                       "(default: the card's weights in weights/ or the cache, downloaded if absent)")
        p.add_argument("--device", default="cpu", metavar="DEV", help="torch device (default cpu)")
    add_quantize_arg(p)
    add_download_arg(p)


#: The model a command uses when given none (and no index records one), and the one bindkit ships.
DEFAULT_MODEL = "imagebind_huge"
SHIPPED_MODEL = "bindkit_toy"


def add_download_arg(p: "argparse.ArgumentParser | argparse._ArgumentGroup") -> None:
    """``--download``: consent in advance to downloading the model's weights when they are not on this machine."""
    p.add_argument("--download", action="store_true",
                   help="download the model's weights without asking if they are not on this machine (imagebind_huge: "
                   "about 4.5 GiB, CC BY-NC 4.0, non-commercial). Without it bindkit asks on a terminal and refuses "
                   "otherwise; `bindkit fetch MODEL` downloads them ahead")


class DownloadConsent:
    """The command line's download guard (:func:`bindkit.resources.download_guard`): before a download the command
    was not asked for by name, show the size, source and licence, then go on with ``--download``, ask y/N when
    stdin is a terminal, and refuse (WeightsNotFoundError naming ``bindkit fetch``) otherwise."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.allowed = bool(getattr(args, "download", False))
        self.has_flag = hasattr(args, "download")

    def __call__(self, card: Any) -> None:
        from ..errors import WeightsNotFoundError
        from ..weights.fetch import download_size, license_notice

        what = (f"The weights of {card.name} are not on this machine: they are a download of {download_size(card)} "
                f"from {card.weights.get('url')} into {_cache()}. {license_notice(card)}")
        if self.allowed:
            print(what, file=sys.stderr)
            return
        alternatives = f"`bindkit fetch {card.name}`" + (" or pass --download" if self.has_flag else "")
        if sys.stdin is not None and sys.stdin.isatty():
            print(what, file=sys.stderr)
            print("Download them now? [y/N] ", end="", file=sys.stderr, flush=True)
            answer = sys.stdin.readline().strip().lower()
            if answer in ("y", "yes"):
                return
            raise WeightsNotFoundError(f"not downloading the {card.name} weights; {alternatives} when you want them")
        raise WeightsNotFoundError(f"{what} Not downloading without a terminal to ask on: run {alternatives}.")


def _cache() -> Path:
    from ..resources import cache_dir

    return cache_dir()


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
    card = model or recorded.get("card") or DEFAULT_MODEL
    if card == DEFAULT_MODEL and not model and weights is None and not recorded.get("card"):
        from ..weights.fetch import locate_weights

        if locate_weights(card) is None:
            print(f"No --model given, so bindkit uses {DEFAULT_MODEL}, whose weights are not on this machine. "
                  f"`--model {SHIPPED_MODEL}` runs now with the small model bindkit ships (it knows only bindkit's "
                  "synthetic world, not real photos).", file=sys.stderr)
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
