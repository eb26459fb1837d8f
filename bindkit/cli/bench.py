"""``bindkit bench``: what this machine does — matmul peak, items/s per encoder in fp32, int8 (and bf16), the share
of the peak each encoder reaches — and ``bindkit bench --fidelity FILES...``: int8 (or bf16) vs fp32 cosine on your
own files."""

from __future__ import annotations

import argparse
import copy
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, TYPE_CHECKING

from .common import add_result_args, positive_int, shown

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel

_ENGINES = ("fp32", "int8", "bf16")
_EPILOG = """\
examples:
  bindkit bench --random-weights                      # imagebind_huge shapes, no weights needed
  bindkit bench --modalities text,image --batch-sizes 1,8,32 --seconds 3
  bindkit bench --model imagebind_tiny --random-weights --json
  bindkit bench --fidelity photos/*.jpg clips/*.wav --text "a dog" --text "rain on a roof"
  bindkit bench --engines fp32,int8,bf16 --modalities image   # bf16 autocast too (AVX512-BF16/AMX CPUs)

reading the table:
  items/s     items embedded per second, best call (the engines take turns; audio: one file = the
              card's clips, 3; text: 12-token captions)
  GFLOP/item  FLOPs of one item (2 per multiply-add; matmuls, convolutions, attention), counted on the fp32 model
  % peak      achieved GFLOPS / this run's measured matmul peak for that engine (fp32 torch.matmul; int8
              torch._int_mm; bf16 torch.matmul on bfloat16): near 100 % leaves little to gain but fewer FLOPs
              (trimming) or cheaper ones (int8, bf16)
  best batch  the batch size with the most items/s, per encoder and engine: use it as --batch-size

Speed does not depend on weight values, so --random-weights measures any card without downloading it; fidelity
does depend on them: run --fidelity with the weights you use. A shared or busy machine gives noisy figures:
compare ratios within one run."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench", help="measure items/s per modality (fp32, int8, bf16), the matmul peak, and int8/bf16 fidelity",
        description="Measure this machine: its fp32 and int8 (and bf16) matmul peak, then items/s of every "
        "encoder of the model per engine at a few batch sizes, with the GFLOPS achieved as a share of the peak. "
        "With --fidelity FILES, embed your files in fp32 and int8 (or the --engines given) and report their "
        "cosine per modality instead. Runs on the CPU (for GPUs see benchmarks/bench_gpu.py).",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="imagebind_huge", metavar="CARD",
                   help="encoder card name or path (default: imagebind_huge)")
    p.add_argument("--weights", metavar="PATH", help="checkpoint or converted weights folder (default: the card's "
                   "local weights; nothing is downloaded)")
    p.add_argument("--random-weights", action="store_true",
                   help="build the card with random weights (speed only; no weights needed)")
    p.add_argument("--modalities", metavar="LIST", help="encoders to measure, comma-separated, e.g. text,image "
                   "(default: all the card has)")
    p.add_argument("--batch-sizes", default="1,8", metavar="LIST", help="batch sizes to time (default 1,8)")
    p.add_argument("--engines", default="fp32,int8", metavar="LIST", help="any of fp32, int8, bf16 (bfloat16 "
                   "autocast: fast on CPUs with AVX512-BF16/AMX), comma-separated (default fp32,int8)")
    p.add_argument("--seconds", type=float, default=1.0, metavar="S",
                   help="time each batch size for at least S seconds per engine after a warm-up call; the "
                   "engines take turns and the best call counts (default 1)")
    p.add_argument("--threads", type=positive_int, metavar="N", help="torch CPU threads (default: torch's)")
    p.add_argument("--fidelity", nargs="+", metavar="FILE", type=Path,
                   help="instead of timing: embed these files (modality from extension or folder) in fp32 and "
                   "each other engine of --engines (int8 by default) and print the cosine to fp32 per modality "
                   "(min, mean, worst file)")
    p.add_argument("--text", action="append", metavar="TEXT", help="with --fidelity: a text to compare too "
                   "(repeatable)")
    add_result_args(p, quiet="only the table (no header lines: model, torch, threads, matmul peak) and no notes on "
                    "skipped files", json="print JSON")
    p.set_defaults(func=run)


def _list(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise SystemExit(f"error: --{what} is empty")
    return items


def _load(args: argparse.Namespace, modalities: list[str]) -> Any:
    import bindkit

    if args.random_weights:
        import torch

        torch.manual_seed(0)
        return bindkit.build_model(args.model, modalities=modalities)
    from .common import load_model_for

    return load_model_for(None, args.model, args.weights, "cpu", modalities=modalities, download=False)


def run(args: argparse.Namespace) -> int:
    import torch

    import bindkit
    from ..modality import canonical_modalities

    if args.threads:
        torch.set_num_threads(args.threads)
    engines = _list(args.engines, "engines")
    bad = [e for e in engines if e not in _ENGINES]
    if bad:
        raise SystemExit(f"error: unknown engine {bad[0]!r}; use fp32, int8 and/or bf16 (e.g. fp32,int8,bf16)")
    card = bindkit.load_card(args.model)
    if args.fidelity or args.text:
        return _fidelity(args, card)
    mods = canonical_modalities(_list(args.modalities, "modalities")) if args.modalities else list(card.modalities)
    sizes = [positive_int(s) for s in _list(args.batch_sizes, "batch-sizes")]
    return _throughput(args, card, mods, sizes, engines)


def _throughput(args: argparse.Namespace, card: Any, mods: list[str], sizes: list[int], engines: list[str]) -> int:
    import torch

    from .. import perf
    from ..models.quantize import int8_engine

    if "int8" in engines:
        int8_engine()  # DeviceError now, before minutes of fp32 timing, when int8 is unsupported
    seconds = max(args.seconds, 0.0)
    peaks = {"fp32": perf.matmul_peak_fp32(seconds=seconds)}
    how = "torch.matmul 2048^3"
    if "int8" in engines:
        peaks["int8"], int8_how = perf.matmul_peak_int8(seconds=seconds)
        how += f"; int8: {int8_how} 2048^3, engine {torch.backends.quantized.engine}"
    if "bf16" in engines:
        peaks["bf16"] = perf.matmul_peak_bf16(seconds=seconds)
        how += "; bf16: torch.matmul on bfloat16 1024^3"
    if not args.json and not args.quiet:
        print(f"bindkit bench: {card.name}{' (random weights)' if args.random_weights else ''}, torch "
              f"{torch.__version__}, {torch.get_num_threads()} threads")
        print("matmul peak: " + ", ".join(f"{e} {g:,.1f} G{'OPS' if e == 'int8' else 'FLOPS'}"
                                          for e, g in peaks.items()) + f" ({how})")
    if not args.json:
        print(f"{'encoder':8} {'engine':6} {'batch':>5} {'items/s':>10} {'GFLOP/item':>10} {'GFLOPS':>8} "
              f"{'% peak':>7}", flush=True)
    rows: list[Any] = []
    for enc in mods:
        model = _load(args, [enc])
        flops = perf.flops_per_item(model, enc, sizes)
        models = {}
        if "fp32" in engines:
            models["fp32"] = model
        # quantised copies: the engines take turns (fair ratios on a busy machine)
        models.update(_variants(model, [e for e in engines if e != "fp32"], keep="fp32" in engines))
        for r in perf.measure_encoder(models, enc, sizes, seconds, flops):
            rows.append(r)
            if not args.json:
                print(f"{enc:8} {r.engine:6} {r.batch:>5} {r.items_per_s:>10.2f} {r.flops_per_item / 1e9:>10.3f} "
                      f"{r.gflops:>8.1f} {100 * r.gflops / peaks[r.engine]:>6.1f}%", flush=True)
        del model, models
    best = {}
    for r in rows:
        key = (r.encoder, r.engine)
        if key not in best or r.items_per_s > best[key].items_per_s:
            best[key] = r
    if args.json:
        print(json.dumps({"card": card.name, "random_weights": bool(args.random_weights),
                          "threads": torch.get_num_threads(), "peak_gflops": peaks,
                          "results": [dict(encoder=r.encoder, engine=r.engine, batch=r.batch,
                                           items_per_s=r.items_per_s, gflop_per_item=r.flops_per_item / 1e9,
                                           gflops=r.gflops, peak_share=r.gflops / peaks[r.engine]) for r in rows],
                          "best_batch": {f"{e}/{g}": r.batch for (e, g), r in best.items()}}, indent=2))
        return 0
    print("best batch:", "; ".join(
        f"{enc} " + ", ".join(f"{g} {best[enc, g].batch} ({best[enc, g].items_per_s:.2f}/s)" for g in engines
                              if (enc, g) in best)
        + "".join(f", {g} {best[enc, g].items_per_s / best[enc, 'fp32'].items_per_s:.2f}x fp32"
                  for g in engines if g != "fp32" and (enc, g) in best and (enc, "fp32") in best)
        for enc in mods))
    return 0


def _variants(model: "BindModel", engines: list[str], *, keep: bool) -> Iterator[tuple[str, Any]]:
    """(engine, ``model`` quantised for it) for each of ``engines``, made as they are asked for: deep copies, but
    the last one quantises ``model`` itself unless ``keep``. A bf16 engine without hardware support is measured
    here, so its warning is not shown."""
    from ..models.quantize import quantize_model

    for i, engine in enumerate(engines):
        source = model if not keep and i == len(engines) - 1 else copy.deepcopy(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            variant = quantize_model(source, engine)
        yield engine, variant


def _fidelity(args: argparse.Namespace, card: Any) -> int:
    from .. import perf
    from ..inputs import kind_from_path
    from ..modality import encoder_of

    items: dict[str, list[str]] = {}
    for f in args.fidelity or []:
        kind = kind_from_path(f, folder_hints=True)
        if kind is None:
            if not args.quiet:
                print(f"skipping {shown(f)}: cannot tell its modality from the extension or folder", file=sys.stderr)
            continue
        items.setdefault(kind, []).append(str(f))
    if args.text:
        items["text"] = list(args.text)
    if not items:
        raise SystemExit("error: --fidelity found no file of a known modality (and no --text)")
    others = [e for e in _list(args.engines, "engines") if e != "fp32"]
    if not others:
        raise SystemExit("error: --fidelity compares fp32 with int8 and/or bf16: give --engines fp32,int8 (the "
                         "default), fp32,bf16 or fp32,int8,bf16")
    model = _load(args, sorted({encoder_of(k) for k in items}))
    fp32 = model.embed(**items, show_progress_bar=False, strict=False)
    reports: dict[str, dict[str, Any]] = {}
    for engine, variant in _variants(model, others, keep=False):  # one at a time: fp32 is embedded already
        got = variant.embed(**items, show_progress_bar=False, strict=False)
        report = reports[engine] = {}
        for kind, names in items.items():
            lo, mean, worst = perf.cosine_stats(fp32[kind], got[kind])
            failed = sorted({e.index for e in fp32.errors if e.kind == kind} | {e.index for e in got.errors
                                                                               if e.kind == kind})
            report[kind] = {"items": len(names), "failed": len(failed), "min": lo, "mean": mean,
                            "worst": names[worst] if worst >= 0 else None}
    for err in fp32.errors:
        print(f"could not embed {shown(err.item)} ({err.kind}): {err.reason}", file=sys.stderr)
    if args.json:  # "cosine": int8's, as before (null when int8 was not asked for); every engine's under "engines"
        print(json.dumps({"card": card.name, "random_weights": bool(args.random_weights),
                          "cosine": reports.get("int8"), "engines": reports}, indent=2))
        return 0
    for engine, report in reports.items():
        print(f"{engine} vs fp32 cosine, {card.name}{' (random weights)' if args.random_weights else ''}:")
        for kind, r in report.items():
            fails = f", {r['failed']} failed" if r["failed"] else ""
            print(f"  {kind:8} {r['items']:>5} items{fails}  min {r['min']:.5f}  mean {r['mean']:.5f}  "
                  f"worst: {shown(r['worst'])}")
    return 0
