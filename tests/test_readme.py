"""The examples of the README, docs/ (and weights/ and demos/ READMEs) work as written.

- Python blocks run, in order, as one session per page. They use ``imagebind_huge``, whose 4.5 GB weights a fresh
  clone does not have and tests never download; as the pages say, this test runs them with the ``imagebind_tiny``
  card (the reference fixture's weights, found through ``$BINDKIT_WEIGHTS``) in its place — the only change made
  to the code — and with the media files they name copied from the sample media into a fresh working directory.
  A block marked ``<!-- not run by tests/test_readme.py: why -->`` (a client of a running server) is compiled only.
- Bash blocks marked ``<!-- run by tests/test_readme.py ... -->`` (the README's quick start) run, in-process, in a
  fresh home whose ``~/media`` holds sample images and sounds.
- Every ``bindkit`` command line of every bash block is parsed by bindkit's own parser (a renamed option or a
  missing argument fails here), and survives the shell: no unquoted ``<``/``>`` (``--where year>=2020`` unquoted
  redirects to a file ``=2020``).
- The README stays short (the project guide: one screen that sells, docs/ for the rest), starts with the commands
  that set up a clone (the second being exactly what CI runs), and every relative link of the README and docs/
  resolves, anchors included."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md")), REPO / "weights" / "README.md", REPO / "demos" / "README.md"]
README_MAX_LINES = 250
FENCE = re.compile(r"^```(\w*)\s*$")
SKIP = "<!-- not run by tests/test_readme.py"  # a comment line right above a block the test leaves out (says why)
RUN = "<!-- run by tests/test_readme.py"  # ... right above a bash block the test runs
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CONTROL = {";", "&&", "||", "|", "&"}


@dataclass
class Block:
    page: Path
    start: int  # line number of the block's first line
    lang: str
    lines: list[str]
    note: str  # the comment line right above the fence, if any

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.start}"


def _name(page: Path) -> str:
    return str(page.relative_to(REPO))


def _fenced(page: Path) -> list[Block]:
    """Every fenced block of ``page``, with the comment line above it."""
    blocks, current, previous = [], None, ""
    for no, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        m = FENCE.match(line)
        if m and current is None:
            current = Block(page, no + 1, m.group(1), [], previous if previous.startswith("<!--") else "")
        elif line.strip() == "```" and current is not None:
            blocks.append(current)
            current = None
        elif current is not None:
            current.lines.append(line)
        previous = line.strip()
    assert current is None, f"{_name(page)}: a code block is never closed"
    return blocks


def _prose(page: Path) -> list[tuple[int, str]]:
    """(line number, line) of the lines outside code blocks."""
    inside = {no for b in _fenced(page) for no in range(b.start - 1, b.start + len(b.lines) + 1)}
    return [(no, line) for no, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1) if no not in inside]


def _python_source(page: Path) -> str:
    """The page's runnable python blocks as one program whose line numbers are the page's (tracebacks point there)."""
    lines: list[str] = []
    for b in _fenced(page):
        if b.lang == "python" and not b.note.startswith(SKIP):
            lines += [""] * (b.start - 1 - len(lines)) + b.lines
    return "\n".join(lines) + "\n" if lines else ""


RUNNABLE = [p for p in PAGES if _python_source(p)]


def _run_python(page: Path, tmp_path: Path, monkeypatch, fixture_dir: Path, samples_dir: Path) -> dict:
    source = _python_source(page).replace('"imagebind_huge"', '"imagebind_tiny"')
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copyfile(fixture_dir / "state_dict.pt", weights / "imagebind_tiny.pt")  # the card's weights file name
    monkeypatch.setenv("BINDKIT_WEIGHTS", str(weights))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    samples = {".jpg": samples_dir / "image", ".wav": samples_dir / "audio"}
    for name, ext in sorted(set(re.findall(r"""["']([\w-]+(\.jpg|\.wav))["']""", source))):
        sample = samples[ext] / name  # the sample of that name, else the first sample of that kind
        shutil.copyfile(sample if sample.is_file() else sorted(samples[ext].glob(f"*{ext}"))[0], work / name)
    monkeypatch.chdir(work)
    ns: dict = {}
    try:
        exec(compile(source, str(page), "exec"), ns)  # noqa: S102 - the page's own code
    finally:
        if ns.get("index") is not None:
            ns["index"].close()
    return ns


def test_readme_python_runs_as_written(tmp_path, monkeypatch, fixture_dir, samples_dir):
    assert _python_source(README).count('"imagebind_huge"') == 1, "the substitution expects one load_model call"
    ns = _run_python(README, tmp_path, monkeypatch, fixture_dir, samples_dir)
    # What the comments promise: ids for every item added, hits per requested modality.
    assert None not in ns["ids"] and len(ns["ids"]) == 2
    assert set(ns["hits"]) == {"image", "audio"} and all(ns["hits"].values())
    assert ns["sims"].shape == (2, 2)


@pytest.mark.parametrize("page", [p for p in RUNNABLE if p != README], ids=_name)
def test_docs_python_runs_as_written(page, tmp_path, monkeypatch, fixture_dir, samples_dir):
    _run_python(page, tmp_path, monkeypatch, fixture_dir, samples_dir)


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_python_blocks_not_run_still_compile(page):
    for b in _fenced(page):
        if b.lang == "python" and b.note.startswith(SKIP):
            compile("\n".join(b.lines) + "\n", b.where, "exec")


def _shell_lines(page: Path, marker: str | None = None) -> list[tuple[str, str]]:
    """(page:line, command line) of the bash blocks (only those under ``marker`` when given); lines continued with
    a trailing backslash are joined."""
    out: list[tuple[str, str]] = []
    for b in _fenced(page):
        if b.lang != "bash" or (marker is not None and not b.note.startswith(marker)):
            continue
        pending: tuple[int, str] | None = None
        for i, line in enumerate(b.lines):
            if pending is not None:
                line, no = pending[1] + " " + line.strip(), pending[0]
            else:
                no = b.start + i
            if line.rstrip().endswith("\\"):
                pending = (no, line.rstrip()[:-1])
                continue
            pending = None
            if line.strip():
                out.append((f"{_name(page)}:{no}", line))
    return out


def _tokens(line: str) -> list[str]:
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    return list(lex)


def _bindkit_argvs(line: str) -> list[list[str]]:
    """The argument lists of the ``bindkit`` commands on a shell line (``bindkit ...``, ``python -m bindkit ...``,
    ``torchrun ... -m bindkit ...``, after any ``VAR=value`` assignments)."""
    commands, current = [], []
    for t in _tokens(line) + [";"]:
        if t in CONTROL:
            commands.append(current)
            current = []
        else:
            current.append(t)
    argvs = []
    for cmd in commands:
        while cmd and re.match(r"^[A-Za-z_]\w*=", cmd[0]):
            cmd = cmd[1:]
        if cmd[:1] == ["bindkit"]:
            argvs.append(cmd[1:])
        elif cmd and cmd[0] in ("python", "python3", "torchrun") and "bindkit" in cmd:
            i = cmd.index("bindkit")
            if cmd[i - 1] == "-m":
                argvs.append(cmd[i + 1:])
    return argvs


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_shell_examples_are_quoted_for_the_shell(page):
    from bindkit.index.where import parse_cli_filters

    for where, line in _shell_lines(page):
        tokens = _tokens(line)
        redirects = [t for t in tokens if t[0] in "<>"]
        assert not redirects, (f"{where}: unquoted {redirects[0]!r} is a shell redirection; quote the "
                               f"argument (--where 'year>=2020'): {line}")
        for flag, value in zip(tokens, tokens[1:]):
            if flag == "--where":  # what the command receives is a filter it can read
                parse_cli_filters([value])


#: A file's contents (base64 of media) substituted into a command's arguments: past ~96 KB the shell cannot start
#: the command ("Argument list too long"). Bodies go through a file: ``curl --data-binary @body.json``.
FILE_IN_ARGS = re.compile(r"\$\(\s*(?:base64|cat|xxd|od)\b|`\s*(?:base64|cat)\b")


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_shell_examples_send_media_from_files_not_arguments(page):
    for where, line in _shell_lines(page):
        assert not FILE_IN_ARGS.search(line), (f"{where}: a file's contents put on the command line fail past "
                                               f"~96 KB (Argument list too long); write the request body to a file "
                                               f"and send it with curl --data-binary @body.json: {line}")


@pytest.mark.parametrize("line", ["""curl -d '{"images": ["'"$(base64 -w0 dog.jpg)"'"]}' localhost:8000/vectorize""",
                                  "curl -d \"$(cat body.json)\" localhost:8000/vectorize"])
def test_the_media_argument_check_catches_substitutions(line):
    assert FILE_IN_ARGS.search(line)


def test_a_where_example_is_checked():
    assert any("--where" in _tokens(line) for p in PAGES for _, line in _shell_lines(p)), \
        "no --where example found: has the documentation changed?"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_bindkit_commands_parse(page):
    from bindkit.cli import build_parser

    parser = build_parser()
    for where, line in _shell_lines(page):
        for argv in _bindkit_argvs(line):
            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    parser.parse_args(argv)
            except SystemExit as exc:
                if exc.code == 0:  # --version and --help print and exit 0: they parse
                    continue
                pytest.fail(f"{where}: `bindkit {' '.join(argv)}` does not parse (exit {exc.code}): "
                            f"{err.getvalue().strip().splitlines()[-1:]}")


@pytest.mark.parametrize("line", ["bindkit search i --where year>=2020", "bindkit search i --where 'a<b' >out"])
def test_the_quoting_check_catches_redirections(line):
    assert any(t[0] in "<>" for t in _tokens(line))


@pytest.mark.parametrize("line, argvs", [
    ("BINDKIT_DEVICE=cpu bindkit index stats i;  bindkit index compact i", [["index", "stats", "i"],
                                                                          ["index", "compact", "i"]]),
    ("torchrun --nproc_per_node=2 -m bindkit train a.csv --out m && bindkit eval m --json",
     [["train", "a.csv", "--out", "m"], ["eval", "m", "--json"]]),
    ("curl -s localhost:8000/search -d '{\"k\": 5}'", []),
])
def test_bindkit_commands_are_found_on_a_line(line, argvs):
    assert _bindkit_argvs(line) == argvs


def test_the_command_check_catches_a_wrong_option():
    from bindkit.cli import build_parser

    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        build_parser().parse_args(_bindkit_argvs("bindkit search idx --no-such-option")[0])


def test_readme_quick_start_runs(tmp_path, monkeypatch, samples_dir, capsys):
    """The README's own-folder quick start, as a newcomer types it: ``~/media`` is a folder of sample images and
    sounds, the synthetic world is generated, indexed and searched with bindkit_toy."""
    from bindkit.cli import main

    home = tmp_path / "home"
    media = home / "media"
    media.mkdir(parents=True)
    for f in [*sorted((samples_dir / "image").glob("*.jpg")), *sorted((samples_dir / "audio").glob("*.wav"))]:
        shutil.copyfile(f, media / f.name)
    assert (media / "dog.jpg").is_file(), "the quick start queries ~/media/dog.jpg"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    lines = _shell_lines(README, RUN)
    assert len(lines) >= 6, "the README's quick start blocks are no longer marked to run"
    for where, line in lines:
        for argv in _bindkit_argvs(line):
            argv = [os.path.expanduser(t) for t in argv]
            rc = main(argv)
            out = capsys.readouterr().out
            assert rc == 0, f"{where}: `bindkit {' '.join(argv)}` exited {rc}:\n{out}"
            if argv[0] == "search":
                counts = [int(n) for n in re.findall(r"^== \w+ \((\d+) hits?\)", out, re.M)]
                assert counts and all(counts), f"{where}: no hits:\n{out}"


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES}): move detail to docs/"


