"""``bindkit verify``: re-hash a model's weight files and compare them with the sha256 its manifest records."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import add_result_args, positional_or_option


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "verify",
        help="re-hash a model's weight files and check them against the sha256 its manifest records",
        description="Read every file MODEL's manifest.json lists and compare its sha256 with the one recorded "
        "when the model was written (bindkit train, convert or fetch --convert). Loading a model already checks "
        "the files it reads, remembering each verdict per file identity (size, mtime, inode) in "
        "~/.cache/bindkit/verified.json so that a large model is hashed once; verify re-reads every byte "
        "whatever the cache says (e.g. after copying a model, or on a disk you suspect). A LoRA model "
        "(bindkit train --lora) is checked with its base model. Exit status 0 when every file matches, 1 "
        "when one is damaged or missing (each is named, with what to do).",
        epilog="examples:\n  bindkit verify weights/bindkit_toy\n  bindkit verify imagebind_huge --json   "
        "# the card's local weights",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_arg", nargs="?", metavar="MODEL",
                   help="a model folder (manifest.json + weights), or a card name whose local weights to check")
    p.add_argument("--model", metavar="MODEL", help="the same as the positional MODEL (give one of the two)")
    add_result_args(p, quiet="print only the problems (nothing when every file matches)",
                    json="print {\"ok\": bool, \"files\": [{name, path, status, expected, actual, bytes}]}")
    p.set_defaults(func=run)


def model_folders(spec: str) -> list[Path]:
    """The folders to check for MODEL: the folder itself (and a LoRA model's base folder), or a card's local
    converted weights. CheckpointError when there is nothing with a manifest to check."""
    from ..adapt.lora_model import read_lora_manifest
    from ..cards import load_card
    from ..errors import CheckpointError, WeightsNotFoundError
    from ..weights import locate_weights
    from ..weights.read import MANIFEST

    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / MANIFEST).is_file():
            raise CheckpointError(f"{path} has no {MANIFEST}, so there is nothing to verify against; a model folder "
                                  "written by bindkit train, convert or fetch --convert has one")
        folders = [path]
        lora = read_lora_manifest(path)
        if lora is not None:
            base = lora["base"]
            for where in ([path / base["relative"]] if base.get("relative") else []) + \
                         ([Path(base["path"])] if base.get("path") else []):
                if (where / MANIFEST).is_file():
                    folders.append(where.resolve())
                    break
        return folders
    card = load_card(spec)
    found = locate_weights(card)
    if found is None:
        raise WeightsNotFoundError(f"no local weights for card {card.name!r} to verify; fetch them with "
                                   f"`bindkit fetch {card.name} --convert`, or pass the model folder")
    if not (Path(found) / MANIFEST).is_file():
        raise CheckpointError(f"the weights of {card.name!r} are the single file {found}, not a converted folder "
                              f"with a manifest; `bindkit fetch {card.name} --force` downloads and checks them "
                              "again, and `bindkit convert` writes a folder that verify can check")
    return [Path(found)]


def run(args: argparse.Namespace) -> int:
    from ..weights.verify import check_model_dir, mismatch_message

    spec = positional_or_option(args, command="verify", dest="model", positional="model_arg", flag="--model",
                                metavar="MODEL")
    checks = [c for folder in model_folders(spec) for c in check_model_dir(folder)]
    ok = all(c.status in ("ok", "unrecorded") for c in checks)
    if args.json:
        print(json.dumps({"ok": ok, "files": [c.to_dict() for c in checks]}, indent=2))
    else:
        for c in checks:
            if c.status == "ok" and not args.quiet:
                print(f"ok        {c.path}  ({c.bytes / 1e6:.1f} MB)")
            elif c.status == "unrecorded" and not args.quiet:
                print(f"unchecked {c.path}  (the manifest records no sha256 for it)")
    for c in checks:
        manifest = c.path.parent / "manifest.json"
        if c.status == "mismatch":
            print("error: " + mismatch_message(c.path, manifest, c.expected or "", c.actual), file=sys.stderr)
        elif c.status == "missing":
            print(f"error: {c.path}, listed in {manifest}, is missing; copy the model folder again or write it "
                  "again (bindkit convert/train)", file=sys.stderr)
    if ok and not args.quiet and not args.json:
        print(f"{len(checks)} file(s) match their manifest")
    return 0 if ok else 1
