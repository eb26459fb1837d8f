"""``bindkit embed``: files (and folders) of any modalities -> one matrix of unit vectors (.npy or .parquet) + an
error report."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..fileio import atomic_path, atomic_write_bytes
from .common import DEFAULT_MODEL, add_alias, add_model_args, add_result_args, load_model_for, positive_int, shown

if TYPE_CHECKING:  # numpy is imported where it is used: `bindkit --help` must not pay for it
    import numpy as np

_OUT_SUFFIXES = (".npy", ".parquet")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "embed",
        help="embed files or folders (images, video, audio, depth, thermal, IMU CSVs, .txt) into unit vectors",
        description="Embed FILES with an encoder model and write one row per file, in the order given:\n"
        "  OUT.npy      float32 N x D, with OUT.paths.txt (one path per line, the file name's exact bytes), or\n"
        "  OUT.parquet  columns path, modality, ok, embedding, path_bytes.\n"
        "A file name that is not valid UTF-8 is written as its bytes in OUT.paths.txt and path_bytes; the\n"
        "parquet path column (text) shows its undecodable bytes as \\xNN escapes.\n"
        "The modality of each file comes from -m, else from its extension; parent folders named depth/,\n"
        "thermal/ (infrared/, ir/) or imu/ decide for ordinary image, CSV and .npy files. .txt files are\n"
        "embedded as text (their contents). A file that cannot be loaded gets an all-NaN row and an entry\n"
        "in the error report (--errors), and the exit status is 1.\n"
        "A FOLDER stands for its files, walked as `bindkit index build` walks one (recursively, sorted,\n"
        "hidden names left out); its files of no known kind are left out (listed unless -q), unless -m\n"
        "gives one kind to all of them.",
        epilog="examples:\n  bindkit embed photos/*.jpg --out photos.npy --weights weights/imagebind_huge\n"
        "  bindkit embed photos/ --model bindkit_toy --out photos.parquet   # every image under photos/\n"
        "  bindkit embed rec/*.csv -m imu -o imu.fit=crop_pad --out imu.parquet --errors errors.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="input files or folders")
    p.add_argument("-m", "--modality", metavar="KIND",
                   help="modality of every FILE: image, video, text, audio, depth, thermal, imu "
                   "(default: guessed per file)")
    add_model_args(p, for_index=False)
    p.add_argument("--out", required=True, metavar="OUT", help="output file: .npy or .parquet")
    p.add_argument("--errors", metavar="REPORT.json", help="write the list of files that failed, with reasons")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N",
                   help="items per forward pass (default 32)")
    workers = p.add_argument("--workers", dest="num_workers", type=int, default=None, metavar="N",
                             help="loader threads (default: the CPU count, at most 8; 0 or 1: load in the main "
                             "thread)")
    add_alias(p, "--num-workers", of=workers)
    p.add_argument("-o", "--option", action="append", default=[], metavar="KIND.KEY=VALUE",
                   help="loader option, e.g. imu.fit=crop_pad, audio.reference_inplace_mean=false, "
                   "depth.sunrgbd=true (JSON values); repeatable")
    p.add_argument("--strict", action="store_true", help="stop at the first file that cannot be loaded")
    add_result_args(p, quiet="no progress bar, summary or notes (failures are in --errors and the exit status)",
                    json="print the summary as JSON: out, model, dim, files, embedded, errors, ignored")
    p.set_defaults(func=run)


def parse_options(specs: list[str]) -> dict[str, dict[str, Any]]:
    """``["imu.fit=crop_pad", "depth.sunrgbd=true"]`` -> ``{"imu": {"fit": "crop_pad"}, "depth": {...}}``."""
    from ..modality import input_kind

    options: dict[str, dict[str, Any]] = {}
    for spec in specs:
        key, sep, raw = spec.partition("=")
        kind, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise SystemExit(f"error: --option {spec!r}: expected KIND.KEY=VALUE, e.g. imu.fit=crop_pad")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        options.setdefault(input_kind(kind), {})[name.strip()] = value
    return options


def _plan(files: list[str], modality: str | None) -> tuple[list[str | None], list[dict[str, Any]]]:
    """The kind of each file (None when unknown) and error records for the unknown ones."""
    from ..inputs import kind_from_path
    from ..modality import input_kind

    if modality is not None:
        if not modality.strip():
            raise SystemExit("error: -m/--modality is empty; give one of image, video, text, audio, depth, "
                             "thermal, imu, or leave it out to guess each file's modality")
        kind = input_kind(modality)
        kinds: list[str | None] = [None if os.path.isdir(f) else kind for f in files]
    else:
        kinds = [None if os.path.isdir(f) else kind_from_path(f) for f in files]
    errors = [{"index": i, "path": f, "modality": None, "reason": _why_no_kind(f)}
              for i, (f, k) in enumerate(zip(files, kinds)) if k is None]
    return kinds, errors


def _expand(sources: list[str], modality: str | None, skipped: list[dict[str, str]]) -> tuple[list[str], list[str]]:
    """The files to embed, in the order given: a folder stands for the files under it (walked as ``bindkit index
    build`` walks a folder; paths kept under the folder as given, e.g. ``photos/a.jpg``) that have a known kind
    (any kind with ``modality``). Returns them and the files left out for their unknown kind. A folder holding
    no such file stays in the list as itself, so that it gets a failed row saying why."""
    from ..inputs import kind_from_path

    files: list[str] = []
    ignored: list[str] = []
    for src in sources:
        if not os.path.isdir(src):
            files.append(src)
            continue
        from ..index.build import walk_folder

        top = os.path.abspath(src)
        found = []
        for full in walk_folder(src, skipped):
            path = os.path.join(src, os.path.relpath(full, top))
            if modality is not None or kind_from_path(path) is not None:
                found.append(path)
            else:
                ignored.append(path)
        files += found or [src]
    return files, ignored


def _why_no_kind(path: str) -> str:
    if os.path.isdir(path):
        return ("is a directory holding no file of a known kind (by extension or the folder names depth/, "
                "thermal/, imu/); pass -m KIND to embed every file in it as that kind")
    if not os.path.exists(path):
        return "no such file; check the path"
    return "cannot tell the modality from the file name; pass -m KIND"


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def run(args: argparse.Namespace) -> int:
    import numpy as np

    import bindkit

    from ..inputs import resolve_params
    from ..modality import encoder_of

    skipped: list[dict[str, str]] = []
    files, ignored = _expand(list(args.files), args.modality, skipped)
    kinds, errors = _plan(files, args.modality)
    options = parse_options(args.option)
    out = Path(args.out)
    if out.suffix.lower() not in _OUT_SUFFIXES:
        raise SystemExit(f"error: --out must end in {' or '.join(_OUT_SUFFIXES)}, got {out.name!r}")
    for path in (out, Path(args.errors) if args.errors else None):
        if path is not None:
            _make_parent(path)

    groups: dict[str, list[int]] = {}
    items: dict[str, list[Any]] = {}
    for i, (f, k) in enumerate(zip(files, kinds)):
        if k is None:
            continue
        item: Any = f
        if k == "text":
            item = _read_text(f)
            if item is None:
                errors.append({"index": i, "path": f, "modality": k, "reason": "not a readable UTF-8 text file"})
                continue
        groups.setdefault(k, []).append(i)
        items.setdefault(k, []).append(item)

    card = bindkit.load_card(args.model or DEFAULT_MODEL)
    for kind, opts in options.items():  # bad options fail now, before any weights are read
        try:
            resolve_params(kind, card, opts)
        except ValueError as exc:
            raise SystemExit(f"error: --option for {kind}: {exc}") from None
    matrix = np.full((len(files), card.out_embed_dim), np.nan, dtype=np.float32)
    if items:
        model = load_model_for(None, args.model, args.weights, args.device,
                               modalities=sorted({encoder_of(k) for k in items}), quantize=args.quantize)
        result = model.embed(**items, batch_size=args.batch_size, num_workers=args.num_workers,
                             show_progress_bar=None if not args.quiet else False, strict=args.strict,
                             options=options)
        for kind, rows in groups.items():
            matrix[rows] = result[kind]
        for err in result.errors:
            i = groups[err.kind][err.index]
            errors.append({"index": i, "path": files[i], "modality": err.kind, "reason": err.reason})
    errors.sort(key=lambda e: e["index"])
    failed = {e["index"] for e in errors}
    modalities = [k or "" for k in kinds]
    ok = [i not in failed for i in range(len(files))]
    _write(out, matrix, files, modalities, ok, model_name=card.name)
    if args.errors:
        report = {"model": card.name, "files": len(files), "embedded": len(files) - len(failed), "errors": errors}
        _save(Path(args.errors), json.dumps(report, indent=2).encode())
    if args.json:
        print(json.dumps({"out": str(out), "paths": str(paths_file(out)) if out.suffix.lower() == ".npy" else None,
                          "model": card.name, "dim": card.out_embed_dim, "files": len(files),
                          "embedded": len(files) - len(failed), "errors": errors, "ignored": ignored,
                          "skipped": skipped}, indent=2))
    elif not args.quiet:
        n_ok = len(files) - len(failed)
        print(f"embedded {n_ok} of {len(files)} file(s) (dim {card.out_embed_dim}) -> {shown(out)}")
        if ignored:
            print(f"  left out {len(ignored)} file(s) of unknown kind in the folders given (pass -m KIND to embed "
                  f"them), e.g. {shown(ignored[0])}", file=sys.stderr)
        for s in skipped:
            print(f"  skipped folder: {shown(s['item'])}: {s['reason']}", file=sys.stderr)
        for e in errors[:10]:
            print(f"  failed: {shown(e['path'])}: {shown(e['reason'])}", file=sys.stderr)
        if len(errors) > 10:
            print(f"  ... and {len(errors) - 10} more" + (f" (see {args.errors})" if args.errors else ""),
                  file=sys.stderr)
    return 1 if errors else 0


def paths_file(out: Path) -> Path:
    """The list of paths written beside an .npy output (``emb.npy`` -> ``emb.paths.txt``): one per line, each the
    file name's bytes (``os.fsencode``), so a name that is not valid UTF-8 round-trips: read it with
    ``open(p, encoding="utf-8", errors="surrogateescape")`` or ``os.fsdecode`` of each line of the bytes."""
    return out.with_suffix(".paths.txt")


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SystemExit(f"error: cannot create the folder {path.parent} for {path.name} "
                         f"({exc.strerror or exc})") from None


def _save(path: Path, data: bytes) -> None:
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise SystemExit(f"error: cannot write {path} ({exc.strerror or exc})") from None


def _write(out: Path, matrix: np.ndarray, files: list[str], modalities: list[str], ok: list[bool],
           model_name: str) -> None:
    import numpy as np

    if out.suffix.lower() == ".npy":
        import io

        buf = io.BytesIO()
        np.save(buf, matrix)
        _save(out, buf.getvalue())
        _save(paths_file(out), b"".join(os.fsencode(f) + b"\n" for f in files))
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = matrix.shape[1]
    table = pa.table({
        "path": pa.array([shown(f) for f in files], pa.string()),
        "modality": pa.array(modalities, pa.string()),
        "ok": pa.array(ok, pa.bool_()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), dim),
        "path_bytes": pa.array([os.fsencode(f) for f in files], pa.binary()),
    }).replace_schema_metadata({"bindkit.model": model_name, "bindkit.dim": str(dim)})
    try:
        with atomic_path(out) as tmp:
            pq.write_table(table, str(tmp))
    except OSError as exc:
        raise SystemExit(f"error: cannot write {out} ({exc.strerror or exc})") from None