def test_readme_starts_with_the_set_up_commands_ci_runs():
    first = _fenced(README)[0]
    commands = [line.split("#")[0].strip() for line in first.lines]
    assert commands == ["make demo", "make test"], f"{first.where}: the README must open with make demo / make test"
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if line.strip() and not line.startswith("#")]
    assert ci[-1] == "make test", ".ci/run must end with the README's test command, `make test`"
    second = _fenced(README)[1]
    assert second.lines[0].startswith("pip install bindkit"), f"{second.where}: then a pip install line"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for _, line in _prose(page) if re.match(r"^#{1,6} ", line)}


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_relative_links_resolve(page):
    for no, line in _prose(page):
        for target in LINK.findall(line):
            if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            assert dest.exists(), f"{_name(page)}:{no}: link to {target}: {dest} does not exist"
            if anchor and dest.suffix == ".md":
                assert anchor in _anchors(dest), f"{_name(page)}:{no}: no heading #{anchor} in {path or 'this page'}"


def test_every_docs_page_is_linked_from_the_readme_and_the_index():
    readme = set(LINK.findall(README.read_text(encoding="utf-8")))
    index = set(LINK.findall((DOCS / "index.md").read_text(encoding="utf-8")))
    for page in DOCS.glob("*.md"):
        if page.name != "index.md":
            assert page.name in {t.partition("#")[0] for t in index}, f"docs/index.md does not link {page.name}"
    linked = {t.partition("#")[0] for t in readme if t.startswith("docs/")}
    assert "docs/index.md" in linked


@pytest.mark.parametrize("target, slug", [("The real model: imagebind_huge", "the-real-model-imagebind_huge"),
                                          ("bf16 autocast (opt-in)", "bf16-autocast-opt-in"),
                                          ("Inputs: files in, batches out", "inputs-files-in-batches-out")])
def test_anchors_are_githubs(target, slug):
    assert _slug(target) == slug
