"""Verified weights: a model folder's files are checked against the sha256 its manifest records before they are
used (load_model, a LoRA model's base, its adapters), each verdict is remembered per file identity so a file is
hashed once, fingerprints are trusted only for verified files, and `bindkit verify` re-hashes on demand."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import bindkit
import bindkit.weights.verify as verify
from bindkit.adapt import apply_lora
from bindkit.adapt.lora_model import describe_base, write_lora_dir
from bindkit.adapt.spec import LoRASpec
from bindkit.cli import main
from bindkit.errors import CheckpointError, WeightsIntegrityError

TOY = Path(__file__).resolve().parent.parent / "weights" / "bindkit_toy"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test remembers its verdicts in its own cache file (never the user's)."""
    monkeypatch.setenv(verify.CACHE_ENV, str(tmp_path / "verified.json"))
    return tmp_path / "verified.json"


def _copy_toy(dest: Path) -> Path:
    shutil.copytree(TOY, dest)
    return dest


def _flip_last_byte(path: Path, keep_times: bool = False) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    with open(path, "r+b") as fh:  # in place: the same inode and size
        fh.write(data)
    if keep_times:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_the_committed_toy_model_verifies(capsys):
    assert main(["verify", str(TOY), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and {f["name"] for f in report["files"]} == {"vision", "text", "audio", "depth", "thermal",
                                                                      "imu"}
    assert all(f["status"] == "ok" and f["actual"] == f["expected"] for f in report["files"])
    assert main(["verify", "bindkit_toy", "-q"]) == 0  # a card name: its local weights
    assert capsys.readouterr().out == ""


def test_a_bit_flipped_file_is_refused_on_load_naming_it(tmp_path, capsys):
    model_dir = _copy_toy(tmp_path / "toy")
    _flip_last_byte(model_dir / "vision.safetensors")
    with pytest.raises(WeightsIntegrityError) as exc:
        bindkit.load_model(model_dir)
    msg = str(exc.value)
    assert str(model_dir / "vision.safetensors") in msg and "sha256" in msg and "bindkit verify" in msg
    # the other encoders are not affected: loading only them works
    assert bindkit.load_model(model_dir, modalities=["text"]).modalities == ("text",)
    # the CLI names the file too, without a traceback
    (tmp_path / "dog.txt").write_text("a dog")
    capsys.readouterr()
    assert main(["embed", str(tmp_path / "dog.txt"), "-m", "image", "--model", str(model_dir), "--out",
                 str(tmp_path / "e.npy"), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "vision.safetensors" in err and "Traceback" not in err
    capsys.readouterr()
    assert main(["verify", str(model_dir)]) == 1
    captured = capsys.readouterr()
    assert "vision.safetensors" in captured.err and "damaged" in captured.err
    assert "ok" in captured.out and "text.safetensors" in captured.out


def test_a_truncated_file_is_refused_without_hashing(tmp_path):
    model_dir = _copy_toy(tmp_path / "toy")
    path = model_dir / "audio.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(WeightsIntegrityError, match="audio.safetensors.*bytes"):
        bindkit.load_model(model_dir, modalities=["audio"])


def test_a_verdict_is_remembered_and_a_rewrite_with_restored_mtime_is_caught(tmp_path, monkeypatch,
                                                                            private_cache):
    model_dir = _copy_toy(tmp_path / "toy")
    hashed: list[str] = []
    real = verify.hash_file_into

    def counting(digest, path):
        hashed.append(Path(path).name)
        return real(digest, path)

    monkeypatch.setattr(verify, "hash_file_into", counting)
    bindkit.load_model(model_dir, modalities=["audio", "imu"])
    assert sorted(hashed) == ["audio.safetensors", "imu.safetensors"]
    entries = json.loads(private_cache.read_text())["files"]
    assert str((model_dir / "audio.safetensors").resolve()) in entries
    bindkit.load_model(model_dir, modalities=["audio", "imu"])  # remembered: not read again
    assert len(hashed) == 2
    # the same size, the mtime put back: ctime still tells, so the file is hashed again and refused
    _flip_last_byte(model_dir / "audio.safetensors", keep_times=True)
    with pytest.raises(WeightsIntegrityError, match="audio.safetensors"):
        bindkit.load_model(model_dir, modalities=["audio"])
    assert hashed.count("audio.safetensors") == 2
    # `bindkit verify` re-hashes whatever the cache says
    assert main(["verify", str(model_dir), "-q"]) == 1
    assert hashed.count("imu.safetensors") == 2


def test_an_unwritable_cache_only_costs_time(tmp_path, monkeypatch):
    monkeypatch.setenv(verify.CACHE_ENV, str(tmp_path / "no" / "such" / "dir" / "file.json"))
    (tmp_path / "no").write_text("a file, not a folder")
    assert bindkit.load_model(TOY, modalities=["imu"]).modalities == ("imu",)


def test_fingerprints_are_trusted_only_for_verified_files(tmp_path):
    model_dir = _copy_toy(tmp_path / "toy")
    good = bindkit.load_model(model_dir, modalities=["imu"]).fingerprint("imu")
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["files"]["imu"]["fingerprint"] == good  # a verified file: the recorded fingerprint
    del manifest["files"]["imu"]["sha256"]
    manifest["files"]["imu"]["fingerprint"] = "0" * 32  # a claim nothing backs
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    computed = bindkit.load_model(model_dir, modalities=["imu"]).fingerprint("imu")
    assert computed != "0" * 32 and len(computed) == 32


@pytest.fixture()
def lora_dir(tmp_path):
    """A LoRA model folder over a copy of bindkit_toy (audio adapted), written as `bindkit train --lora` does."""
    base = _copy_toy(tmp_path / "base")
    model = bindkit.load_model(base, modalities=["audio", "text"])
    apply_lora(model, "audio", r=2, alpha=4)
    spec = LoRASpec(r=2, alpha=4)
    card = {**model.card.to_dict(), "name": "toy_lora"}
    write_lora_dir(tmp_path / "lora", model, card, describe_base(base, None, model), spec)
    return base, tmp_path / "lora"


def test_a_lora_models_base_and_adapters_are_verified(lora_dir, capsys):
    base, lora = lora_dir
    assert bindkit.load_model(lora).card.name == "toy_lora"
    assert main(["verify", str(lora), "--json"]) == 0
    names = [Path(f["path"]).name for f in json.loads(capsys.readouterr().out)["files"]]
    assert "audio.lora.safetensors" in names and "vision.safetensors" in names  # the base is checked too
    _flip_last_byte(base / "audio.safetensors")
    with pytest.raises(CheckpointError) as exc:  # "base weights changed": computed, not the manifest's word
        bindkit.load_model(lora)
    assert "audio.safetensors" in str(exc.value) and "damaged" in str(exc.value)
    assert main(["verify", str(lora), "-q"]) == 1
    assert "audio.safetensors" in capsys.readouterr().err


def test_a_damaged_adapter_is_refused(lora_dir):
    _, lora = lora_dir
    _flip_last_byte(lora / "audio.lora.safetensors")
    with pytest.raises(WeightsIntegrityError, match="audio.lora.safetensors"):
        bindkit.load_model(lora)


def test_verify_explains_a_folder_without_manifest(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["verify", str(tmp_path / "empty")]) == 1
    assert "manifest.json" in capsys.readouterr().err
