"""Benchmark of bindkit's per-modality FAISS index (``VectorIndex``) at 1,000,000 vectors of dim 1024.

Usage::

    python benchmarks/bench_index.py                 # 1M x 1024, both data sets (~15-20 min on 2 cores)
    python benchmarks/bench_index.py --n 100000      # a quicker look
    python benchmarks/bench_index.py --datasets uniform   # one data set only

For each data set the index is chosen, trained, filled and tuned automatically by ``VectorIndex.build`` (the same
code as ``VectorIndex.optimize``; default 2 GiB RAM budget, recall@10 target 0.95), saved, and reopened
memory-mapped; then it is timed. Printed per data set: the chosen key and why, build time (train + add, and
the tuning that follows), size on disk and in RAM (the FAISS structures that stay resident; the fp16 vectors used
for re-ranking are memory-mapped and paged in per query), queries/s single (one query per call) and batched
(64 per call), recall@10 against exact search, and exact flat (brute-force IndexFlatIP) queries/s at 10,000
vectors and at all n, single and batched.

Data sets (vectors are stored as float16 in a memory-mapped scratch file, 2 GB at 1M, and read in chunks):

(a) ``structured``: mimics real embeddings. ``C`` = 2000 cluster centres, uniform on the unit sphere; cluster
    sizes follow log-normal weights (sigma 0.7), so some topics are much bigger than others. Each cluster ``c`` has
    its own random 12-dimensional subspace ``B_c`` (d x 12, Gaussian / sqrt(d), so columns have norm ~1); a point
    is ``x = centre_c + B_c z + e`` with ``z ~ N(0, 0.35^2 I_12)`` (within-topic variation of norm ~1.2) and
    isotropic noise ``e ~ N(0, (0.25^2 / d) I_d)`` (norm ~0.25), then normalised. Nearest-neighbour cosines come
    out around 0.8-0.9 and random pairs near 0, like CLIP-style embeddings. Queries are fresh draws from the same
    distribution (never indexed).
(b) ``uniform``: i.i.d. Gaussian vectors, normalised (uniform on the sphere): no structure, the worst case where
    nothing beats brute force by much. Queries likewise.

Memory: peak resident set size (``VmHWM``, reset with ``/proc/self/clear_refs`` at the start of each phase) during
the build and during the searches of the reopened index, and the peak of its anonymous part (``RssAnon``, sampled
every 50 ms: heap, not file pages). File-backed pages of memory-mapped files count in RSS but are page cache the
kernel can drop at any time; anonymous memory is what must fit the budget.

Ground truth: exact inner-product top 10 of the queries over all n vectors (faiss.knn, batched) -- which is also
the measurement of exact batched queries/s at n. Timings are on a shared machine (other jobs running): compare
ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
import warnings
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bindkit.index.choice import recall_at  # noqa: E402
from bindkit.index.faiss_index import VectorIndex  # noqa: E402

CHUNK = 65536


def structured_sampler(dim: int, n_clusters: int = 2000, sub: int = 12, seed: int = 0):
    """A function ``draw(m, rng) -> float32 (m, dim)`` of unit vectors from the clustered generator above."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    bases = (rng.standard_normal((n_clusters, dim, sub)) / np.sqrt(dim)).astype(np.float32)
    weights = rng.lognormal(0.0, 0.7, n_clusters)
    weights /= weights.sum()

    def draw(m: int, rng: np.random.Generator) -> np.ndarray:
        labels = rng.choice(n_clusters, size=m, p=weights)
        x = rng.standard_normal((m, dim)).astype(np.float32) * np.float32(0.25 / np.sqrt(dim))
        z = rng.standard_normal((m, sub)).astype(np.float32) * np.float32(0.35)
        order = np.argsort(labels, kind="stable")
        bounds = np.flatnonzero(np.diff(labels[order])) + 1
        for grp in np.split(order, bounds):
            c = labels[grp[0]]
            x[grp] += centres[c] + z[grp] @ bases[c].T
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return draw


