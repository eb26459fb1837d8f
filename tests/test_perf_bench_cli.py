"""`bindkit bench`: the machine's matmul peak, items/s per encoder and engine with the share of the peak, FLOPs
counted right, and `--fidelity` on real files. Asserts behaviour and consistency, never speed."""

from __future__ import annotations

import json

import pytest
import torch

import bindkit
from bindkit import perf
from bindkit.cli import main


def test_flops_of_the_text_encoder_match_the_analytic_count():
    model = bindkit.build_model("imagebind_tiny", modalities=["text"])
    cfg = model.card.modalities["text"]
    D, blocks, out = int(cfg["embed_dim"]), int(cfg["num_blocks"]), model.dim
    for L in (4, 12):
        ids = torch.zeros(3, 77, dtype=torch.long)
        ids[:, 0], ids[:, 1:L - 1], ids[:, L - 1] = 49406, 500, 49407
        flops = perf.count_flops(lambda: model.encode("text", ids))
        # per token: qkv 3D^2 + proj D^2 + mlp 8D^2 multiply-adds = 24 D^2 FLOPs; attention QK^T and AV over
        # the trimmed L x L. The last block runs for the pooled token alone (Attention.forward_pooled): the
        # query (2 D^2) taken back through the key projection (2 D^2), scores and weighted sums of the L normed
        # tokens per head (2 x 2 L D H), the value projection of those sums (2 D^2), the output projection
        # (2 D^2) and MLP (16 D^2) for one token. The head projects one token per text. x3 texts.
        H = int(cfg["num_heads"])
        last = 24 * D * D + 4 * L * D * H
        want = 3 * ((blocks - 1) * (L * 24 * D * D + 4 * L * L * D) + last + 2 * D * out)
        assert flops == want, (L, flops, want)


def test_bench_json_reports_every_encoder_engine_and_batch(capsys):
    argv = ["bench", "--model", "imagebind_tiny", "--random-weights", "--modalities", "text,imu",
            "--batch-sizes", "1,2", "--seconds", "0", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["card"] == "imagebind_tiny" and report["random_weights"] is True
    assert report["peak_gflops"]["fp32"] > 0 and report["peak_gflops"]["int8"] > 0
    rows = report["results"]
    assert {(r["encoder"], r["engine"], r["batch"]) for r in rows} == {
        (e, g, b) for e in ("text", "imu") for g in ("fp32", "int8") for b in (1, 2)}
    for r in rows:
        assert r["items_per_s"] > 0 and r["gflop_per_item"] > 0
        assert r["gflops"] == pytest.approx(r["items_per_s"] * r["gflop_per_item"])
        assert r["peak_share"] == pytest.approx(r["gflops"] / report["peak_gflops"][r["engine"]])
    per_item = {(r["encoder"], r["engine"]): r["gflop_per_item"] for r in rows}
    assert per_item["text", "fp32"] == per_item["text", "int8"]  # same multiply-adds, cheaper ones
    assert set(report["best_batch"]) == {"text/fp32", "text/int8", "imu/fp32", "imu/int8"}


def test_bench_table_fp32_only(capsys):
    assert main(["bench", "--model", "imagebind_tiny", "--random-weights", "--modalities", "imu",
                 "--batch-sizes", "2", "--engines", "fp32", "--seconds", "0"]) == 0
    out = capsys.readouterr().out
    assert "matmul peak: fp32" in out and "int8" not in out.split("\n")[1]
    assert "% peak" in out and "best batch: imu fp32 2" in out


def test_bench_rejects_unknown_engine():
    with pytest.raises(SystemExit, match="unknown engine"):
        main(["bench", "--model", "imagebind_tiny", "--random-weights", "--engines", "fp16"])


def test_fidelity_on_sample_files(samples_dir, fixture_dir, capsys):
    files = [str(p) for p in sorted((samples_dir / "image").glob("*.jpg"))[:2]]
    files += [str(p) for p in sorted((samples_dir / "audio").glob("*.wav"))[:2]]
    argv = ["bench", "--model", "imagebind_tiny", "--weights", str(fixture_dir / "state_dict.pt"), "--fidelity",
            *files, "--text", "a dog", "--text", "rain on a tin roof", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)["cosine"]
    assert set(report) == {"image", "audio", "text"}
    for kind, r in report.items():
        assert r["items"] == 2 and r["failed"] == 0
        assert 0.99 < r["min"] <= r["mean"] <= 1.0 + 1e-6, (kind, r)
        assert r["worst"] is not None
