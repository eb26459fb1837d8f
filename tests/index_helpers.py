"""Helpers shared by the tests/test_index_*.py files: a CLI runner, data generators, consistency checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SAMPLE_KINDS = ("image", "audio", "video", "depth", "thermal", "imu")


def env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: one thread each (2 shared cores), the repo importable."""
    e = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "BINDKIT_CRASH_AT"):
        e.pop(k, None)
    e.update(extra)
    return e


def cli(*args: str, check: bool = True, timeout: float = 300, **extra_env: str) -> subprocess.CompletedProcess:
    """Run ``python -m bindkit ARGS`` in a subprocess; returns the completed process (text output)."""
    proc = subprocess.run([PYTHON, "-m", "bindkit", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env(**extra_env), cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"bindkit {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


_BUILT: dict[str, Path] = {}


def samples_index(tmp_path_factory, model, samples_dir: Path) -> Path:
    """An exact index of every file in ../shared/samples, built once per test session (treat as read-only)."""
    if "samples" not in _BUILT:
        from bindkit.index.build import build

        out = tmp_path_factory.mktemp("samples") / "index"
        report = build([samples_dir], out, model, optimize=False, progress=False)
        assert report["counts"]["failed"] == 0, report["failures"]
        _BUILT["samples"] = out
    return _BUILT["samples"]


def model_args(fixture_dir: Path) -> list[str]:
    return ["--model", "imagebind_tiny", "--weights", str(fixture_dir / "state_dict.pt")]


def write_imu_csvs(folder: Path, n: int, seed: int = 0, rows: int = 400) -> list[Path]:
    """``n`` small synthetic IMU recordings (header gyro/accel like the samples), distinct contents."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        data = rng.normal(size=(rows, 6)).astype(np.float32)
        p = folder / f"rec{i:03d}.csv"
        with open(p, "w") as f:
            f.write("gyro_x,gyro_y,gyro_z,accl_x,accl_y,accl_z\n")
            np.savetxt(f, data, delimiter=",", fmt="%.5f")
        paths.append(p)
    return paths


def assert_exact_topk(hits, ids: np.ndarray, vecs: np.ndarray, q: np.ndarray, k: int, atol: float = 1e-4) -> None:
    """``hits`` are an exact top-``k`` of ``vecs @ q``, up to ties: distinct ids, each hit's score is its own stored
    vector's score, and the scores are the ``k`` best, best first.

    The tests' random-weight models give nearly parallel vectors (scores 0.99999 apart), so which of two tied items a
    search returns first depends on float rounding (BLAS, threads, CPU): compare scores, never the order of ties."""
    scores = vecs @ (q / np.linalg.norm(q))  # search normalises its queries
    kk = min(k, len(ids))
    got_ids = [h.id for h in hits]
    assert len(got_ids) == kk and len(set(got_ids)) == kk, got_ids
    pos = {int(i): j for j, i in enumerate(ids)}
    assert all(i in pos for i in got_ids), "a hit that is not a stored item"
    got = np.array([h.score for h in hits], dtype=np.float64)
    assert np.allclose(got, scores[[pos[i] for i in got_ids]], atol=atol)  # each score belongs to its id
    assert np.allclose(got, np.sort(scores)[::-1][:kk], atol=atol)  # ... and they are the k best, in order


def assert_scores_as_high_as_best(hits, item_id: int, ids: np.ndarray, vecs: np.ndarray, q: np.ndarray,
                                  atol: float = 1e-4) -> None:
    """``item_id`` (e.g. the item whose own content is the query) scores as high as the best hit: it is a correct
    first answer, even where a near-parallel neighbour happens to be returned before it."""
    own = float(vecs[list(ids).index(item_id)] @ (q / np.linalg.norm(q)))
    assert hits and own >= hits[0].score - atol, (own, hits[0].score)


def assert_consistent(index) -> None:
    """FAISS caches hold exactly the SQLite ids; searching each stored vector returns stored items with their own
    scores, and for exact index kinds the best score equals brute force (approximate kinds such as HNSW may
    legitimately miss the best one, so only the scores' consistency is checked there)."""
    from bindkit.index.keys import kind_of

    store = index._store
    for kind, n in store.modality_counts().items():
        vi = index._caches.vi[kind]
        sql_ids = store.ids(kind)
        assert np.array_equal(np.sort(vi.ids()), sql_ids), kind
        ids, vecs = index.vectors(kind)
        assert len(ids) == n
        scores, found = vi.search(vecs, 1)
        pos = {int(i): j for j, i in enumerate(ids)}
        assert all(int(i) in pos for i in found[:, 0]), kind
        own = np.einsum("ij,ij->i", vecs, vecs[[pos[int(i)] for i in found[:, 0]]])
        assert np.allclose(scores[:, 0], own, atol=1e-4), kind  # every score is its id's true score
        if kind_of(vi.key) in ("flat", "raw"):
            assert np.allclose(scores[:, 0], (vecs @ vecs.T).max(1), atol=1e-4), kind
    for kind in set(index._caches.vi) - set(store.modality_counts()):
        assert len(index._caches.vi[kind]) == 0
