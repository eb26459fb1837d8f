"""One CLI vocabulary across every ``bindkit`` subcommand (bindkit.cli.common's docstring, docs/cli.md).

The first tests walk every parser :func:`bindkit.cli.build_parser` makes, nested ones included (``index build``,
``datasets synthetic``), so a new command or option is held to the vocabulary without being listed here; the
lists below are the documented exceptions, each with its reason. The last ones run old spellings and ``embed`` on
a folder for real (bindkit_toy, tiny inputs)."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from bindkit.cli import build_parser, main
from bindkit.cli.common import DeprecatedAlias

#: Spellings no command shows any more (the old ones live on as hidden aliases).
BANNED = {"--dest": "--out", "--num-workers": "--workers", "--decode-workers": "--workers",
          "--output": "--out", "--out-dir": "--out", "--threads-decode": "--workers"}
#: Options that name a model without being called --model, and why (docs/cli.md says the same).
MODEL_EXCEPTIONS = {
    ("train", "--card"): "an architecture to train from scratch: a card, no weights",
    ("train", "--init"): "the model a run continues from; the run's output is a new model",
    ("distill", "--teacher"): "two models in one command: the teacher whose space the student serves",
    ("distill", "--student-card"): "the student's architecture: a card, no weights",
    ("eval", "--teacher"): "distill: the teacher the student MODEL is compared with",
    ("convert", "--card"): "the card written beside the converted weights; nothing is loaded",
}
#: Spellings that would name a model (or an architecture card) in some command.
MODEL_LIKE = {"--model", "--card", "--init", "--teacher", "--student-card", "--student", "--checkpoint"}
#: Commands that load a model to do their work: each takes --model.
LOADS_A_MODEL = {"embed", "index build", "search", "serve", "eval", "bench", "demo"}
#: Commands that write files or folders: each names its output --out.
WRITES = {"embed", "index build", "index merge", "train", "distill", "datasets synthetic", "convert", "fetch", "demo"}
#: --index names an index a command reads (search's positional DIR does too); never an output.
INDEX_IS_INPUT = {"serve", "eval"}
#: Commands that print no result, so have no -q/--json, and why.
NO_RESULT = {"serve": "a server: it logs, it prints no result", "demo": "a guided tour of bindkit for a person"}


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(name, parser) of every command that runs something: the leaves of the subcommand tree."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs and path:
        yield " ".join(path), parser
    for sub in subs:
        seen = set()
        for name, child in sub.choices.items():
            if id(child) not in seen:
                seen.add(id(child))
                yield from _commands(child, (*path, name))


COMMANDS = dict(_commands(build_parser()))


def _visible(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.help is not argparse.SUPPRESS]


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in _visible(parser) for s in a.option_strings}


def test_the_walk_finds_every_command():
    assert {"embed", "index build", "index merge", "index stats", "search", "serve", "eval", "bench", "train",
            "distill", "convert", "fetch", "demo", "datasets synthetic"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_vocabulary(name):
    parser = COMMANDS[name]
    options = _options(parser)
    problems = []
    for flag, new in BANNED.items():
        if flag in options:
            problems.append(f"shows {flag}; the vocabulary says {new}")
    for flag in options:
        if "workers" in flag and flag != "--workers":
            problems.append(f"{flag}: worker counts are --workers")
        if flag in MODEL_LIKE and flag != "--model" and (name, flag) not in MODEL_EXCEPTIONS:
            problems.append(f"{flag} names a model: call it --model (or list it in MODEL_EXCEPTIONS with why)")
    if name in LOADS_A_MODEL and "--model" not in options:
        problems.append("loads a model but has no --model")
    if name in WRITES and "--out" not in options:
        problems.append("writes a file or folder but has no --out")
    if "--index" in options and name not in INDEX_IS_INPUT:
        problems.append("--index: an output is --out; --index only names an index a command reads")
    for a in _visible(parser):
        if not a.option_strings and (a.metavar or a.dest).upper() in ("OUT", "OUT_DIR", "DEST"):
            problems.append(f"positional {a.metavar or a.dest}: outputs are --out")
    if "--modality" in options:  # the kind of the inputs: one value
        a = options["--modality"]
        if a.metavar != "KIND" or not isinstance(a, argparse._StoreAction):
            problems.append(f"--modality {a.metavar}: --modality is one KIND of input; kinds to return or load "
                            "are --modalities LIST")
    if "--modalities" in options and options["--modalities"].metavar != "LIST":
        problems.append("--modalities takes a comma-separated LIST")
    if name not in NO_RESULT:
        for flag in ("-q", "--quiet", "--json"):
            if flag not in options:
                problems.append(f"prints a result but has no {flag}")
        if "-q" in options and options["-q"] is not options.get("--quiet"):
            problems.append("-q and --quiet must be one option")
    assert not problems, f"bindkit {name}: " + "; ".join(problems)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_hidden_aliases_stay_hidden_and_share_the_new_option(name):
    parser = COMMANDS[name]
    text = parser.format_help()
    for a in parser._actions:
        if not isinstance(a, DeprecatedAlias):
            continue
        assert a.help is argparse.SUPPRESS
        if not a.option_strings:  # an old positional output: hidden from the usage line too, its option shown
            assert a.metavar not in parser.format_usage(), (name, a.metavar)
            assert a.preferred.split()[0] in _options(parser), (name, a.preferred)
            continue
        for flag in a.option_strings:
            assert f"{flag} " not in text and f"{flag}," not in text and f"{flag}\n" not in text, (name, flag)
        new = [b for b in _visible(parser) if b.dest == a.dest and a.preferred in b.option_strings]
        assert len(new) == 1, f"bindkit {name}: alias {a.option_strings} has no visible option {a.preferred}"
        b = new[0]
        assert (a.nargs, a.type, a.choices, a.const) == (b.nargs, b.type, b.choices, b.const), (name, a, b)
        assert isinstance(a, type(b))


# old spelling -> new spelling, as whole command lines that parse (nothing runs)
ALIASES = [
    (["embed", "x.jpg", "--out", "o.npy", "--num-workers", "3"], ["embed", "x.jpg", "--out", "o.npy", "--workers", "3"]),
    (["serve", "--decode-workers", "2"], ["serve", "--workers", "2"]),
    (["fetch", "imagebind_huge", "--dest", "dl"], ["fetch", "imagebind_huge", "--out", "dl"]),
    (["demo", "--index", "keep"], ["demo", "--out", "keep"]),
    (["search", "idx", "--text", "a", "--modality", "image,audio"],
     ["search", "idx", "--text", "a", "--modalities", "image,audio"]),
    (["index", "optimize", "idx", "--modality", "image"], ["index", "optimize", "idx", "--modalities", "image"]),
    (["convert", "a.pth", "--out", "o", "--modality", "text", "--modality", "imu"],
     ["convert", "a.pth", "--out", "o", "--modalities", "text", "--modalities", "imu"]),
]


@pytest.mark.parametrize("old,new", ALIASES, ids=[" ".join(o[:2]) for o, _ in ALIASES])
def test_old_spelling_parses_to_the_same_value_with_a_note(old, new, capsys):
    parser = build_parser()
    got_new = vars(parser.parse_args(new))
    assert "deprecated" not in capsys.readouterr().err
    got_old = vars(parser.parse_args(old))
    err = capsys.readouterr().err
    flag = next(a for a in old if a not in new)
    assert got_old == got_new
    assert err.count("\n") == 1 and flag in err and "deprecated" in err and "use --" in err, err


def test_the_exact_documented_command_shapes_parse():
    parser = build_parser()
    a = parser.parse_args(["train", "image_text.csv", "--card", "bindkit_small", "--out", "m1"])
    assert (a.manifests, a.card, a.init, a.out) == (["image_text.csv"], "bindkit_small", None, "m1")
    a = parser.parse_args(["train", "image_audio.csv", "--init", "m1", "--freeze", "image,text", "--out", "m2"])
    assert (a.manifests, a.init, a.freeze, a.out) == (["image_audio.csv"], "m1", ["image", "text"], "m2")
    a = parser.parse_args(["eval", "m2", "--zero-shot", "audio_test.csv", "--classes", "labels.json",
                           "--templates", "{}", "the digit {}", "--json"])
    assert (a.model_arg, a.zero_shot, a.classes, a.templates, a.json) == (
        "m2", "audio_test.csv", "labels.json", ["{}", "the digit {}"], True)


def _world(tmp_path: Path) -> Path:
    """A folder of a few tiny synthetic-world files (image, audio, IMU), plus a file of no known kind."""
    from bindkit.cli import main as cli

    assert cli(["datasets", "synthetic", "--out", str(tmp_path / "world"), "--n", "2", "--n-test", "0",
                "--n-compositional", "0", "--size", "32", "--audio-seconds", "0.5", "--imu-seconds", "1", "-q"]) == 0
    folder = tmp_path / "photos"
    for kind, ext in (("image", "png"), ("audio", "wav")):
        src = sorted((tmp_path / "world" / "train" / kind).glob(f"*.{ext}"))[0]
        (folder / kind).mkdir(parents=True)
        (folder / kind / src.name).write_bytes(src.read_bytes())
    (folder / "notes.xyz").write_text("not media")
    (folder / ".hidden.png").write_bytes(b"not a png")
    return folder


def test_embed_walks_a_folder_like_index_build(tmp_path, capsys, monkeypatch):
    folder = _world(tmp_path)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    rc = main(["embed", "photos", "--model", "bindkit_toy", "--out", "e.npy", "--workers", "1", "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    report = json.loads(captured.out)
    files = sorted(str(p.relative_to(tmp_path)) for p in folder.rglob("*.*") if p.suffix in (".png", ".wav")
                   and not p.name.startswith("."))
    assert report["files"] == report["embedded"] == 2 and report["errors"] == []
    assert report["ignored"] == [str(Path("photos") / "notes.xyz")]
    assert (tmp_path / "e.paths.txt").read_text().splitlines() == files  # walked in order, under the folder given
    emb = np.load(tmp_path / "e.npy")
    assert emb.shape == (2, report["dim"]) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    # the same files given one by one embed to the same vectors
    assert main(["embed", *files, "--model", "bindkit_toy", "--out", "f.npy", "-q"]) == 0
    assert np.allclose(np.load(tmp_path / "f.npy"), emb, atol=1e-5)
    # a folder with nothing of a known kind fails with the reason (and exit status 1), as before
    (tmp_path / "empty").mkdir()
    assert main(["embed", "empty", "--model", "bindkit_toy", "--out", "g.npy", "-q"]) == 1


def test_an_old_spelling_runs_and_says_what_replaces_it(tmp_path, capsys, monkeypatch):
    """A real run with an old spelling: the deprecation note on stderr, stdout unchanged (still valid JSON)."""
    folder = _world(tmp_path)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["embed", str(folder / "image"), "--model", "bindkit_toy", "--out", "e.npy", "--num-workers", "1",
                 "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["embedded"] == 1
    assert "--num-workers is deprecated" in captured.err and "use --workers" in captured.err
    assert main(["index", "build", str(folder), "--model", "bindkit_toy", "--out", "idx", "-q", "--no-optimize"]) == 0
    capsys.readouterr()
    assert main(["search", "idx", "--text", "a red star", "--modality", "audio", "--json"]) == 0
    captured = capsys.readouterr()
    assert list(json.loads(captured.out)) == ["audio"]  # --modality still selects the result kinds
    assert "--modality is deprecated" in captured.err and "use --modalities" in captured.err
    # the positional output of convert: the note, and the converted folder
    assert main(["convert", str(tmp_path / "e.npy"), str(tmp_path / "conv"), "-q"]) == 1  # not a checkpoint
    err = capsys.readouterr().err
    assert "the positional OUT_DIR is deprecated" in err and "use --out DIR" in err and "error:" in err
    with pytest.raises(SystemExit) as exc:
        main(["convert", "a.pth"])
    assert exc.value.code == 2 and "required: --out" in capsys.readouterr().err


DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def test_docs_cli_md_lists_every_exception_and_old_spelling():
    text = DOC.read_text(encoding="utf-8")
    for (name, flag) in MODEL_EXCEPTIONS:
        assert f"`{name} {flag}" in text, f"docs/cli.md does not explain `{name} {flag}`"
    for name, parser in COMMANDS.items():
        for a in parser._actions:
            if isinstance(a, DeprecatedAlias):
                old = a.option_strings[0] if a.option_strings else a.metavar
                assert old in text, f"docs/cli.md does not list the old spelling {old} of bindkit {name}"


def test_docs_cli_md_examples_use_the_current_spellings(capsys):
    lines = [line for line in DOC.read_text(encoding="utf-8").splitlines() if line.startswith("bindkit ")]
    assert lines
    for line in lines:
        build_parser().parse_args(shlex.split(line.split("#")[0])[1:])
        assert "deprecated" not in capsys.readouterr().err, line
