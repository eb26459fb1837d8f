"""The ``bindkit`` command: subcommands, help, the demo (main job) with and without weights."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from bindkit.cli import build_parser, main
from bindkit.cli.common import fraction, parse_bytes, positive_int

SUBCOMMANDS = ["demo", "convert", "fetch", "embed", "index", "search"]


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    text = parser.format_help()
    for name in SUBCOMMANDS:
        assert name in text
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "usage: bindkit " + name in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_demo_without_weights_says_how_to_get_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BINDKIT_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["demo", "--model", "imagebind_huge"]) == 1  # no terminal under pytest: no download either
    err = capsys.readouterr().err
    assert "bindkit fetch imagebind_huge" in err and "CC BY-NC 4.0" in err and "--model bindkit_toy" in err


def test_demo_embeds_indexes_and_searches_samples(samples_dir, fixture_dir, tmp_path):
    files = sorted((samples_dir / "image").glob("*.jpg")) + sorted((samples_dir / "audio").glob("*.wav"))
    cmd = [sys.executable, "-m", "bindkit", "demo", "--model", "imagebind_tiny",
           "--weights", str(fixture_dir / "state_dict.pt"), "--index", str(tmp_path / "idx"), *map(str, files)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "text x image" in run.stdout and "text x audio" in run.stdout and "image x audio" in run.stdout
    assert "cross-modal search over 6 indexed files" in run.stdout
    assert (tmp_path / "idx" / "manifest.json").is_file()


def _run(args: list[str], capsys) -> tuple[int, str]:
    """Exit status and stderr of ``bindkit ARGS`` run in this process. A crash with a library stack trace would
    surface here as an exception other than SystemExit, failing the test."""
    try:
        code = main(list(map(str, args)))
    except SystemExit as exc:  # argparse errors (2) and `raise SystemExit("error: ...")` (1)
        code = exc.code if isinstance(exc.code, int) else 1
        err = capsys.readouterr().err + (exc.code if isinstance(exc.code, str) else "")
        return code, err
    return code, capsys.readouterr().err


def test_misuse_without_weights_gives_one_line_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BINDKIT_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "folder").mkdir()
    card = tmp_path / "card.json"
    card.write_text("[1, 2]")
    out = tmp_path / "o.npy"
    cases = [
        (["embed", tmp_path / "folder", "--model", "imagebind_tiny", "--out", out], "is a directory"),
        (["embed", tmp_path / "nope.bin", "--model", "imagebind_tiny", "--out", out], "no such file"),
        (["embed", tmp_path / "folder", "--model", card, "--out", out], "must be a JSON object"),
        (["embed", "x.jpg", "--model", "imagebind_tiny", "--out", out, "-o", "image.size=big"], "--option for image"),
        (["embed", "x.jpg", "--model", "imagebind_tiny", "--out", out, "-o", "imu.fitt=crop_pad"], "valid options"),
        # the folder is checked before any weights are looked for (or downloaded)
        (["search", tmp_path / "folder", "--text", "a dog", "--model", "imagebind_tiny"], "not a bindkit index"),
        (["index", "build", tmp_path, "--out", tmp_path / "i", "--shard", "3/2"], "need 0 <= I < N"),
        (["index", "build", tmp_path, "--out", tmp_path / "i", "--shard", "abc"], "expected a shard as I/N"),
        (["index", "build", tmp_path, "--out", tmp_path / "i", "--batch-size", "0"], "at least 1"),
        (["index", "stats", tmp_path / "folder"], "not a bindkit index"),
        (["demo", "--model", "bogus"], "no encoder card named 'bogus'"),
    ]
    for args, words in cases:
        code, err = _run(args, capsys)
        assert code in (1, 2) and words in err, (args, code, err)
        assert "Traceback" not in err


def test_misuse_with_weights_gives_one_line_errors(tmp_path, samples_dir, fixture_dir, capsys):
    weights = ["--model", "imagebind_tiny", "--weights", fixture_dir / "state_dict.pt"]
    dog = samples_dir / "image" / "dog.jpg"
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (["embed", dog, *weights, "--out", tmp_path / "o.npy", "--device", "bogus"], "unknown device 'bogus'"),
        (["embed", dog, *weights, "--out", a_file / "o.npy"], "cannot create the folder"),
        (["index", "build", samples_dir / "image", "--out", a_file, *weights], "cannot create the index folder"),
        (["convert", dog, tmp_path / "converted"], "looks like a JPEG image"),
        (["convert", fixture_dir / "state_dict.pt", a_file], "cannot create the output directory"),
        (["demo", *weights, "--weights", dog], "looks like a JPEG image"),
    ]
    import torch

    if not torch.cuda.is_available():
        cases.append((["embed", dog, *weights, "--out", tmp_path / "o.npy", "--device", "cuda"],
                      "CUDA is not available"))
    for args, words in cases:
        code, err = _run(args, capsys)
        assert code == 1 and words in err, (args, code, err)
    assert main(list(map(str, ["index", "build", samples_dir / "image", "--out", tmp_path / "idx", "-q",
                               "--no-optimize", *weights]))) == 0
    capsys.readouterr()
    for args, words in [(["--weight", "audio=1"], "no --audio query input"), (["--weight", "text=x"], "KIND=NUMBER"),
                        (["-k", "0"], "at least 1")]:
        code, err = _run(["search", tmp_path / "idx", "--text", "a dog", *args], capsys)
        assert code in (1, 2) and words in err, (args, code, err)


def test_argument_types():
    assert parse_bytes("8G") == 8 << 30 and parse_bytes("512m") == 512 << 20 and parse_bytes("1.5GiB") == 3 << 29
    assert parse_bytes("1000") == 1000 and positive_int("3") == 3 and fraction("0.9") == 0.9
    for fn, bad in ((parse_bytes, "8X"), (parse_bytes, "1.2.3G"), (positive_int, "0"), (positive_int, "two"),
                    (fraction, "1.5"), (fraction, "0")):
        with pytest.raises(argparse.ArgumentTypeError):
            fn(bad)


def test_search_with_another_model_refuses_before_any_download(tmp_path, tiny_model):
    """`bindkit search IDX --model imagebind_huge` on an imagebind_tiny index: a one-line error naming both models,
    before the 4.5 GB download could start (no licence banner, no cache folder, no .part file). Run in a fresh
    process with an empty weights folder, a fresh HOME and cache, and a proxy that refuses connections, so a
    download attempt (the bug) fails fast and visibly instead of reaching the network."""
    import os

    import bindkit

    with bindkit.Index.create(tmp_path / "idx", model=tiny_model) as index:
        index.add(["a dog barking"], modality="text")
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "https_proxy")}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               BINDKIT_WEIGHTS=str(tmp_path / "weights"), https_proxy="http://127.0.0.1:9",
               http_proxy="http://127.0.0.1:9")
    (tmp_path / "weights").mkdir()
    card_file = Path(bindkit.__file__).resolve().parents[1] / "encoders" / "imagebind_huge.json"
    for model in ("imagebind_huge", str(card_file)):  # a card name or a card file
        run = subprocess.run([sys.executable, "-m", "bindkit", "search", str(tmp_path / "idx"), "--text", "a dog",
                              "--model", model], capture_output=True, text=True, timeout=300, env=env)
        assert run.returncode == 1, run.stderr
        assert "'imagebind_tiny'" in run.stderr and "'imagebind_huge'" in run.stderr, run.stderr
        assert "Traceback" not in run.stderr and "Downloading" not in run.stderr and "CC BY-NC" not in run.stderr
    assert not (tmp_path / "cache").exists() and not (tmp_path / "home").exists()
    assert list((tmp_path / "weights").iterdir()) == []
