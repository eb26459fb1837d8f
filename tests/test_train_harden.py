"""Training rough edges (issue 19): a run whose every item fails to load exits non-zero and publishes nothing;
a checkpoint that runs out of space (a real file-size limit: EFBIG, as a full disk gives ENOSPC) is a clear
CheckpointError and leaves no temporary folder behind."""

from __future__ import annotations

import csv
import json
import subprocess
import textwrap
from pathlib import Path

from train_helpers import PYTHON, REPO, cli, env, tiny_card


def test_training_where_every_item_fails_to_load_fails_and_publishes_nothing(tmp_path):
    card = tiny_card(tmp_path / "tiny.json")
    media = tmp_path / "media"
    media.mkdir()
    rows = []
    for i in range(12):  # files that exist (so the manifest checks pass) but decode as nothing
        (media / f"img{i}.png").write_bytes(b"not a png at all " * 4)
        rows.append((f"media/img{i}.png", f"caption {i}"))
    manifest = tmp_path / "pairs.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "text"])
        w.writerows(rows)
    out = tmp_path / "out"
    proc = cli("train", manifest, "--card", card, "--out", out, "--epochs", "1", "--batch-size", "4",
               "--val-split", "0", "--seed", "0", check=False)
    assert proc.returncode != 0, proc.stderr[-3000:]
    assert "no update" in proc.stderr and "failed to load" in proc.stderr and "img" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "manifest.json").exists() and not list(out.glob("*.safetensors"))  # nothing published


SAVE = textwrap.dedent("""
    import json, resource, signal, sys
    import torch, bindkit
    from pathlib import Path
    from bindkit.errors import CheckpointError
    from bindkit.train import checkpoint as ck
    out, limit = Path(sys.argv[1]), int(sys.argv[2])
    torch.manual_seed(0)
    model = bindkit.build_model("imagebind_tiny", modalities=["imu"])
    state, card = model.encoders.state_dict(), model.card.to_dict()
    ck.save_checkpoint(out, "last", state, card, {"step": 1})
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    big = {"step": 2, "optimizer": {i: torch.zeros(256, 1024) for i in range(4)}}  # 4 MB of trainer state
    try:
        ck.save_checkpoint(out, "last", state, card, big)
        error = None
    except CheckpointError as exc:
        error = str(exc)
    print(json.dumps({"error": error, "step": ck.load_trainer_state(out / "checkpoints" / "last")["step"],
                      "left": sorted(p.name for p in (out / "checkpoints").iterdir())}))
""")


def test_a_checkpoint_that_runs_out_of_space_is_a_clear_error_and_leaves_no_temporary(tmp_path):
    # 1 MB: the model files fit, the trainer state (torch.save) does not
    proc = subprocess.run([PYTHON, "-c", SAVE, str(tmp_path / "out"), str(1 << 20)], capture_output=True, text=True,
                          env=env(), cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["error"] and "no space to write the checkpoint" in result["error"]
    assert "--resume" in result["error"] and "intact" in result["error"]
    assert result["left"] == ["last"]  # no .last.tmp
    assert result["step"] == 1  # the previous checkpoint is the one kept


def test_model_files_over_the_limit_are_the_same_clear_error(tmp_path):
    proc = subprocess.run([PYTHON, "-c", SAVE, str(tmp_path / "out"), str(64 << 10)], capture_output=True,
                          text=True, env=env(), cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "no space to write the checkpoint" in result["error"] and result["left"] == ["last"]
    assert Path(tmp_path / "out" / "checkpoints" / "last" / "manifest.json").is_file()
