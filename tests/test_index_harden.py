"""Index rough edges from the adversarial pass (issue 19), each with the defect it guards against:
merge's temporary folder (unpredictable, never through a planted symlink, cleaned after a killed merge),
close() while other threads use the index, --checksum rebuilds, a read-only index given to `index build --out`,
and manifest rows named by the line they start on (unterminated CSV quotes, long CSV cells, JSONL)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

from bindkit.errors import IndexClosedError, InputError
from bindkit.index import Index
from bindkit.index.manifests import manifest_rows
from bindkit.index.merge import merge

from index_helpers import PYTHON, REPO, env
from tiny_random import save_weights, text_index, text_model

ALL = ("vision", "text", "audio", "depth", "thermal", "imu")


# ---- merge -----------------------------------------------------------------------------------------------------
@pytest.fixture()
def parts(tmp_path):
    a = text_index(tmp_path / "a", ["a dog", "a cat"])
    b = text_index(tmp_path / "b", ["a car", "a boat"])
    return [a, b]


def test_merge_never_writes_through_a_planted_symlink(tmp_path, parts):
    out = tmp_path / "merged"
    victim = tmp_path / "victim"
    victim.mkdir()
    # the name today's merge would use, planted before it runs
    os.symlink(victim, tmp_path / f".merged.merging-{os.getpid()}")
    merge(parts, out, optimize=False)
    assert out.is_dir() and not out.is_symlink()
    assert list(victim.iterdir()) == []  # nothing written where the symlink points
    assert (tmp_path / f".merged.merging-{os.getpid()}").is_symlink()  # and the planted link left alone
    with Index.open(out) as ix:
        assert len(ix) == 4
    assert oct(out.stat().st_mode & 0o777) != oct(0o700)  # an ordinary folder, not mkdtemp's private mode


def test_a_killed_merges_folder_is_cleaned_by_the_next_merge(tmp_path, parts):
    dead_pid = 2**22 + 1  # above Linux's largest pid: no such process
    stale = [tmp_path / f".merged.merging-{dead_pid}-x1y2z3", tmp_path / f".merged.merging-{dead_pid}"]
    for d in stale:
        d.mkdir()
        (d / "meta.sqlite").write_bytes(b"half written")
    alive = tmp_path / f".merged.merging-{os.getpid()}-live"  # a merge still running (this process)
    alive.mkdir()
    merge(parts, tmp_path / "merged", optimize=False)
    assert not any(d.exists() for d in stale)
    assert alive.is_dir()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".merged.merging-") and p != alive]


# ---- close() while other threads use the index --------------------------------------------------------------
def test_close_while_another_thread_is_inside_a_method_raises_index_closed_error(tmp_path):
    path = text_index(tmp_path / "index", ["a dog", "a cat"])
    ix = Index.open(path, model=text_model())
    errors: list[BaseException] = []

    def use() -> None:
        try:
            len(ix)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    with ix._lock:  # the worker gets past the closed-check, then waits for the lock we hold
        worker = threading.Thread(target=use)
        worker.start()
        while sys._current_frames().get(worker.ident) is None or \
                sys._current_frames()[worker.ident].f_code.co_name != "__len__":
            assert worker.is_alive()
        ix.close()  # the lock is re-entrant: this thread closes while the worker waits inside __len__
    worker.join(60)
    assert len(errors) == 1 and isinstance(errors[0], IndexClosedError), errors
    assert "closed by another thread" in str(errors[0])


def test_close_under_concurrent_searches_gives_only_index_closed_errors(tmp_path):
    path = text_index(tmp_path / "index", [f"text {i}" for i in range(20)])
    ix = Index.open(path, model=text_model())
    q = np.ones(ix.dim, np.float32)
    errors: list[BaseException] = []
    started = threading.Barrier(5)

    def hammer() -> None:
        started.wait()
        while True:
            try:
                ix.search(vector=q, k=3)
                ix.get([1, 2, 3]) if hasattr(ix, "get") else len(ix)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait()
    ix.close()
    for t in threads:
        t.join(60)
    assert len(errors) == 4 and all(isinstance(e, IndexClosedError) for e in errors), errors


# ---- --checksum ------------------------------------------------------------------------------------------------
def test_checksum_rebuild_catches_a_file_rewritten_with_size_and_mtime_restored(tmp_path):
    from bindkit.index.build import build

    folder = tmp_path / "notes"
    folder.mkdir()
    note = folder / "a.txt"
    note.write_text("a red car")
    (folder / "b.txt").write_text("a blue boat")
    model = text_model()
    out = tmp_path / "index"
    build([folder], out, model, optimize=False, progress=False)
    st = note.stat()
    note.write_text("a dog ran")  # the same length
    os.utime(note, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert note.stat().st_size == st.st_size and note.stat().st_mtime_ns == st.st_mtime_ns
    report = build([folder], out, model, optimize=False, progress=False)
    assert report["counts"]["embedded"] == 0  # size + mtime trusted: the stale vector stays (as rsync does)
    report = build([folder], out, model, optimize=False, progress=False, checksum=True)
    assert report["counts"]["embedded"] == 1 and report["counts"]["unchanged"] == 1
    with Index.open(out, model=model) as ix:
        assert ix.search(text="a dog ran", k=1)["text"][0].score > 0.999


def test_cli_index_build_has_checksum():
    from bindkit.cli import build_parser

    args = build_parser().parse_args(["index", "build", "x", "--out", "y", "--checksum"])
    assert args.checksum is True


# ---- a read-only index as `index build --out` ----------------------------------------------------------------
def test_index_build_into_a_read_only_index_is_refused_at_once():
    from test_index_readonly import _read_only_view

    base = Path(tempfile.mkdtemp(prefix="bindkit-ro-build-"))
    base.chmod(0o755)
    try:
        with Index.create(base / "index", model=text_model(ALL)) as ix:  # `index build` loads every encoder
            ix.add(["a dog"], modality="text")
        path = base / "index"
        weights = save_weights(base / "tiny.pt", ALL)
        manifest = base / "texts.csv"
        manifest.write_text("text\n" + "".join(f"text number {i}\n" for i in range(40)))
        for p in (base, manifest, weights):
            p.chmod(0o755 if p.is_dir() else 0o644)
        with _read_only_view(path, "folder") as prefix:
            r = subprocess.run(prefix + [PYTHON, "-m", "bindkit", "index", "build", str(manifest), "--out", str(path),
                                         "--model", "imagebind_tiny", "--weights", str(weights), "-q"],
                               capture_output=True, text=True, env=env(HOME=str(base)), cwd=REPO, timeout=300)
        assert r.returncode == 1, r.stderr[-3000:]
        assert "read-only" in r.stderr and "--out" in r.stderr and "Traceback" not in r.stderr
        assert "retrying" not in r.stderr and "Errno 30" not in r.stderr  # refused before any item, not per item
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ---- manifests -------------------------------------------------------------------------------------------------
def _rows(path: Path) -> list:
    return list(manifest_rows(path))


def test_csv_unterminated_quote_is_refused_naming_its_line(tmp_path):
    path = tmp_path / "m.csv"
    lines = ["text,tag"] + [f"caption {i},t{i}" for i in range(2, 9)] + ['"never closed,t9'] + \
        [f"caption {i},t{i}" for i in range(10, 20)]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as exc:
        _rows(path)
    assert "line 9:" in str(exc.value) and "never closed" in str(exc.value)


def test_csv_cell_over_128_kib_is_read_and_lines_stay_right(tmp_path):
    path = tmp_path / "m.csv"
    long = "word " * 40_000  # 200 KB, over the csv module's default field limit of 128 KiB
    path.write_text(f'text,tag\nshort,a\n"{long}",b\nlast,"c"\n')
    rows = _rows(path)
    assert [w.rsplit(":", 1)[1] for w, _, _ in rows] == ["2", "3", "4"]
    assert len(rows[1][1]["text"]) == len(long) and rows[2][1]["tag"] == "c"


def test_jsonl_bad_line_is_reported_with_its_own_line_number(tmp_path):
    from bindkit.evaluate import EvalError, read_table
    from bindkit.train.data import ManifestError, _read_table

    path = tmp_path / "m.jsonl"
    lines = [json.dumps({"image": f"i{i}.png", "text": f"t{i}"}) for i in range(50)] + ["{oops"] + \
        [json.dumps({"image": "x.png", "text": "x"})]
    path.write_text("\n".join(lines) + "\n")
    bad = [(w, p) for w, row, p in _rows(path) if row is None]
    assert len(bad) == 1 and bad[0][0].endswith(":51")
    with pytest.raises(ManifestError, match=r"line 51: not valid JSON \(.* at column 2\)"):
        _read_table(path)
    with pytest.raises(EvalError, match="line 51: not valid JSON"):
        read_table(path)


def test_train_and_eval_csv_readers_name_an_unterminated_quote(tmp_path):
    from bindkit.evaluate import EvalError, read_table
    from bindkit.train.data import ManifestError, _read_table

    path = tmp_path / "pairs.csv"
    path.write_text('image,text\na.png,one\nb.png,"two\nc.png,three\n')
    with pytest.raises(ManifestError, match="line 3: a quoted field opened on this row is never closed"):
        _read_table(path)
    with pytest.raises(EvalError, match="line 3"):
        read_table(path)
