"""The consolidation's yardstick: no function in the training and distillation code longer than
``MAX_FUNCTION_LINES`` (``.ci/code_shape.py`` prints the longest functions and largest files of any tree)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _code_shape():
    spec = importlib.util.spec_from_file_location("code_shape", ROOT / ".ci" / "code_shape.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_long_functions_in_train_and_distill():
    shape = _code_shape()
    files = shape.python_files([ROOT / "bindkit" / "train", ROOT / "bindkit" / "distill"])
    spans = sorted((s for f in files for s in shape.functions(f, ROOT)), reverse=True)
    assert spans, "no functions found: did bindkit/train move?"
    too_long = [s for s in spans if s.lines > shape.MAX_FUNCTION_LINES]
    assert not too_long, (f"functions over {shape.MAX_FUNCTION_LINES} lines (split them into phases, as "
                          f"bindkit/train/run.py does): {too_long}")


def test_code_shape_prints_tables(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # paths are printed relative to the working folder
    assert _code_shape().main(["--top", "3", "bindkit/train"]) == 0
    out = capsys.readouterr().out
    assert "longest functions (top 3)" in out and "largest files (top 3)" in out
