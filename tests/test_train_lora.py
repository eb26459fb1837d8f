"""bindkit train --lora: only adapters (and optionally heads) train, the count printed is theirs, the output is a
small model directory that loads like any model (base + adapters), continues with --init, resumes exactly, and
refuses a base that moved or changed."""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import numpy as np
import pytest
import torch

import bindkit
from bindkit.adapt import apply_lora, read_adapter
from bindkit.cli import main
from bindkit.errors import ArgumentError, CheckpointError
from train_helpers import cli, metric_losses, metric_steps, tiny_card, toy_world

LORA = "r=2,alpha=4,targets=qkv,out,fc1,fc2"
ARGS = ["--freeze", "image", "--batch-size", "8", "--max-steps", "4", "--save-every", "2", "--val-split", "0.25",
        "--lr", "5e-3", "--seed", "0"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny base model trained on a toy image-audio world (one intra-op thread: 2 shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("train_lora")
    card = tiny_card(root / "tiny.json")
    manifests = toy_world(root / "data", n=32, kinds=("audio",))
    bindkit.train(manifests["audio"], root / "base", card=str(card), epochs=1, batch_size=8, val_split=0.25,
                  seed=0, log=lambda msg: None)
    yield root, manifests["audio"]
    torch.set_num_threads(threads)


def _sha256s(directory) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def run(world):
    """The CLI run: (out, its stderr, the base's file digests before it)."""
    root, manifest = world
    before = _sha256s(root / "base")
    proc = cli("train", manifest, "--init", root / "base", "--lora", LORA, "--out", root / "lora", *ARGS)
    return root / "lora", proc.stderr, before


def _file_parameters(path) -> int:
    return sum(t.numel() for t in read_adapter(path)[0].values())


def test_trainable_count_is_printed_and_equals_the_adapters(world, run):
    root, _ = world
    out, stderr, _ = run
    printed = int(re.search(r"([\d,]+) trainable parameters", stderr).group(1).replace(",", ""))
    record = json.loads((out / "train_record.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert record["status"] == "finished" and record["trainable"] == ["audio"] and record["frozen"] == ["vision"]
    assert record["lora"]["adapted"] == ["audio"] and record["lora"]["head_parameters"] == 0
    in_file = _file_parameters(out / "audio.lora.safetensors")
    # the same adapters applied by hand to the base: rank 2 on 4 projections of every block
    expected = apply_lora(bindkit.load_model(root / "base"), ["audio"], r=2, alpha=4)
    assert printed == record["lora"]["trainable_parameters"] == in_file == expected > 0
    assert manifest["files"]["audio"]["parameters"] == in_file
    assert sorted(manifest["files"]) == ["audio"] and manifest["lora"]["r"] == 2
    assert metric_steps(out) == [1, 2, 3, 4]
    assert (out / "val_metrics.csv").is_file()
    for which in ("best", "last"):
        assert (out / "checkpoints" / which / "audio.lora.safetensors").is_file()
    assert (out / "checkpoints" / "last" / "trainer_state.pt").is_file()
    _, meta = read_adapter(out / "audio.lora.safetensors")
    assert meta["base_card"] == "base" and meta["targets"] == "qkv,out,fc1,fc2"
    assert json.loads(meta["meta"])["arguments"]["lora"] == LORA


def test_adapter_file_is_under_five_percent_of_the_base_encoder(world, tmp_path):
    """On bindkit_toy (the tiny test card is too narrow for the file's metadata to be negligible): rank 2 on
    all four projections of its 64-wide audio encoder, against that encoder's float32 weights."""
    _, manifest = world
    bindkit.train(manifest, tmp_path / "toy", init="bindkit_toy", freeze="image", lora="r=2,alpha=4",
                  batch_size=8, max_steps=1, val_split=0, log=lambda msg: None)
    adapter = (tmp_path / "toy" / "audio.lora.safetensors").stat().st_size
    encoder = bindkit.load_model("bindkit_toy", modalities=["audio"]).encoders["audio"]
    base = sum(p.numel() * 4 for p in encoder.parameters())
    assert adapter < 0.05 * base, (adapter, base)
    manifest = json.loads((tmp_path / "toy" / "manifest.json").read_text())
    assert manifest["base"]["spec"] == "bindkit_toy" and manifest["base"]["path"] is None
    assert bindkit.load_model(tmp_path / "toy").card.name == "toy"


def test_base_is_untouched_and_only_the_adapted_encoder_changes(world, run):
    root, manifest = world
    out, _, before = run
    assert _sha256s(root / "base") == before
    base, adapted = bindkit.load_model(root / "base"), bindkit.load_model(out)
    state = adapted.encoders.state_dict()
    for k, v in base.encoders.state_dict().items():
        assert torch.equal(state[k], v), k
    assert any(".lora_adapters." in k for k in state)
    assert adapted.card.name == "lora" and adapted.modalities == ("vision", "audio")
    assert adapted.fingerprint("vision") == base.fingerprint("vision")
    assert adapted.fingerprint("audio").startswith(base.fingerprint("audio") + "~lora:")
    sounds = sorted(str(p) for p in (manifest.parent / "media").glob("snd*.wav"))[:4]
    a, b = adapted.embed(audio=sounds)["audio"], base.embed(audio=sounds)["audio"]
    assert np.abs(a - b).max() > 1e-4  # the adapters learned something


def test_output_works_as_model_everywhere(world, run, tmp_path, capsys):
    _, manifest = world
    out, _, _ = run
    sounds = sorted(str(p) for p in (manifest.parent / "media").glob("snd*.wav"))[:3]
    expected = bindkit.load_model(out).embed(audio=sounds)["audio"]
    assert main(["embed", *sounds, "--model", str(out), "--out", str(tmp_path / "e.npy"), "-q"]) == 0
    assert np.allclose(np.load(tmp_path / "e.npy"), expected, atol=1e-6)
    assert main(["eval", str(out), "--retrieval", str(manifest), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 32 and report["model"] == "lora"


def test_init_from_the_lora_dir_continues_the_same_adapters(world, run, tmp_path):
    root, manifest = world
    out, _, _ = run
    # lr 0: a continued adapter stays exactly as it was (a fresh one would start with B = 0)
    bindkit.train(manifest, tmp_path / "more", init=out, freeze="image", batch_size=8, max_steps=1, lr=0.0,
                  val_split=0.25, log=lambda msg: None)
    first, _ = read_adapter(out / "audio.lora.safetensors")
    again, _ = read_adapter(tmp_path / "more" / "audio.lora.safetensors")
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    more = json.loads((tmp_path / "more" / "manifest.json").read_text())
    assert more["base"]["path"] == str(root / "base")  # still the base, not the LoRA dir it continued
    assert json.loads((tmp_path / "more" / "train_record.json").read_text())["lora"]["init"] == str(out)
    with pytest.raises(ArgumentError, match="holds LoRA adapters with r=2"):
        bindkit.train(manifest, tmp_path / "other", init=out, freeze="image", lora="r=4", max_steps=1,
                      log=lambda msg: None)


def test_head_target_trains_and_stores_the_head(world, tmp_path):
    root, manifest = world
    res = bindkit.train(manifest, tmp_path / "h", init=root / "base", freeze="image", lora="r=2,targets=qkv,head",
                        batch_size=8, max_steps=2, lr=1e-2, val_split=0.25, log=lambda msg: None)
    counts = res.record["lora"]
    tensors, meta = read_adapter(tmp_path / "h" / "audio.lora.safetensors")
    head = {k: t for k, t in tensors.items() if k.startswith("head.")}
    assert sorted(head) == ["head.norm.bias", "head.norm.weight", "head.proj.weight"]
    assert counts["head_parameters"] == sum(t.numel() for t in head.values()) > 0
    assert counts["trainable_parameters"] == counts["adapter_parameters"] + counts["head_parameters"] \
        == sum(t.numel() for t in tensors.values())
    assert meta["targets"] == "qkv,head"
    base, adapted = bindkit.load_model(root / "base"), bindkit.load_model(tmp_path / "h")
    assert not torch.equal(base.encoders["audio"].head.proj.weight, adapted.encoders["audio"].head.proj.weight)
    assert torch.equal(adapted.encoders["audio"].head.proj.weight, head["head.proj.weight"])


def test_resume_continues_a_lora_run_exactly(world, run, tmp_path):
    root, manifest = world
    out, _, _ = run
    args = ["train", str(manifest), "--init", str(root / "base"), "--lora", LORA, "--out", str(tmp_path / "r"),
            *ARGS, "-q"]
    assert main(args + ["--stop-after", "2"]) == 0
    assert metric_steps(tmp_path / "r") == [1, 2] and not (tmp_path / "r" / "manifest.json").exists()
    assert main(args + ["--resume"]) == 0
    assert metric_steps(tmp_path / "r") == [1, 2, 3, 4]
    assert metric_losses(tmp_path / "r") == pytest.approx(metric_losses(out), abs=1e-4)
    mine, _ = read_adapter(tmp_path / "r" / "audio.lora.safetensors")
    theirs, _ = read_adapter(out / "audio.lora.safetensors")
    assert all(torch.allclose(mine[k], theirs[k], atol=1e-5) for k in theirs)


def test_moved_or_changed_base_is_refused_naming_both(world, run, tmp_path):
    from bindkit.adapt.lora_model import refresh_base_link
    from bindkit.train.checkpoint import load_model_state, write_model_dir

    root, _ = world
    out, _, _ = run
    base, lora = tmp_path / "base", tmp_path / "lora"
    shutil.copytree(root / "base", base)
    shutil.copytree(out, lora, ignore=shutil.ignore_patterns("checkpoints"))
    manifest = json.loads((lora / "manifest.json").read_text())
    manifest["base"]["path"] = str(base)
    (lora / "manifest.json").write_text(json.dumps(manifest))
    refresh_base_link(lora)
    assert bindkit.load_model(lora).fingerprint("audio") == bindkit.load_model(out).fingerprint("audio")

    state = load_model_state(base)  # other audio weights in the base's place
    state["audio.head.proj.weight"] = state["audio.head.proj.weight"] * 1.5
    write_model_dir(base, state, json.loads((base / "card.json").read_text()))
    theirs = manifest["base"]["fingerprints"]["audio"]
    mine = bindkit.load_model(base).fingerprint("audio")
    with pytest.raises(CheckpointError) as err:
        bindkit.load_model(lora)
    assert theirs in str(err.value) and mine in str(err.value) and mine != theirs

    shutil.rmtree(base)
    with pytest.raises(CheckpointError, match="missing") as err:
        bindkit.load_model(lora)
    assert str(base) in str(err.value) and "weights=PATH" in str(err.value)
    # the base given where it is now
    assert bindkit.load_model(lora, weights=root / "base").fingerprint("audio") == \
        bindkit.load_model(out).fingerprint("audio")


def test_bad_lora_arguments_fail_before_training(world, tmp_path, capsys):
    root, manifest = world
    for spec, message in (("r=two", "r must be an integer"), ("targets=qkv,nope", "unknown LoRA target(s) 'nope'")):
        with pytest.raises(SystemExit):
            main(["train", str(manifest), "--init", str(root / "base"), "--out", str(tmp_path / "x"),
                  "--lora", spec])
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    with pytest.raises(ArgumentError, match="needs --init|pass --init"):
        bindkit.train(manifest, tmp_path / "y", lora="r=2", log=lambda msg: None)


def test_int8_folds_the_adapters_and_keeps_the_adapted_fingerprint(world, run):
    from bindkit.adapt import LoRALinear
    from bindkit.errors import DeviceError

    _, manifest = world
    out, _, _ = run
    fp32 = bindkit.load_model(out, modalities=["audio"])
    try:
        q = bindkit.load_model(out, modalities=["audio"], quantize="int8")
    except DeviceError as exc:
        pytest.skip(f"no int8 engine here: {exc}")
    assert q.fingerprint("audio") == fp32.fingerprint("audio") + "+int8"
    assert not any(isinstance(m, LoRALinear) for m in q.modules())
    sounds = sorted(str(p) for p in (manifest.parent / "media").glob("snd*.wav"))[:3]
    a, b = fp32.embed(audio=sounds)["audio"], q.embed(audio=sounds)["audio"]
    assert (a * b).sum(1).min() > 0.98
