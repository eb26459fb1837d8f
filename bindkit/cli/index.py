"""``bindkit index build|merge|stats|remove|compact|optimize``: offline index builds and maintenance."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import IndexStoreError
from .common import (add_alias, add_model_args, add_result_args, fraction, load_model_for, parse_bytes,
                     positive_int, shown)


def _shard(text: str) -> tuple[int, int]:
    from ..index.build import parse_shard

    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _optimize_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index-key", metavar="KEY", help="force a FAISS index type (factory string, e.g. Flat, HNSW32, "
                   "IVF4096,PQ64); default: chosen from the collection size and --memory-budget")
    p.add_argument("--memory-budget", type=parse_bytes, metavar="SIZE", help="RAM the index may use, e.g. 8G")
    p.add_argument("--recall-target", type=fraction, default=0.95, metavar="R",
                   help="recall@10 the search parameters are tuned to (default 0.95)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    top = subparsers.add_parser("index", help="build, merge and maintain search indexes",
                                description="Build and maintain bindkit indexes (a folder: SQLite metadata + one "
                                "FAISS index per modality + manifest.json).")
    sub = top.add_subparsers(dest="index_command", metavar="ACTION")
    top.set_defaults(func=lambda args: (top.print_help(), 2)[1])

    b = sub.add_parser("build", help="embed folders/manifests into an index (resumable, incremental)",
                       description="Embed every file of SOURCE folders (recursively; modality by extension or by "
                       "folder name depth/, thermal/, imu/), manifests (.csv/.jsonl/.parquet with a 'path' or "
                       "'text' column, optional 'modality', other columns become metadata) or single files. "
                       "Progress is committed every batch: rerun the same command to resume a killed build, or "
                       "to pick up new/changed files (by content hash). Bad files (and bad .jsonl lines) are "
                       "skipped and listed in OUT/build_report.json; symlinked folders are followed once. Exit "
                       "status 1 when nothing was indexed (every item failed, or no file of a known kind).",
                       epilog="examples:\n  bindkit index build photos/ sounds.csv --out my_index\n"
                       "  bindkit index build data/ --out idx --shard 0/4   # writes idx/part-0-of-4\n"
                       "  torchrun --nproc_per_node=4 -m bindkit index build data/ --out idx && "
                       "bindkit index merge idx --out final",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("sources", nargs="+", metavar="SOURCE", help="folder, manifest or file")
    b.add_argument("--out", required=True, metavar="DIR", help="index folder (created, or updated when it exists)")
    add_model_args(b)
    b.add_argument("--modality", metavar="KIND", help="treat every file as this kind (default: infer)")
    b.add_argument("--batch-size", type=positive_int, default=32, metavar="N",
                   help="items per batch and commit (default 32)")
    b.add_argument("--workers", type=positive_int, metavar="N", help="loader threads (default: CPU count)")
    b.add_argument("--shard", type=_shard, metavar="I/N", help="embed only shard I of N into OUT/part-I-of-N "
                   "(under torchrun: RANK/WORLD_SIZE)")
    b.add_argument("--sync", action="store_true", help="also remove items whose source files are gone")
    b.add_argument("--checksum", action="store_true", help="re-read every file and compare its content hash, "
                   "instead of trusting an unchanged size and modification time (like rsync --checksum): catches "
                   "a file rewritten with the same size and its mtime put back; slower, reads every byte")
    b.add_argument("--no-optimize", action="store_true", help="keep exact search; skip choosing/tuning an index type")
    _optimize_args(b)
    add_result_args(b, quiet="no progress bar (the summary still prints)", json="print the build report as JSON")
    b.set_defaults(func=run_build)

    m = sub.add_parser("merge", help="join partial indexes (from --shard builds) into one",
                       description="Merge partial indexes into a new index OUT. Each PART is an index folder or a "
                       "folder holding part-I-of-N indexes (all N must be present).")
    m.add_argument("parts", nargs="+", metavar="PART")
    m.add_argument("--out", required=True, metavar="DIR", help="new index folder")
    m.add_argument("--no-optimize", action="store_true", help="keep exact search")
    _optimize_args(m)
    add_result_args(m, quiet="print nothing", json="print the merged index's statistics as JSON")
    m.set_defaults(func=run_merge)

    s = sub.add_parser("stats", help="counts, index types, recall, sizes", description="Show an index's statistics.")
    s.add_argument("index", metavar="DIR")
    add_result_args(s, quiet="no hint when the index is empty", json="print JSON")
    s.set_defaults(func=run_stats)

    r = sub.add_parser("remove", help="remove items by id, path or metadata filter",
                       description="Remove items. Filters: --where key=value (also !=, >, >=, <, <=), repeatable.")
    r.add_argument("index", metavar="DIR")
    r.add_argument("--id", type=int, action="append", dest="ids", metavar="ID", help="item id (repeatable)")
    r.add_argument("--uri", action="append", metavar="PATH", help="source path of the item (repeatable)")
    r.add_argument("--where", action="append", metavar="EXPR", help="metadata filter, e.g. split=test")
    r.add_argument("--dry-run", action="store_true", help="list the items that would be removed; remove nothing")
    add_result_args(r, quiet="no count line (--dry-run still lists the items)",
                    json="print {\"removed\": N} (with --dry-run: {\"would_remove\": [ids]}) as JSON")
    r.set_defaults(func=run_remove)

    c = sub.add_parser("compact", help="rebuild FAISS files from the store, reclaim space",
                       description="Rebuild every FAISS index from the SQLite store (dropping removed vectors), "
                       "prune the change log and VACUUM. Ids do not change.")
    c.add_argument("index", metavar="DIR")
    add_result_args(c, quiet="print nothing", json="print the index's statistics (and disk_bytes_before) as JSON")
    c.set_defaults(func=run_compact)

    o = sub.add_parser("optimize", help="choose and tune the FAISS index type",
                       description="Pick an index type for each modality's size and the memory budget (or "
                       "--index-key), train it and tune search parameters to --recall-target.")
    o.add_argument("index", metavar="DIR")
    mods = o.add_argument("--modalities", metavar="LIST", help="only these modalities, comma-separated (default: "
                          "all)")
    add_alias(o, "--modality", of=mods)
    _optimize_args(o)
    add_result_args(o, quiet="no statistics table", json="print the index's statistics as JSON")
    o.set_defaults(func=run_optimize)


def run_build(args: argparse.Namespace) -> int:
    from ..index.build import build, check_sources, nothing_indexed, part_dir, shard_from_env

    try:
        shard = args.shard or shard_from_env()
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    check_sources(args.sources, args.modality)  # a bad --modality or manifest fails before the model loads
    target = part_dir(args.out, shard) if shard else Path(args.out)
    model = load_model_for(target, args.model, args.weights, args.device, quantize=args.quantize)
    report = build(args.sources, args.out, model, modality=args.modality, batch_size=args.batch_size,
                   workers=args.workers, shard=shard, sync=args.sync, checksum=args.checksum,
                   optimize=not args.no_optimize,
                   index_key=args.index_key, memory_budget_bytes=args.memory_budget,
                   recall_target=args.recall_target, progress=None if not args.quiet else False,
                   weights=args.weights)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_build(report)
    if nothing_indexed(report):
        c = report["counts"]
        if c["found"] == 0:
            why = "the sources hold no file of a known kind" + (
                f" ({c['ignored']} file(s) of unknown kind ignored; pass --modality KIND)" if c["ignored"] else "")
        else:
            why = f"all {c['selected']} item(s) failed"
        if c["failed"] or c["skipped"]:
            why += f"; see {report['index']}/build_report.json"
        print(f"error: nothing was indexed: {why}", file=sys.stderr)
        return 1
    return 0


def _print_build(report: dict[str, Any]) -> None:
    """The summary line (counts) and the first failures and skipped folders of a build report."""
    c = report["counts"]
    per = ", ".join(f"{k} {v}" for k, v in sorted(report["per_modality"].items()))
    print(f"{shown(report['index'])}: {report['items_in_index']} items{f' ({per})' if per else ''}; this run: "
          f"{c['embedded']} indexed ({c['new']} new, {c['changed']} changed), {c['unchanged']} unchanged, "
          f"{c['failed']} failed, {c['skipped']} skipped, {c['removed']} removed, {c['ignored']} ignored "
          f"(unknown kind); {report['elapsed_s']:.1f} s")
    for label, records in (("failed", report["failures"]), ("skipped", report["skipped"])):
        for f in records[:20]:
            kind = f" ({f['modality']})" if f.get("modality") else ""
            print(f"  {label}: {shown(f['item'])}{kind}: {shown(f['reason'])}")
        if len(records) > 20:
            print(f"  ... {len(records) - 20} more {label} in {shown(report['index'])}/build_report.json")


def run_merge(args: argparse.Namespace) -> int:
    from ..index.merge import merge

    stats = merge(args.parts, args.out, optimize=not args.no_optimize, index_key=args.index_key,
                  memory_budget_bytes=args.memory_budget, recall_target=args.recall_target)
    if args.json:
        print(json.dumps(stats, indent=2))
    elif not args.quiet:
        print(f"{args.out}: {stats['count']} items merged from {len(args.parts)} argument(s)")
    return 0


def _print_stats(stats: dict[str, Any], quiet: bool = False) -> None:
    model = stats["model"] or {}
    print(f"index    {stats['path']}")
    print(f"model    {model.get('card')} (dim {stats['dim']})")
    print(f"items    {stats['count']}  (embedded in total: {stats['embedded_total']}, failures on record: "
          f"{stats['failures']})")
    print(f"on disk  {stats['disk_bytes'] / 1e6:.2f} MB")
    if not stats["count"] and not quiet:
        print("the index is empty: add items with `bindkit index build SOURCES --out DIR` or Index.add")
    print(f"{'modality':<9} {'count':>9}  {'index':<22} {'recall@10':>9}  params")
    for kind, info in stats["modalities"].items():
        recall = info.get("recall@10")
        print(f"{kind:<9} {info['count']:>9}  {info.get('key', '?'):<22} "
              f"{'-' if recall is None else f'{recall:.3f}':>9}  {json.dumps(info.get('params', {}))}")


def run_stats(args: argparse.Namespace) -> int:
    from ..index import Index

    with Index.open(args.index) as index:
        stats = index.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        _print_stats(stats, args.quiet)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    import numpy as np

    from ..index import Index, parse_where
    from ..index.api import writer

    where = parse_where(args.where or [])
    if not (args.ids or args.uri or where):
        raise IndexStoreError("nothing to remove: give --id, --uri or --where")
    with Index.open(args.index) as index:
        ids = list(args.ids or [])
        if args.uri:
            keys = writer(index).store.lookup([os.path.abspath(u) for u in args.uri])
            ids += [v[0] for v in keys.values()]
            if not ids and not where:
                _print_removed(args, 0, " (no such uri)")
                return 0
        chosen = np.asarray(ids, dtype=np.int64) if (args.ids or args.uri) else None
        if args.dry_run:
            selected = index.select(chosen, where=where)
            if args.json:
                print(json.dumps({"would_remove": [int(i) for i in selected]}))
            else:
                _print_would_remove(index, selected, args.quiet)
            return 0
        n = index.remove(chosen, where=where)
    _print_removed(args, n)
    return 0


def _print_removed(args: argparse.Namespace, n: int, why: str = "") -> None:
    if args.json:
        print(json.dumps({"removed": n}))
    elif not args.quiet:
        print(f"removed {n} items{why}")


def _print_would_remove(index: Any, ids: list[int], quiet: bool = False) -> None:
    """``--dry-run``: one line per item (id, modality, uri or text, metadata), then the count (unless ``quiet``)."""
    for hit in index.get(ids):
        what = hit.uri if hit.uri is not None else repr(hit.text)
        meta = f"  {json.dumps(hit.metadata, ensure_ascii=False)}" if hit.metadata else ""
        print(f"{hit.id}  {hit.modality:<8} {what}{meta}")
    if not quiet:
        print(f"would remove {len(ids)} items (dry run: nothing was removed)")


def run_compact(args: argparse.Namespace) -> int:
    from ..index import Index

    with Index.open(args.index) as index:
        before = index.stats()["disk_bytes"]
        stats = index.compact()
    if args.json:
        print(json.dumps({**stats, "disk_bytes_before": before}, indent=2))
    elif not args.quiet:
        print(f"{args.index}: {stats['count']} items, {before / 1e6:.2f} MB -> {stats['disk_bytes'] / 1e6:.2f} MB")
    return 0


def run_optimize(args: argparse.Namespace) -> int:
    from ..index import Index

    with Index.open(args.index) as index:
        index.optimize(args.modalities, memory_budget_bytes=args.memory_budget, index_key=args.index_key,
                       recall_target=args.recall_target)
        stats = index.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
    elif not args.quiet:
        _print_stats(stats)
    return 0
