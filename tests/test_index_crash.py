"""Crash safety: a process SIGKILLed in the middle of ``Index.add`` leaves an index that opens and holds the
state before or after that add, with FAISS agreeing with SQLite."""

from __future__ import annotations

import random
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from bindkit.index import Index

from index_helpers import PYTHON, REPO, assert_consistent, env

BATCH = 12  # items per add in the child; each add touches two modalities (text + imu)

CHILD = textwrap.dedent("""
    import sys, numpy as np, torch, bindkit
    from bindkit.index import Index
    path, weights, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model = bindkit.load_model("imagebind_tiny", weights=weights)
    index = Index.open(path, model=model)
    rng = np.random.default_rng(int(sys.argv[4]))
    model.embed(text=["warm up"], imu=[np.zeros((6, 2000), np.float32)], show_progress_bar=False)
    print("ready", flush=True)
    for r in range(rounds):
        texts = [f"round {r} caption {i} {rng.integers(1 << 30)}" for i in range(HALF)]
        imus = [rng.normal(size=(6, 2000)).astype(np.float32) for _ in range(HALF)]
        index.add(texts + imus, modality=["text"] * HALF + ["imu"] * HALF, metadata={"round": f"{sys.argv[4]}-{r}"})
    print("done", flush=True)
""").replace("HALF", str(BATCH // 2))


@pytest.fixture
def start_index(tmp_path, tiny_model) -> Path:
    path = tmp_path / "index"
    with Index.create(path, model=tiny_model) as ix:
        ix.add([f"seed text {i}" for i in range(5)], modality="text")
    return path


def _run_child(path: Path, fixture_dir: Path, rounds: int, seed: int, crash_at: str | None = None,
               kill_after: float | None = None) -> int:
    extra = {"BINDKIT_CRASH_AT": crash_at} if crash_at else {}
    proc = subprocess.Popen([PYTHON, "-c", CHILD, str(path), str(fixture_dir / "state_dict.pt"), str(rounds), str(seed)],
                            env=env(**extra), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if kill_after is not None:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode


def _check(path: Path, allowed_counts: set[int]) -> int:
    with Index.open(path) as ix:
        n = len(ix)
        assert n in allowed_counts, (n, allowed_counts)
        assert_consistent(ix)
        # each add is all-or-nothing: every round present holds all of its items
        rounds = [h.metadata.get("round") for h in ix.get(ix._store.ids())]
        per_round = {r: rounds.count(r) for r in set(rounds) if r is not None}
        assert all(c == BATCH for c in per_round.values()), per_round
        return n


@pytest.mark.parametrize("point, after", [("add:begin", False), ("add:rows", False), ("add:committed", True),
                                          ("save:between", True)])
def test_kill_at_each_point_of_an_add(start_index, fixture_dir, point, after):
    code = _run_child(start_index, fixture_dir, rounds=1, seed=1, crash_at=point)
    assert code == -signal.SIGKILL  # the hook fired: the child died inside add()
    n = _check(start_index, {5, 5 + BATCH})
    assert n == (5 + BATCH if after else 5)


@pytest.mark.slow
def test_kill_at_random_moments(start_index, fixture_dir):
    rng = random.Random(0)
    n = 5
    for trial in range(2):
        code = _run_child(start_index, fixture_dir, rounds=50, seed=trial, kill_after=rng.uniform(0.3, 1.0))
        assert code == -signal.SIGKILL
        n_after = _check(start_index, {n + BATCH * r for r in range(51)})
        n = n_after
    assert n > 5  # some adds completed before the kills