def uniform_sampler(dim: int):
    def draw(m: int, rng: np.random.Generator) -> np.ndarray:
        x = rng.standard_normal((m, dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return draw


def make_data(path: Path, n: int, dim: int, draw, seed: int) -> np.memmap:
    rng = np.random.default_rng(seed)
    data = np.memmap(path, np.float16, "w+", shape=(n, dim))
    for s in range(0, n, CHUNK):
        data[s:s + CHUNK] = draw(min(CHUNK, n - s), rng)
    data.flush()
    return np.memmap(path, np.float16, "r", shape=(n, dim))


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def qps(fn, queries: np.ndarray, batch: int, limit: int | None = None, max_s: float = 60.0) -> float:
    """Queries per second of ``fn(batch_of_queries)`` over ``queries`` (at most ``limit`` of them, and no more
    batches once ``max_s`` seconds have passed: brute-force single queries take seconds each at 1M)."""
    q = queries[:limit] if limit else queries
    fn(q[:batch])  # warm-up (page-in, thread pools)
    t = time.perf_counter()
    done = 0
    for s in range(0, q.shape[0], batch):
        fn(q[s:s + batch])
        done += q[s:s + batch].shape[0]
        if time.perf_counter() - t > max_s:
            break
    return done / (time.perf_counter() - t)


class RssMeter:
    """Peak RSS (VmHWM) and sampled peak anonymous RSS of this process, from ``start()`` to ``stop()`` (MiB)."""

    def __init__(self):
        self.peak_anon = 0
        self._run = False

    @staticmethod
    def status(field: str) -> int:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def start(self) -> "RssMeter":
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
        except OSError:
            pass
        self.base, self.base_anon = self.status("VmRSS"), self.status("RssAnon")
        self.peak_anon, self._run = self.base_anon, True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while self._run:
            self.peak_anon = max(self.peak_anon, self.status("RssAnon"))
            time.sleep(0.05)

    def stop(self) -> tuple[int, int]:
        self._run = False
        self._thread.join()
        return self.status("VmHWM"), self.peak_anon


def exact_flat(x32: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return faiss.knn(queries, x32, k, metric=faiss.METRIC_INNER_PRODUCT)[1]


def run_dataset(name: str, draw, args, work: Path) -> dict:
    n, dim = args.n, args.dim
    row: dict = {"data": name}
    t = time.perf_counter()
    data = make_data(work / f"{name}.f16", n, dim, draw, seed=1)
    queries = draw(args.queries, np.random.default_rng(2))
    # distinct, scattered 63-bit ids: an odd multiplier is a bijection modulo 2**63
    ids = ((np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) & np.uint64(2**63 - 1)).astype(np.int64)
    print(f"[{name}] generated {n} x {dim} in {time.perf_counter() - t:.0f}s", flush=True)

    meter = RssMeter().start()
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vi = VectorIndex.build(ids, data, memory_budget_bytes=args.budget, recall_target=args.target,
                               progress=args.progress)
    row["build_s"] = time.perf_counter() - t
    row["rss_build"], row["anon_build"] = meter.stop()
    row["rss_base"], row["anon_base"] = meter.base, meter.base_anon
    info = vi.info()
    secs = info.get("seconds", {})
    row["warnings"] = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    row.update(key=info["key"], params={k: v for k, v in info["params"].items() if k != "trained"},
               tuned_recall=info["recall@10"], reason=info.get("reason", ""),
               train_add_s=secs.get("train", 0) + secs.get("add", 0), tune_s=secs.get("tune", 0))
    print(f"[{name}] built {info['key']} {row['params']} in {row['build_s']:.0f}s "
          f"(train {secs.get('train')}s add {secs.get('add')}s tune {secs.get('tune')}s), "
          f"tuned recall@10 {info['recall@10']}", flush=True)

    out = work / f"index_{name}"
    vi.save(out, 1)
    vi = data = None  # unmap the data (its pages count in RSS) before measuring the reopened index
    row["disk_bytes"] = dir_bytes(out)
    meter = RssMeter().start()
    vi, _ = VectorIndex.load(out, mmap=True)
    row["ram_bytes"] = int(info.get("ram_bytes", 0))

    found = np.concatenate([vi.search(queries[s:s + 64], 10)[1] for s in range(0, queries.shape[0], 64)])
    row["qps_single"] = qps(lambda q: vi.search(q, 10), queries, 1, limit=200)
    row["qps_batch"] = qps(lambda q: vi.search(q, 10), queries, 64)
    row["rss_search"], row["anon_search"] = meter.stop()
    row["rss_open"], row["anon_open"] = meter.base, meter.base_anon
    vi = None  # unmap before the 4 GB of float32 below
    data = np.memmap(work / f"{name}.f16", np.float16, "r", shape=(n, dim))

    # Exact search over the same (fp16-rounded) vectors, held as float32 in RAM: the ground truth, and its speed.
    x32 = np.empty((n, dim), np.float32)
    for s in range(0, n, CHUNK):
        x32[s:s + CHUNK] = data[s:s + CHUNK]
    t = time.perf_counter()
    truth_rows = np.concatenate([exact_flat(x32, queries[s:s + 64], 10) for s in range(0, queries.shape[0], 64)])
    row["exact_qps_batch_n"] = queries.shape[0] / (time.perf_counter() - t)
    row["exact_qps_single_n"] = qps(lambda q: exact_flat(x32, q, 10), queries, 1, limit=10)
    row["recall"] = recall_at(found, ids[truth_rows])
    small = np.ascontiguousarray(x32[:10_000])
    x32 = None
    row["exact_qps_batch_10k"] = qps(lambda q: exact_flat(small, q, 10), queries, 64)
    row["exact_qps_single_10k"] = qps(lambda q: exact_flat(small, q, 10), queries, 1, limit=200)
    row["speedup_batch"] = row["qps_batch"] / row["exact_qps_batch_n"]
    del data
    os.remove(work / f"{name}.f16")
    shutil.rmtree(out, ignore_errors=True)
    return row


def print_table(rows: list[dict], args) -> None:
    mib = 2**20
    print(f"\nVectorIndex benchmark: n = {args.n:,}, dim = {args.dim}, {args.queries} queries, k = 10, "
          f"budget {args.budget / mib:.0f} MiB, target recall@10 {args.target}, "
          f"{os.cpu_count()} CPUs (shared), faiss {faiss.__version__}\n")
    fields = [("chosen index", lambda r: r["key"]),
              ("search params", lambda r: ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"),
              ("build: train + add (s)", lambda r: f"{r['train_add_s']:.1f}"),
              ("build: tuning (s)", lambda r: f"{r['tune_s']:.1f}"),
              ("build: total (s)", lambda r: f"{r['build_s']:.1f}"),
              ("size on disk (MiB)", lambda r: f"{r['disk_bytes'] / mib:.0f}"),
              ("size in RAM (MiB)", lambda r: f"{r['ram_bytes'] / mib:.0f}"),
              ("RSS before build (MiB): total / anonymous", lambda r: f"{r['rss_base'] / mib:.0f} / "
                                                                       f"{r['anon_base'] / mib:.0f}"),
              ("peak RSS, build (MiB)", lambda r: f"{r['rss_build'] / mib:.0f}"),
              ("peak anonymous RSS, build (MiB)", lambda r: f"{r['anon_build'] / mib:.0f}"),
              ("RSS before open (MiB): total / anonymous", lambda r: f"{r['rss_open'] / mib:.0f} / "
                                                                      f"{r['anon_open'] / mib:.0f}"),
              ("peak RSS, open + search (MiB)", lambda r: f"{r['rss_search'] / mib:.0f}"),
              ("peak anonymous RSS, open + search (MiB)", lambda r: f"{r['anon_search'] / mib:.0f}"),
              ("recall@10 at tuning (held-out)", lambda r: f"{r['tuned_recall']}"),
              ("recall@10 vs exact (test queries)", lambda r: f"{r['recall']:.4f}"),
              ("queries/s single", lambda r: f"{r['qps_single']:.3g}"),
              ("queries/s batched (64)", lambda r: f"{r['qps_batch']:.3g}"),
              (f"exact flat q/s single, n={args.n:,}", lambda r: f"{r['exact_qps_single_n']:.1f}"),
              (f"exact flat q/s batched, n={args.n:,}", lambda r: f"{r['exact_qps_batch_n']:.1f}"),
              ("exact flat q/s single, n=10,000", lambda r: f"{r['exact_qps_single_10k']:.0f}"),
              ("exact flat q/s batched, n=10,000", lambda r: f"{r['exact_qps_batch_10k']:.0f}"),
              ("speed-up vs exact, batched", lambda r: f"{r['speedup_batch']:.1f}x")]
    w0 = max(len(f) for f, _ in fields)
    widths = [max(14, *(len(fn(r)) for _, fn in fields)) for r in rows]
    print(f"{'':<{w0}}  " + "  ".join(f"{r['data']:>{w}}" for r, w in zip(rows, widths)))
    for label, fn in fields:
        print(f"{label:<{w0}}  " + "  ".join(f"{fn(r):>{w}}" for r, w in zip(rows, widths)))
    for r in rows:
        print(f"\n[{r['data']}] choice: {r['reason']}")
        for w in r["warnings"]:
            print(f"[{r['data']}] warning: {w}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="vectors per data set (default 1,000,000)")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--queries", type=int, default=500, help="test queries (ground truth is exact search)")
    ap.add_argument("--budget", type=float, default=2 * 2**30, help="RAM budget in bytes (default 2 GiB)")
    ap.add_argument("--target", type=float, default=0.95, help="recall@10 target for tuning")
    ap.add_argument("--datasets", "--data", dest="data", default="structured,uniform",
                    help="comma list of data sets: structured, uniform (default both)")
    ap.add_argument("--workdir", default=None, help="scratch folder (default: a temp folder)")
    ap.add_argument("--progress", action="store_true", help="show progress bars")
    args = ap.parse_args()
    args.budget = int(args.budget)
    import tempfile

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bindkit-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    samplers = {"structured": structured_sampler(args.dim), "uniform": uniform_sampler(args.dim)}
    rows = [run_dataset(name, samplers[name], args, work) for name in args.data.split(",")]
    print_table(rows, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
