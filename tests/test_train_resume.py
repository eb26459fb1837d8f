"""A SIGKILLed `bindkit train` resumed with --resume reaches the same final step, runs no finished step twice
and continues exactly as an uninterrupted run would."""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap

import pytest
import torch

import bindkit
from bindkit.cli import main
from train_helpers import PYTHON, REPO, cli, env, metric_losses, metric_steps, tiny_card, toy_world

# `python -m bindkit train ...` with one test-side hook: the process SIGKILLs itself right after step KILL_AT's
# metrics row is written — a real SIGKILL at a deterministic point (mid-run, between checkpoints), whatever
# the machine's speed.
_KILLER = textwrap.dedent("""
    import os, signal, sys
    import bindkit.train.checkpoint as ck
    append = ck.CsvLog.append
    def append_then_die(self, row):
        append(self, row)
        if self.path.name == "metrics.csv" and int(row["step"]) == int(os.environ["KILL_AT"]):
            os.kill(os.getpid(), signal.SIGKILL)
    ck.CsvLog.append = append_then_die
    from bindkit.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_resume")
    tiny_card(root / "tiny.json")
    manifests = toy_world(root / "data", n=32)
    args = [manifests["text"], "--card", root / "tiny.json", "--batch-size", "8", "--max-steps", "9",
            "--save-every", "2", "--val-split", "0.25", "--lr", "2e-3", "-q"]
    return root, [str(a) for a in args]


@pytest.fixture(scope="module")
def killed_and_resumed(setup):
    """(out, stderr of the kill, stderr of the resume, steps logged before the resume)."""
    root, args = setup
    out = root / "killed"
    proc = subprocess.run([PYTHON, "-c", _KILLER, "train", *args, "--out", str(out)], capture_output=True,
                          text=True, env=env(KILL_AT="7"), cwd=REPO, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    steps_before = metric_steps(out)
    published_before = (out / "manifest.json").exists()
    resumed = cli("train", *args, "--out", out, "--resume", check=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    return out, steps_before, published_before, resumed.stderr


def test_sigkilled_run_resumes_at_the_same_step_without_repeating_steps(setup, killed_and_resumed):
    root, args = setup
    out, steps_before, published_before, stderr = killed_and_resumed
    assert steps_before == list(range(1, 8))  # step 7 ran; its checkpoint (step 8) never came
    assert not published_before  # the model is published when training finishes
    assert "resuming" in stderr and "at step 6 of 9" in stderr
    assert metric_steps(out) == list(range(1, 10))  # each step once: 7 was rolled back and redone
    record = json.loads((out / "train_record.json").read_text())
    assert record["status"] == "finished" and record["steps"] == 9
    assert [e["step"] for e in record["epochs"]] == [3, 6, 9]  # 24 training pairs / 8 = 3 steps per epoch
    assert bindkit.load_model(out).modalities == ("vision", "text")

    # continuing changes nothing: the same numbers as a run that was never interrupted (in this process)
    full = root / "uninterrupted"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", *args, "--out", str(full)]) == 0
    finally:
        torch.set_num_threads(before)
    assert metric_losses(out) == pytest.approx(metric_losses(full), abs=1e-4)


def test_resume_refuses_other_arguments_and_missing_checkpoints(setup, killed_and_resumed, capsys):
    root, args = setup
    done = killed_and_resumed[0]
    assert main(["train", *args, "--out", str(root / "fresh"), "--resume"]) == 1
    assert "no checkpoint to continue from" in capsys.readouterr().err
    changed = [a if a != "2e-3" else "1e-3" for a in args]
    assert main(["train", *changed, "--out", str(done), "--resume"]) == 1
    assert "changed: lr: 0.002 then, 0.001 now" in capsys.readouterr().err
    assert main(["train", *args, "--out", str(done)]) == 1
    assert "not empty; continue that run with --resume" in capsys.readouterr().err
