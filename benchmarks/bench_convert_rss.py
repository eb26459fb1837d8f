"""Peak memory (RSS) of converting an imagebind_huge-shaped checkpoint and of loading one modality vs all.

Creates a reference-layout checkpoint with the real key names and shapes of imagebind_huge (1.2 B parameters,
random values; from ../shared/fixtures/imagebind_tiny/huge_keys.json) in a temporary directory, then runs each
step in a fresh Python process and reports that process's peak RSS (VmHWM, file-backed mapped pages included):

  1. ``bindkit.weights.convert(ckpt, dir)``                    (one modality at a time)
  2. ``bindkit.load_model("imagebind_huge", weights=dir, modalities=["text"])``, then every weight read once
  3. the same from the ``.pth`` (memory-mapped torch.load)
  4. ``load_model`` with all modalities (the full model), every weight read once

Loading memory-maps the weights, so "after load" shows what a load costs before any weight is used; the peak
column is after each parameter has been read (what the first forward pass does).

Usage: python benchmarks/bench_convert_rss.py [--fp16] [--workdir DIR]
  --fp16      store the synthetic checkpoint in fp16 (2.4 GB instead of 4.8 GB); chosen automatically when
              less than 12 GiB of memory is available, because creating it holds the whole dict in memory.
  --workdir   keep the checkpoint and converted files in DIR (reused by the next run) instead of a temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BINDKIT_SHARED", REPO.parent / "shared"))
KEYS = SHARED / "fixtures" / "imagebind_tiny" / "huge_keys.json"

# Every child ends by printing one JSON line with its own figures.
PRELUDE = f"""
import json, sys, time
sys.path.insert(0, {str(REPO)!r})
def mem_mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
"""

CREATE = """
import torch
keys = json.load(open(KEYS))
dtype = torch.float16 if FP16 else torch.float32
g = torch.Generator().manual_seed(0)
sd = {}
for k, shape in keys.items():
    if k.endswith("text.mask"):  # the causal mask the text encoder is checked against
        sd[k] = torch.full(shape, float("-inf"), dtype=dtype).triu(1)
    else:
        sd[k] = torch.empty(shape, dtype=dtype).normal_(0.0, 0.02, generator=g)
n = sum(t.numel() for t in sd.values())
torch.save(sd, OUT)
print(json.dumps({"params": n, "seconds": time.perf_counter() - t0, "peak_mb": mem_mb("VmHWM")}))
"""

BASELINE = """
import torch, bindkit, bindkit.weights
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_mb": mem_mb("VmHWM")}))
"""

CONVERT = """
import bindkit.weights
bindkit.weights.convert(SRC, OUT, card="imagebind_huge", progress=False)
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_mb": mem_mb("VmHWM")}))
"""

LOAD = """
import torch, bindkit
model = bindkit.load_model("imagebind_huge", weights=SRC, modalities=MODS)
after = mem_mb("VmRSS")
with torch.no_grad():  # read every weight once, as a forward pass would
    total = sum(float(p.float().sum()) for p in model.parameters())
n = sum(p.numel() for p in model.parameters())
print(json.dumps({"seconds": time.perf_counter() - t0, "after_load_mb": after, "peak_mb": mem_mb("VmHWM"),
                  "params": n, "modalities": list(model.modalities)}))
"""


def child(code: str, **consts) -> dict:
    """Run ``code`` in a fresh interpreter with ``consts`` defined; return its JSON line."""
    defs = "".join(f"{k} = {v!r}\n" for k, v in consts.items())
    proc = subprocess.run([sys.executable, "-c", PRELUDE + defs + code], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def available_gib() -> float:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return float("inf")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fp16", action="store_true", help="store the synthetic checkpoint in fp16")
    ap.add_argument("--workdir", type=Path, help="keep files here (reused by later runs)")
    args = ap.parse_args()
    if not KEYS.is_file():
        sys.exit(f"{KEYS} not found: the benchmark needs ../shared (or $BINDKIT_SHARED)")
    sys.path.insert(0, str(REPO))  # this checkout's bindkit, whatever the environment has installed
    try:
        import bindkit
        bindkit.load_model  # noqa: B018 (the lead's factory must exist)
    except (ImportError, AttributeError) as exc:
        sys.exit(f"bindkit.load_model is not available yet: {exc}")

    fp16 = args.fp16 or available_gib() < 12
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bindkit_rss_"))
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / f"imagebind_huge_random_{'fp16' if fp16 else 'fp32'}.pth"
    conv = work / f"converted_{'fp16' if fp16 else 'fp32'}"
    rows = []
    try:
        if not ckpt.is_file():
            print(f"creating {ckpt} ({'fp16' if fp16 else 'fp32'}) ...", file=sys.stderr)
            r = child(CREATE, KEYS=str(KEYS), OUT=str(ckpt), FP16=fp16)
            rows.append(("create checkpoint (torch.save, whole dict)", r, None))
        size_gb = ckpt.stat().st_size / 1e9
        base = child(BASELINE)
        rows.append(("python + import torch, bindkit", base, None))
        shutil.rmtree(conv, ignore_errors=True)
        r = child(CONVERT, SRC=str(ckpt), OUT=str(conv))
        rows.append(("convert -> 6 safetensors files", r, None))
        text = child(LOAD, SRC=str(conv), MODS=["text"])
        rows.append(("load_model text (converted dir)", text, text["after_load_mb"]))
        text_pth = child(LOAD, SRC=str(ckpt), MODS=["text"])
        rows.append(("load_model text (.pth, mmap)", text_pth, text_pth["after_load_mb"]))
        full = child(LOAD, SRC=str(conv), MODS=None)
        rows.append(("load_model all 6 (converted dir)", full, full["after_load_mb"]))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    b = base["peak_mb"]
    print(f"\ncheckpoint: imagebind_huge layout, random values, {'fp16' if fp16 else 'fp32'} on disk, "
          f"{size_gb:.2f} GB; full model {full['params']:,} parameters; RSS in MB (VmHWM of a fresh process)\n")
    print(f"{'step':<44} {'wall s':>7} {'RSS after load':>15} {'peak RSS':>9} {'peak - import':>14}")
    for name, r, after in rows:
        aft = f"{after:,.0f}" if after is not None else "-"
        print(f"{name:<44} {r['seconds']:>7.1f} {aft:>15} {r['peak_mb']:>9,.0f} {r['peak_mb'] - b:>14,.0f}")
    print(f"\ntext parameters {text['params']:,} / all {full['params']:,} "
          f"= {text['params'] / full['params']:.3f}")
    print(f"peak RSS above import, text / full: {(text['peak_mb'] - b) / (full['peak_mb'] - b):.3f} "
          f"(converted dir), {(text_pth['peak_mb'] - b) / (full['peak_mb'] - b):.3f} (.pth)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
