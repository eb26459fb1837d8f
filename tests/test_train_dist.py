"""`torchrun --nproc_per_node=2` (gloo, CPU) trains, checkpoints and resumes; with the same seed and global batch
its loss curve matches one process (negatives gathered across ranks, the same global batches)."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
import torch

import bindkit
from bindkit.cli import main
from train_helpers import PYTHON, REPO, env, metric_losses, metric_steps, tiny_card, toy_world

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: object) -> subprocess.CompletedProcess:
    cmd = [PYTHON, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "bindkit", "train", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_torchrun_two_processes_match_one_and_resume(tmp_path):
    card = tiny_card(tmp_path / "tiny.json")  # no drop-path/dropout: the runs must be comparable
    manifest = toy_world(tmp_path / "data", n=40)["text"]
    args = [manifest, "--card", card, "--batch-size", "8", "--max-steps", "6", "--lr", "2e-3", "--no-augment",
            "--val-split", "0.2", "-q"]
    dist_out = tmp_path / "ddp"
    first = _torchrun(*args, "--out", dist_out, "--stop-after", "3")
    assert "over 2 processes" in first.stderr and "paused at step 3/6" in first.stderr
    assert metric_steps(dist_out) == [1, 2, 3] and not (dist_out / "manifest.json").exists()
    second = _torchrun(*args, "--out", dist_out, "--resume")
    assert "resuming" in second.stderr and "finished at step 6/6" in second.stderr
    assert metric_steps(dist_out) == [1, 2, 3, 4, 5, 6]
    record = json.loads((dist_out / "train_record.json").read_text())
    assert record["world_size"] == 2 and record["status"] == "finished"

    single_out = tmp_path / "single"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", *map(str, args), "--out", str(single_out)]) == 0
    finally:
        torch.set_num_threads(before)
    assert metric_losses(dist_out) == pytest.approx(metric_losses(single_out), abs=1e-3)
    a, b = bindkit.load_model(dist_out), bindkit.load_model(single_out)
    for k, v in a.encoders.state_dict().items():
        assert torch.allclose(v, b.encoders.state_dict()[k], atol=1e-3), k
