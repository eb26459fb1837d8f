"""Fast cold start: the command line parses (and fails on bad arguments) without torch, FAISS or numpy; a search
loads only its query's encoders and can print where its time went."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "faiss", "numpy", "torchvision", "open_clip", "fastapi")


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=300)


def _heavy_after(statement: str) -> list[str]:
    proc = _run(f"import sys\n{statement}\nprint('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("HEAVY=")]
    assert line, proc.stdout + proc.stderr
    return [m for m in line[-1][len("HEAVY="):].split(",") if m]


def test_building_the_parser_imports_nothing_heavy():
    assert _heavy_after("import bindkit.cli; bindkit.cli.build_parser()") == []


def test_import_bindkit_is_light_and_the_api_still_resolves():
    assert _heavy_after("import bindkit; bindkit.Card; bindkit.list_encoders(); bindkit.BindkitError") == []
    proc = _run("import sys, bindkit; f = bindkit.load_model; print(f.__module__, callable(f), "
                "'torch' in sys.modules, 'load_model' in dir(bindkit))")
    assert proc.stdout.split() == ["bindkit.factory", "True", "True", "True"], proc.stderr


@pytest.mark.parametrize("argv", [
    ["--help"], ["search", "--help"], ["index", "build", "--help"], ["serve", "--help"], ["bench", "--help"],
    ["embed", "--help"], ["search"], ["search", "idx", "-k", "zero"], ["embed", "x.jpg", "--quantize", "int4"],
    ["nonsense"],
])
def test_help_and_argument_errors_never_import_torch(argv):
    code = ("import runpy\nsys.argv = ['bindkit'] + " + repr(argv) + "\ntry:\n"
            "    runpy.run_module('bindkit', run_name='__main__')\nexcept SystemExit as exc:\n"
            "    print('EXIT', exc.code)")
    assert _heavy_after(code) == []


def test_quantize_option_is_offered_by_every_embedding_command(capsys):
    from bindkit.cli import main

    for cmd in (["embed"], ["search"], ["index", "build"], ["serve"], ["demo"]):
        with pytest.raises(SystemExit):
            main(cmd + ["--help"])
        assert "--quantize" in capsys.readouterr().out, cmd


@pytest.fixture(scope="module")
def text_index(tmp_path_factory, fixture_dir):
    import bindkit

    weights = fixture_dir / "state_dict.pt"
    path = tmp_path_factory.mktemp("coldstart") / "idx"
    model = bindkit.load_model("imagebind_tiny", weights=weights)
    with bindkit.Index.create(path, model=model) as index:
        index.add(["a dog barking", "a red car", "rain on a roof"], modality="text")
    return path, weights


def test_search_loads_only_the_query_encoders_and_profiles(text_index, monkeypatch, capsys):
    import bindkit
    from bindkit.cli import main

    path, weights = text_index
    loaded = []
    real = bindkit.load_model

    def recording_load_model(*args, **kwargs):
        model = real(*args, **kwargs)
        loaded.append(model.modalities)
        return model

    monkeypatch.setattr(bindkit, "load_model", recording_load_model)
    argv = ["search", str(path), "--text", "a dog", "-k", "2", "--model", "imagebind_tiny", "--weights",
            str(weights), "--json", "--profile"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert loaded == [("text",)]
    hits = json.loads(captured.out)  # the profile goes to stderr: --json stays parseable
    assert hits["text"][0]["text"] == "a dog barking"
    for phase in ("imports", "model load", "index open", "embed query", "search", "total"):
        assert phase in captured.err, phase


def test_int8_search_on_an_fp32_index_warns_and_answers(text_index, capsys):
    from bindkit.cli import main

    path, weights = text_index
    with pytest.warns(RuntimeWarning, match="fp32 vectors.*int8"):
        assert main(["search", str(path), "--text", "a dog", "-k", "1", "--model", "imagebind_tiny",
                     "--weights", str(weights), "--quantize", "int8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["text"][0]["text"] == "a dog barking"


def test_load_model_and_a_text_embedding_skip_dynamo_torchvision_and_open_clip():
    """load_model builds on the meta device without the initialisers' decompositions (which import
    torch._dynamo and sympy), and a text query needs neither the image loaders (torchvision) nor open_clip's
    package (timm, huggingface_hub): only its tokenizer module."""
    heavy = _heavy_after(
        "import bindkit\n"
        "from bindkit.models.reference_layout import to_reference\n"
        "built = bindkit.build_model('imagebind_tiny', modalities=['text']).encoders.state_dict()\n"
        "sd = {to_reference(k): t for k, t in built.items()}\n"
        "m = bindkit.load_model('imagebind_tiny', weights=sd, modalities=['text'])\n"
        "v = m.embed(text=['a dog', 'a cat'])['text']\n"
        "assert v.shape == (2, 32)\n"
        "for name in ('torch._dynamo', 'sympy', 'torchvision', 'open_clip', 'timm'):\n"
        "    assert name not in sys.modules, name\n")
    assert "torch" in heavy and "numpy" in heavy  # it did run


def test_tokenizer_loaded_standalone_equals_open_clip():
    pytest.importorskip("open_clip")
    from open_clip.tokenizer import SimpleTokenizer

    from bindkit.inputs import text

    texts = ["", "A Dog!", "ünïcödé &amp; html", "word " * 100]
    ours = text._simple_tokenizer_class()
    assert torch_equal(ours()(texts, context_length=77), SimpleTokenizer()(texts, context_length=77))


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))
