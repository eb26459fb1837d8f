"""The bf16 path: load_model(quantize="bf16") runs every encoder under bfloat16 autocast, embeds close to fp32 as
unit vectors, has its own fingerprint variant, warns where the hardware has no bfloat16 arithmetic, and indexes
keep it apart from fp32 vectors as they do int8. Runs on any CPU: where bfloat16 is emulated it is slow, not
wrong, so every assertion holds there too."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn.functional as F

import bindkit
from bindkit.cli import main
from bindkit.errors import ArgumentError, ModelRefusedError
from bindkit.models.quantize import bf16_native, normalize_mode, quantize_model, split_fingerprint

TEXTS = ["a dog barking", "a cat on a mat", "rain on a tin roof", "a red sports car", "an empty beach at dawn",
         "a violin solo"]


def _bf16(state_dict, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "no bfloat16 arithmetic" on CPUs without it
        return bindkit.load_model("imagebind_tiny", weights=state_dict, quantize="bf16", **kw)


@pytest.fixture(scope="module")
def fp32_and_bf16(tiny_state_dict):
    return bindkit.load_model("imagebind_tiny", weights=tiny_state_dict), _bf16(tiny_state_dict)


def test_bf16_embeds_close_to_fp32_as_unit_vectors_on_every_modality(fp32_and_bf16, fixture_dir):
    fp32, bf16 = fp32_and_bf16
    inputs = torch.load(fixture_dir / "inputs.pt", weights_only=True)
    assert normalize_mode("bfloat16") == "bf16" and bf16.quantized == "bf16" and bf16.dtype == torch.float32
    for key, batch in inputs.items():
        kind = "image" if key == "vision" else key
        a, b = fp32.encode(kind, batch), bf16.encode(kind, batch)
        assert b.dtype == torch.float32 and b.shape == a.shape
        assert (b.norm(dim=-1) - 1).abs().max().item() <= 1e-6, kind
        cos = F.cosine_similarity(a, b, dim=-1)
        assert cos.min().item() > 0.999, (kind, cos)
        assert (a - b).abs().max().item() > 1e-6, kind  # bfloat16 arithmetic did run


def test_bf16_fingerprint_variant_and_serving_path(fp32_and_bf16):
    fp32, bf16 = fp32_and_bf16
    for enc in bf16.modalities:
        base, variant = split_fingerprint(bf16.fingerprint(enc))
        assert variant == "bf16" and base == split_fingerprint(fp32.fingerprint(enc))[0]
    # the serving path calls the encoder module itself, not model.encode: autocast lives in the encoder
    ids = bindkit.preprocess("text", TEXTS, card=bf16.card)
    with torch.inference_mode():
        direct = bf16.encoders["text"](ids)
    assert torch.equal(direct, bf16.encode("text", ids))


@pytest.mark.parametrize("native", [True, False])
def test_bf16_warns_exactly_where_the_hardware_lacks_it(tiny_state_dict, monkeypatch, native):
    from bindkit.models import quantize

    monkeypatch.setattr(quantize, "bf16_native", lambda device: native)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        bindkit.load_model("imagebind_tiny", weights=tiny_state_dict, modalities=["imu"], quantize="bf16")
    slow = [w for w in seen if "no bfloat16 arithmetic" in str(w.message)]
    assert len(slow) == (0 if native else 1)


def test_bf16_native_reads_the_hardware():
    from bindkit.models.quantize import _cpu_flags

    flags = _cpu_flags()
    assert bf16_native(torch.device("cpu")) == bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    assert bf16_native(torch.device("meta"))


def test_bf16_linear_weights_are_stored_in_bf16_and_the_rest_stays_fp32(fp32_and_bf16):
    _, bf16 = fp32_and_bf16
    enc = bf16.encoders["text"]
    linears = [m for m in enc.trunk.modules() if isinstance(m, torch.nn.Linear)] + [enc.head.proj]
    assert linears and all(m.weight.dtype == torch.bfloat16 for m in linears)
    assert enc.stem.token_embedding.weight.dtype == torch.float32 and enc.head.norm.weight.dtype == torch.float32
    assert bf16.dtype == torch.float32


def test_adapters_are_folded_before_quantising(tiny_state_dict, tmp_path):
    from bindkit.adapt import apply_lora, save_adapter
    from tiny_random import randomise_adapters

    model = bindkit.load_model("imagebind_tiny", weights=tiny_state_dict, modalities=["text"])
    apply_lora(model, ["text"], r=2, alpha=4)
    randomise_adapters(model, seed=3)
    with pytest.raises(ArgumentError, match="adapters"):  # live adapters: quantised layers could not apply them
        quantize_model(model, "bf16")
    path = save_adapter(model, "text", tmp_path / "text.safetensors")
    adapted = model.fingerprint("text")
    got = _bf16(tiny_state_dict, modalities=["text"], adapters=[path])
    assert split_fingerprint(got.fingerprint("text")) == (adapted, "bf16")
    ids = bindkit.preprocess("text", TEXTS, card=got.card)
    assert F.cosine_similarity(got.encode("text", ids), model.encode("text", ids)).min().item() > 0.999


def test_bad_bf16_uses_are_clear(tiny_state_dict):
    half = bindkit.load_model("imagebind_tiny", weights=tiny_state_dict, modalities=["imu"], dtype="bfloat16")
    with pytest.raises(ArgumentError, match="float32"):
        quantize_model(half, "bf16")
    done = _bf16(tiny_state_dict, modalities=["imu"])
    with pytest.raises(ArgumentError, match="already quantised"):
        quantize_model(done, "int8")
    with pytest.raises(ArgumentError, match="'int8', 'bf16'"):
        normalize_mode("fp8")


def test_index_built_fp32_warns_for_bf16_queries_and_refuses_bf16_adds(fp32_and_bf16, tmp_path):
    fp32, bf16 = fp32_and_bf16
    with bindkit.Index.create(tmp_path / "idx", model=fp32) as index:
        index.add(TEXTS, modality="text")
    with pytest.warns(RuntimeWarning, match="fp32 vectors of the .*text.* encoder.*bf16"):
        index = bindkit.Index.open(tmp_path / "idx", model=bf16)
    with index:
        hits = index.search(text=TEXTS[1], k=2)["text"]
        assert len(hits) == 2
        q = bf16.embed(text=[TEXTS[1]], show_progress_bar=False)["text"][0]
        ids, vecs = index.vectors("text")
        assert abs(hits[0].score - float(vecs[list(ids).index(hits[0].id)] @ q)) < 1e-3  # the bf16 query scored
        with pytest.raises(ModelRefusedError, match="never mixes.*no --quantize"):
            index.add(["a new caption"], modality="text")
        assert len(index) == len(TEXTS)


def test_bench_measures_and_compares_bf16(capsys):
    argv = ["bench", "--model", "imagebind_tiny", "--random-weights", "--modalities", "text", "--batch-sizes", "2",
            "--seconds", "0", "--engines", "fp32,bf16", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["peak_gflops"]["bf16"] > 0
    assert {(r["encoder"], r["engine"]) for r in report["results"]} == {("text", "fp32"), ("text", "bf16")}
    argv = ["bench", "--model", "imagebind_tiny", "--random-weights", "--text", "a dog", "--text", "rain on a roof",
            "--engines", "fp32,int8,bf16", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["engines"]) == {"int8", "bf16"} and report["cosine"] == report["engines"]["int8"]
    assert report["engines"]["int8"]["text"]["min"] > 0.99
    assert report["engines"]["bf16"]["text"]["items"] == 2 and report["engines"]["bf16"]["text"]["min"] > 0.999
    with pytest.raises(SystemExit, match="unknown engine 'fp8'.*bf16"):
        main(["bench", "--engines", "fp32,fp8"])
    with pytest.raises(SystemExit, match="compares fp32 with int8 and/or bf16"):
        main(["bench", "--model", "imagebind_tiny", "--random-weights", "--text", "a dog", "--engines", "fp32"])
