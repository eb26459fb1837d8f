"""The ``bindkit`` command: subcommands, help, the demo (main job) with and without weights."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bindkit.cli import build_parser, main

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
    assert main(["demo", "--text", "a dog"]) == 0
    out = capsys.readouterr().out
    assert "bindkit fetch imagebind_huge" in out and "CC BY-NC 4.0" in out


def test_demo_embeds_indexes_and_searches_samples(samples_dir, fixture_dir, tmp_path):
    files = sorted((samples_dir / "image").glob("*.jpg")) + sorted((samples_dir / "audio").glob("*.wav"))
    cmd = [sys.executable, "-m", "bindkit", "demo", "--model", "imagebind_tiny",
           "--weights", str(fixture_dir / "state_dict.pt"), "--index", str(tmp_path / "idx"), *map(str, files)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "text x image" in run.stdout and "text x audio" in run.stdout and "image x audio" in run.stdout
    assert "cross-modal search over 6 indexed files" in run.stdout
    assert (tmp_path / "idx" / "manifest.json").is_file()
