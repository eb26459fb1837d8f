"""The README's examples work as written: its python blocks run (in order, as one session) and its shell
examples survive the shell (no unquoted ``<``/``>``: ``--where year>=2020`` unquoted redirects to a file ``=2020``).

The python blocks use ``imagebind_huge``, whose 4.5 GB weights a fresh clone does not have and tests never
download; as the README says, this test runs them with the ``imagebind_tiny`` card (the reference fixture's
weights, found through ``$BINDKIT_WEIGHTS``) in its place — the only change made to the code — and with the
media files they name copied from the sample media into a fresh working directory."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")


SKIP = "<!-- not run by tests/test_readme.py"  # a comment line right above a block the test leaves out (says why)


def _blocks(lang: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of each fenced block of ``lang`` in the README, but those marked ``SKIP``."""
    blocks, current, start, previous = [], None, 0, ""
    for no, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        m = FENCE.match(line)
        if m and current is None:
            current, start, kind = [], no + 1, m.group(1)
            if previous.startswith(SKIP):
                kind = "skipped"
        elif line.strip() == "```" and current is not None:
            if kind == lang:
                blocks.append((start, current))
            current = None
        elif current is not None:
            current.append(line)
        previous = line.strip()
    return blocks


def _python_source() -> str:
    """The python blocks as one program whose line numbers are the README's (tracebacks point at the README)."""
    lines: list[str] = []
    for start, block in _blocks("python"):
        lines += [""] * (start - 1 - len(lines)) + block
    return "\n".join(lines) + "\n"


def test_python_examples_run_as_written(tmp_path, monkeypatch, fixture_dir, samples_dir):
    source = _python_source()
    assert source.count('"imagebind_huge"') == 1, "the substitution below expects one load_model call"
    source = source.replace('"imagebind_huge"', '"imagebind_tiny"')
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copyfile(fixture_dir / "state_dict.pt", weights / "imagebind_tiny.pt")  # the card's weights file name
    monkeypatch.setenv("BINDKIT_WEIGHTS", str(weights))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    samples = {".jpg": samples_dir / "image", ".wav": samples_dir / "audio"}
    named = sorted(set(re.findall(r"""["']([\w-]+(\.jpg|\.wav))["']""", source)))
    assert named, "the examples name no media files"
    for name, ext in named:  # the sample of that name, else the first sample of that kind
        sample = samples[ext] / name
        shutil.copyfile(sample if sample.is_file() else sorted(samples[ext].glob(f"*{ext}"))[0], work / name)
    monkeypatch.chdir(work)
    ns: dict = {}
    try:
        exec(compile(source, str(README), "exec"), ns)  # noqa: S102 - the README's own code
    finally:
        if ns.get("index") is not None:
            ns["index"].close()
    # What the comments promise: ids for every item added, hits per requested modality.
    assert None not in ns["ids"] and len(ns["ids"]) == 2
    assert set(ns["hits"]) == {"image", "audio"} and all(ns["hits"].values())


def _shell_lines() -> list[tuple[int, str]]:
    """(line number, command) of the bash blocks; lines continued with a trailing backslash are joined."""
    out: list[tuple[int, str]] = []
    for start, block in _blocks("bash"):
        pending: tuple[int, str] | None = None
        for i, line in enumerate(block):
            if pending is not None:
                line, no = pending[1] + " " + line.strip(), pending[0]
            else:
                no = start + i
            if line.rstrip().endswith("\\"):
                pending = (no, line.rstrip()[:-1])
                continue
            pending = None
            if line.strip():
                out.append((no, line))
    return out


def test_shell_examples_are_quoted_for_the_shell():
    from bindkit.index.where import parse_cli_filters

    wheres = 0
    for no, line in _shell_lines():
        lex = shlex.shlex(line, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        tokens = list(lex)
        redirects = [t for t in tokens if t[0] in "<>"]
        assert not redirects, (f"README.md:{no}: unquoted {redirects[0]!r} is a shell redirection; quote the "
                               f"argument (--where 'year>=2020'): {line}")
        for flag, value in zip(tokens, tokens[1:]):
            if flag == "--where":  # what the command receives is a filter it can read
                parse_cli_filters([value])
                wheres += 1
    assert wheres, "no --where example found: has the README changed?"


@pytest.mark.parametrize("line", ["bindkit search i --where year>=2020", "bindkit search i --where 'a<b' >out"])
def test_the_quoting_check_catches_redirections(line):
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    assert any(t[0] in "<>" for t in lex)
