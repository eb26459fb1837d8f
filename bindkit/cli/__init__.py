"""``bindkit`` command line. Each subcommand lives in its own module exposing ``add_parser(subparsers)``;
the parser sets ``func`` which receives the parsed namespace and returns an exit code."""

from __future__ import annotations

import argparse
import importlib
import sys

# module name -> subcommands it registers. Import is lazy so `bindkit --help` stays fast.
_COMMAND_MODULES = ("demo", "models", "convert", "fetch", "embed", "index", "search", "serve", "train", "distill", "eval",
                    "datasets", "bench", "verify")


def version() -> str:
    """The installed distribution's version (importlib.metadata), else ``bindkit.__version__`` (a plain clone)."""
    from importlib import metadata

    try:
        return metadata.version("bindkit")
    except metadata.PackageNotFoundError:
        from .. import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bindkit",
        description="Embed images, video, text, audio, depth, thermal and IMU data into one space "
        "(ImageBind-compatible), and search across them.",
    )
    parser.add_argument("--version", action="version", version=f"bindkit {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Every subcommand module exists and imports only what every install has: optional dependencies (gradio for
    # `demo`, fastapi/uvicorn for `serve`) are imported when the command runs, which then says which extra to
    # install. So an ImportError here is a real bug (a broken install), and it is not hidden.
    for name in _COMMAND_MODULES:
        importlib.import_module(f"bindkit.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from ..errors import BindkitError
    from ..resources import download_guard
    from .common import DownloadConsent, shown

    try:
        with download_guard(DownloadConsent(args)):  # no download of weights without consent (--download, y/N)
            return int(args.func(args) or 0)
    except BindkitError as exc:
        print(f"error: {shown(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
