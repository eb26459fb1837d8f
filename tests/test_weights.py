"""bindkit.weights: reading checkpoints per modality, conversion to safetensors, locating and fetching."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from bindkit.cards import load_card
from bindkit.cli import main as cli_main
from bindkit.errors import CheckpointError, ModalityError, WeightsNotFoundError
from bindkit.weights import (
    checkpoint_modalities,
    convert,
    fetch_weights,
    locate_weights,
    missing_weights_error,
    read_state_dict,
)
from bindkit.models.reference_layout import encoder_of_key

ENCODERS = ("vision", "text", "audio", "depth", "thermal", "imu")


@pytest.fixture
def ref_pt(fixture_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "ref.pt"
    shutil.copyfile(fixture_dir / "state_dict.pt", dst)
    return dst


@pytest.fixture(scope="module")
def converted(fixture_dir: Path, tmp_path_factory) -> Path:
    return convert(fixture_dir / "state_dict.pt", tmp_path_factory.mktemp("conv") / "tiny",
                   card="imagebind_tiny", progress=False)


def _keys_of(sd, modality):
    return {k for k in sd if k.split(".")[1] == modality}


# --- reading ----------------------------------------------------------------------------------------------

def test_read_pt_all_and_one_modality(ref_pt, tiny_state_dict):
    full = read_state_dict(ref_pt)
    assert set(full) == set(tiny_state_dict)
    text = read_state_dict(ref_pt, ["text"])
    assert set(text) == _keys_of(tiny_state_dict, "text") and text
    for k, v in text.items():
        assert torch.equal(v, tiny_state_dict[k])


def test_read_without_mmap_and_aliases(ref_pt, tiny_state_dict):
    sd = read_state_dict(ref_pt, ["image", "imu"], mmap=False)
    assert set(sd) == _keys_of(tiny_state_dict, "vision") | _keys_of(tiny_state_dict, "imu")
    with pytest.raises(ModalityError):
        read_state_dict(ref_pt, ["smell"])


def test_read_unwraps_model_key_and_mapping(tmp_path, tiny_state_dict):
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": tiny_state_dict, "epoch": 3}, wrapped)
    assert set(read_state_dict(wrapped, ["audio"])) == _keys_of(tiny_state_dict, "audio")
    depth = read_state_dict(dict(tiny_state_dict), ["depth"])
    assert set(depth) == _keys_of(tiny_state_dict, "depth")


def test_read_legacy_format(tmp_path, tiny_state_dict):
    old = tmp_path / "old.pth"
    torch.save(tiny_state_dict, old, _use_new_zipfile_serialization=False)
    sd = read_state_dict(old, ["thermal"])  # mmap is impossible here; must fall back to a full read
    assert set(sd) == _keys_of(tiny_state_dict, "thermal")


def test_truncated_checkpoint(ref_pt):
    data = ref_pt.read_bytes()
    ref_pt.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_state_dict(ref_pt, ["text"])


def test_text_and_jpeg_named_pth(tmp_path):
    from PIL import Image

    txt = tmp_path / "notes.pth"
    txt.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match="text file"):
        read_state_dict(txt)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="JPEG")
    jpg = tmp_path / "photo.pth"
    jpg.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="JPEG"):
        read_state_dict(jpg)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "absent.pth")


def test_pickles_that_are_not_state_dicts(tmp_path):
    lst = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], lst)
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        read_state_dict(lst)
    mixed = tmp_path / "mixed.pt"
    torch.save({"modality_heads.text.weight": torch.zeros(2), "note": "hi"}, mixed)
    with pytest.raises(CheckpointError, match="not tensors"):
        read_state_dict(mixed)


def test_missing_modality_in_source(tiny_state_dict):
    only_text = {k: v for k, v in tiny_state_dict.items() if encoder_of_key(k) == "text"}
    with pytest.raises(CheckpointError, match="no weights for modality audio"):
        read_state_dict(only_text, ["audio"])


# --- converted directories --------------------------------------------------------------------------------

def test_convert_layout_and_manifest(converted, tiny_state_dict):
    manifest = json.loads((converted / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["card"] == "imagebind_tiny"
    assert json.loads((converted / "card.json").read_text())["name"] == "imagebind_tiny"
    assert set(manifest["files"]) == set(ENCODERS)
    for m, info in manifest["files"].items():
        f = converted / info["file"]
        assert f.name == f"{m}.safetensors"
        assert info["keys"] == len(_keys_of(tiny_state_dict, m))
        assert info["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert not list(converted.glob(".*tmp*"))  # no temporary files left behind
    assert checkpoint_modalities(converted) == list(ENCODERS)


def test_read_converted_one_modality(converted, tiny_state_dict):
    audio = read_state_dict(converted, ["audio"])
    assert set(audio) == _keys_of(tiny_state_dict, "audio")
    for k, v in audio.items():
        assert v.dtype == tiny_state_dict[k].dtype and torch.equal(v, tiny_state_dict[k])


def test_converted_dir_opens_only_requested_files(converted, tmp_path, tiny_state_dict):
    # Remove the vision file: the other modalities must still load, vision must fail by name.
    partial = tmp_path / "partial"
    shutil.copytree(converted, partial)
    (partial / "vision.safetensors").unlink()
    assert set(read_state_dict(partial, ["imu"])) == _keys_of(tiny_state_dict, "imu")
    with pytest.raises(CheckpointError, match="vision"):
        read_state_dict(partial, ["vision"])
    audio = partial / "audio.safetensors"
    audio.write_bytes(audio.read_bytes()[: audio.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_state_dict(partial, ["audio"])
    assert set(read_state_dict(partial, ["text"])) == _keys_of(tiny_state_dict, "text")


def test_convert_subset_then_ask_for_other(fixture_dir, tmp_path):
    out = convert(fixture_dir / "state_dict.pt", tmp_path / "sub", modalities=["text"], progress=False)
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["text.safetensors"]
    with pytest.raises(CheckpointError, match="subset of modalities") as err:
        read_state_dict(out, ["audio"])
    assert "audio" in str(err.value)


def test_convert_fp16(fixture_dir, tmp_path, tiny_state_dict, converted):
    out = convert(fixture_dir / "state_dict.pt", tmp_path / "half", dtype="fp16", progress=False)
    sd = read_state_dict(out, ["vision", "text"])
    assert sd and all(v.dtype == torch.float16 for v in sd.values())
    for k, v in sd.items():
        ref = tiny_state_dict[k]
        torch.testing.assert_close(v.float(), ref, rtol=1e-3, atol=1e-4)
    assert json.loads((out / "manifest.json").read_text())["dtype"] == "float16"
    full = sum(f.stat().st_size for f in converted.glob("*.safetensors"))
    half = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    assert half < 0.55 * full


def test_convert_rejects_bad_dtype_and_absent_modality(fixture_dir, tmp_path, tiny_state_dict):
    with pytest.raises(CheckpointError, match="dtype"):
        convert(fixture_dir / "state_dict.pt", tmp_path / "x", dtype="int8", progress=False)
    only_text = {k: v for k, v in tiny_state_dict.items() if encoder_of_key(k) == "text"}
    with pytest.raises(CheckpointError, match="no weights for imu"):
        convert(only_text, tmp_path / "y", modalities=["imu"], progress=False)


def test_cli_convert(fixture_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = cli_main(["convert", str(fixture_dir / "state_dict.pt"), str(out), "--dtype", "bf16",
                   "--modality", "text,imu", "--card", "imagebind_tiny", "-q"])
    assert rc == 0
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["imu.safetensors", "text.safetensors"]
    assert all(v.dtype == torch.bfloat16 for v in read_state_dict(out, ["imu"]).values())
    bad = tmp_path / "bad.pth"
    bad.write_text("nope")
    assert cli_main(["convert", str(bad), str(tmp_path / "never"), "-q"]) == 1
    assert "error:" in capsys.readouterr().err


# --- locating ---------------------------------------------------------------------------------------------

def test_locate_and_missing_error(converted, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("BINDKIT_WEIGHTS", str(tmp_path / "w"))
    card = load_card("imagebind_huge")
    err = missing_weights_error(card)
    assert isinstance(err, WeightsNotFoundError)
    for needle in ("bindkit fetch imagebind_huge", "CC BY-NC", str(tmp_path / "w"), str(tmp_path / "cache")):
        assert needle in str(err)

    tiny = load_card("imagebind_tiny")
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "imagebind_tiny.pt").write_bytes(b"x")
    assert locate_weights(tiny) == tmp_path / "w" / "imagebind_tiny.pt"
    shutil.copytree(converted, tmp_path / "cache" / "bindkit" / "imagebind_tiny")
    (tmp_path / "w" / "imagebind_tiny.pt").unlink()
    assert locate_weights(tiny) == tmp_path / "cache" / "bindkit" / "imagebind_tiny"


# --- fetching over a real local HTTP server ---------------------------------------------------------------

PAYLOAD = os.urandom(3 * (1 << 20) + 12345)


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves PAYLOAD at any path, honouring ``Range: bytes=N-``; records each request's Range and bytes sent."""

    log: list[tuple[str | None, int]] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        rng = self.headers.get("Range")
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        if start >= len(PAYLOAD):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
            self.log.append((rng, 0))
            self.end_headers()
            return
        body = PAYLOAD[start:]
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.send_header("Content-Length", str(len(body)))
        # logged before the body goes out: the client can only finish reading after this line, so a test that
        # checks the log right after its download never races the server thread
        self.log.append((rng, len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def server():
    _RangeHandler.log = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _RangeHandler.log
    httpd.shutdown()
    httpd.server_close()


def _card_for(url: str, **weights):
    base = load_card("imagebind_tiny")
    w = {"url": f"{url}/tiny.pth", "filename": "tiny.pth", "license_note": "Test licence: look before you leap.",
         **weights}
    return dataclasses.replace(base, weights=w)


def test_fetch_full_download(server, tmp_path, capsys):
    url, log = server
    card = _card_for(url, sha256=hashlib.sha256(PAYLOAD).hexdigest(), size=len(PAYLOAD))
    path = fetch_weights(card, tmp_path, progress=False)
    assert path == tmp_path / "tiny.pth" and path.read_bytes() == PAYLOAD
    assert not (tmp_path / "tiny.pth.part").exists()
    assert log == [(None, len(PAYLOAD))]
    assert "Test licence" in capsys.readouterr().err
    fetch_weights(card, tmp_path, progress=False)  # already there: no second request
    assert len(log) == 1


def test_fetch_resumes_from_part(server, tmp_path):
    url, log = server
    have = 1_000_003
    (tmp_path / "tiny.pth.part").write_bytes(PAYLOAD[:have])
    card = _card_for(url, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    path = fetch_weights(card, tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert log == [(f"bytes={have}-", len(PAYLOAD) - have)]


def test_fetch_checksum_mismatch(server, tmp_path):
    url, _ = server
    card = _card_for(url, sha256="0" * 64)
    with pytest.raises(CheckpointError, match="sha256"):
        fetch_weights(card, tmp_path, progress=False)
    assert not (tmp_path / "tiny.pth").exists() and not (tmp_path / "tiny.pth.part").exists()


def test_fetch_http_error_and_no_url(tmp_path):
    card = _card_for("http://127.0.0.1:9", sha256=None)  # discard port: connection refused
    with pytest.raises(CheckpointError, match="cannot reach"):
        fetch_weights(card, tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="no weights URL"):
        fetch_weights(load_card("imagebind_tiny"), tmp_path, progress=False)


def test_cli_fetch_prints_licence(server, tmp_path, capsys, monkeypatch):
    url, _ = server
    card = _card_for(url).to_dict()
    card_file = tmp_path / "mycard.json"
    card_file.write_text(json.dumps(card))
    assert cli_main(["fetch", str(card_file), "--dest", str(tmp_path / "dl"), "-q"]) == 0
    out = capsys.readouterr()
    assert "Test licence" in out.err and str(tmp_path / "dl" / "tiny.pth") in out.out
    assert (tmp_path / "dl" / "tiny.pth").read_bytes() == PAYLOAD


def test_fingerprint_names_the_weights_not_their_storage_dtype(tiny_state_dict, tmp_path):
    """An index built with the fp32 checkpoint must accept the same weights stored as fp16 or computed in bf16,
    and refuse other weights."""
    import bindkit

    base = bindkit.load_model("imagebind_tiny", weights=tiny_state_dict, modalities=["text", "imu"])
    out = bindkit.convert(tiny_state_dict, tmp_path / "fp16", card="imagebind_tiny", dtype="fp16", progress=False)
    half = bindkit.load_model("imagebind_tiny", weights=out, modalities=["text", "imu"])
    bf16 = bindkit.load_model("imagebind_tiny", weights=tiny_state_dict, modalities=["imu"], dtype="bf16")
    for m in ("text", "imu"):
        assert half.fingerprint(m) == base.fingerprint(m)
    assert bf16.fingerprint("imu") == base.fingerprint("imu")
    assert half.encoders["imu"].head.proj.weight.dtype == torch.float32  # computed in fp32, stored in fp16
    other = dict(tiny_state_dict)
    other["modality_heads.imu.3.weight"] = other["modality_heads.imu.3.weight"] + 1e-3
    changed = bindkit.load_model("imagebind_tiny", weights=other, modalities=["imu"])
    assert changed.fingerprint("imu") != base.fingerprint("imu")
