"""What a new user meets first: `bindkit --version`, `bindkit models` / `bindkit.list_models()`, and consent before
a big download (the size and licence shown, y/N on a terminal, a refusal without one).

Commands run in fresh processes with an empty weights folder, HOME and cache, and a proxy that refuses every
connection, so that a download attempt (the bug these tests guard against) fails fast instead of reaching the
network, and the cache folder shows whether anything was written.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bindkit
from bindkit.cli import main

REPO = Path(__file__).resolve().parents[1]
REFUSED = "http://127.0.0.1:9"  # the discard port: nothing listens, a connection is refused at once


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "https_proxy")}
    env.update(PYTHONPATH=str(REPO), HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               BINDKIT_WEIGHTS=str(tmp_path / "none"), BINDKIT_DEVICE="cpu", OMP_NUM_THREADS="1",
               http_proxy=REFUSED, https_proxy=REFUSED, HTTP_PROXY=REFUSED, HTTPS_PROXY=REFUSED)
    env.pop("BINDKIT_ENCODERS", None)
    env.update(extra)
    return env


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    paths = []
    for i, colour in enumerate(("red", "blue")):
        paths.append(folder / f"{i}.jpg")
        Image.new("RGB", (32, 32), colour).save(paths[-1])
    return paths


@pytest.fixture
def no_huge_weights():
    from bindkit.weights import locate_weights

    found = locate_weights("imagebind_huge")
    if found is not None and str(found).startswith(str(REPO)):
        pytest.skip(f"this clone holds imagebind_huge weights ({found}); the tests need a machine without them")


def _nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "cache").exists() and not (tmp_path / "home").exists()


def test_embed_without_weights_or_terminal_refuses_and_downloads_nothing(tmp_path, photos, no_huge_weights):
    """`bindkit embed photos/*.jpg` (no --model: imagebind_huge) with no weights and stdin not a terminal."""
    run = subprocess.run([sys.executable, "-m", "bindkit", "embed", *map(str, photos), "--out", "x.npy"],
                         capture_output=True, text=True, timeout=300, env=_env(tmp_path), cwd=tmp_path,
                         stdin=subprocess.DEVNULL)
    assert run.returncode == 1, run.stderr
    err = " ".join(run.stderr.split())
    for words in ("No --model given", "--model bindkit_toy", "about 4.5 GiB", "CC BY-NC 4.0",
                  "Not downloading without a terminal", "`bindkit fetch imagebind_huge`", "--download"):
        assert words in err, (words, err)
    assert "Traceback" not in err and "Downloading https://" not in err
    assert not (tmp_path / "x.npy").exists()
    _nothing_written(tmp_path)


def test_on_a_terminal_bindkit_asks_and_no_means_no(tmp_path, photos, no_huge_weights):
    """The same command on a terminal (a pseudo-terminal): the size and licence, a y/N question; "n" refuses."""
    pty = pytest.importorskip("pty")
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "bindkit", "embed", *map(str, photos), "--model",
                             "imagebind_huge", "--out", "x.npy"], stdin=follower, stdout=follower, stderr=follower,
                            env=_env(tmp_path), cwd=tmp_path, close_fds=True)
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 300
    try:
        while b"[y/N]" not in seen:
            assert time.monotonic() < deadline and proc.poll() is None, seen.decode(errors="replace")
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                seen += os.read(leader, 4096)
        os.write(leader, b"n\n")
        assert proc.wait(timeout=120) == 1
        while select.select([leader], [], [], 0.5)[0]:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    text = " ".join(seen.decode(errors="replace").split())
    assert "about 4.5 GiB" in text and "CC BY-NC 4.0" in text and "Download them now? [y/N]" in text, text
    assert "not downloading the imagebind_huge weights" in text and "Traceback" not in text, text
    _nothing_written(tmp_path)


def test_download_flag_consents_and_goes_to_the_network(tmp_path, photos, no_huge_weights):
    """--download: no question; the licence is shown and the download starts (here it cannot reach the server)."""
    run = subprocess.run([sys.executable, "-m", "bindkit", "embed", str(photos[0]), "--model", "imagebind_huge",
                          "--download", "--out", "x.npy"], capture_output=True, text=True, timeout=300,
                         env=_env(tmp_path), cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert run.returncode == 1, run.stderr
    err = " ".join(run.stderr.split())
    assert "CC BY-NC 4.0" in err and "Downloading https://" in err and "cannot reach" in err, err
    assert "[y/N]" not in err and "Not downloading" not in err
    assert not list((tmp_path / "cache").rglob("*.pth"))


def test_version(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    try:
        expected = metadata.version("bindkit")
    except metadata.PackageNotFoundError:
        expected = bindkit.__version__
    assert capsys.readouterr().out.strip() == f"bindkit {expected}"


def test_models_lists_cards_and_model_directories(tmp_path, monkeypatch, capsys):
    weights = tmp_path / "w"
    shutil.copytree(REPO / "weights" / "bindkit_toy", weights / "my_model")  # a model directory no card names
    monkeypatch.setenv("BINDKIT_WEIGHTS", str(weights))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    models = {m.name: m for m in bindkit.list_models()}
    assert set(bindkit.list_encoders()) <= set(models)
    toy, huge, mine = models["bindkit_toy"], models["imagebind_huge"], models["my_model"]
    assert toy.runs_here and toy.dim == 128 and toy.license == "Apache-2.0" and toy.parameters > 1_000_000
    assert toy.modalities == ["vision", "text", "audio", "depth", "thermal", "imu"]
    assert mine.kind == "model directory" and mine.runs_here and mine.weights == str(weights / "my_model")
    if not huge.runs_here:
        assert huge.download.startswith("about 4.5 GiB") and "from https://" in huge.download
        assert huge.license == "CC-BY-NC-4.0"
    assert huge.parameters == 1_200_781_057 and huge.dim == 1024

    assert main(["models", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert listed["bindkit_toy"]["runs_here"] is True and listed["my_model"]["kind"] == "model directory"
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:2] == ["NAME", "RUNS"]
    assert any(line.startswith("bindkit_toy ") and " yes " in line for line in table.splitlines())

    with pytest.raises(bindkit.CardError, match=r"cards: .*bindkit_toy.*imagebind_huge.*model directories "
                                                r"\(pass the path\): .*my_model.*bindkit models"):
        bindkit.load_card("my_modle")
