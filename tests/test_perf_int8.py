"""The int8 CPU path: load_model(quantize="int8") embeds close to fp32, has its own fingerprint variant, and
indexes warn (search) or refuse (add) when fp32 and int8 vectors would meet."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import bindkit
from bindkit.errors import ArgumentError, IndexStoreError
from bindkit.models.quantize import normalize_mode, split_fingerprint

KINDS = ("image", "text", "audio", "depth", "thermal", "imu")
TEXTS = ["a dog barking", "a cat on a mat", "rain on a tin roof", "a red sports car", "an empty beach at dawn",
         "a violin solo", "children playing football", "a bowl of ramen"]


def _inputs(card) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(3, 3, 224, 224, generator=g),
        "text": bindkit.preprocess("text", TEXTS, card=card),
        "audio": torch.randn(2, 3, 1, 128, 204, generator=g),
        "depth": torch.randn(3, 1, 224, 224, generator=g),
        "thermal": torch.randn(3, 1, 224, 224, generator=g),
        "imu": torch.randn(3, 6, 2000, generator=g),
    }


@pytest.fixture(scope="module")
def fp32_and_int8(tiny_state_dict):
    fp32 = bindkit.load_model("imagebind_tiny", weights=tiny_state_dict)
    int8 = bindkit.load_model("imagebind_tiny", weights=tiny_state_dict, quantize="int8")
    return fp32, int8


def test_int8_replaces_trunk_and_head_linears_only(fp32_and_int8):
    _, int8 = fp32_and_int8
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    assert int8.quantized == "int8"
    for enc in int8.modalities:
        encoder = int8.encoders[enc]
        linears = [m for part in (encoder.trunk, encoder.head) for m in part.modules()
                   if isinstance(m, (torch.nn.Linear, dynamic))]
        assert linears and all(isinstance(m, dynamic) for m in linears), enc
    assert type(int8.encoders["imu"].stem.patch) is torch.nn.Linear  # stems stay float32


def test_int8_embeds_close_to_fp32(fp32_and_int8):
    fp32, int8 = fp32_and_int8
    for kind, x in _inputs(fp32.card).items():
        a, b = fp32.encode(kind, x), int8.encode(kind, x)
        assert b.dtype == torch.float32 and b.shape == a.shape
        assert torch.allclose(b.norm(dim=-1), torch.ones(len(b)), atol=1e-5)
        cos = (a * b).sum(-1)
        # measured 0.998-0.9996 on these random weights; thresholds keep a margin
        assert cos.min().item() > 0.99 and cos.mean().item() > 0.995, (kind, cos)


def test_int8_embed_api_and_fingerprint_variant(fp32_and_int8):
    fp32, int8 = fp32_and_int8
    vecs = int8.embed(text=TEXTS[:2])
    assert vecs["text"].shape == (2, fp32.dim)
    for kind in KINDS:
        assert int8.fingerprint(kind) == fp32.fingerprint(kind) + "+int8"
        assert split_fingerprint(int8.fingerprint(kind)) == (fp32.fingerprint(kind), "int8")
        assert split_fingerprint(fp32.fingerprint(kind)) == (fp32.fingerprint(kind), None)


def test_bad_quantize_arguments_are_clear(tiny_state_dict):
    assert normalize_mode(None) is None and normalize_mode("fp32") is None and normalize_mode("INT8") == "int8"
    with pytest.raises(ArgumentError, match="int4"):
        bindkit.load_model("imagebind_tiny", weights="/nonexistent/weights.pth", quantize="int4")  # before reading
    half = bindkit.load_model("imagebind_tiny", weights=tiny_state_dict, modalities=["imu"], dtype="bfloat16")
    from bindkit.models.quantize import quantize_model

    with pytest.raises(ArgumentError, match="float32"):
        quantize_model(half)


def test_index_built_fp32_warns_for_int8_queries_and_refuses_int8_adds(fp32_and_int8, tmp_path):
    fp32, int8 = fp32_and_int8
    with bindkit.Index.create(tmp_path / "idx", model=fp32) as index:
        index.add(TEXTS, modality="text")
        want = index.search(text=TEXTS[2:4], k=3)
    with pytest.warns(RuntimeWarning, match="fp32 vectors of the .*text.* encoder.*int8"):
        index = bindkit.Index.open(tmp_path / "idx", model=int8)
    with index:
        got = index.search(text=TEXTS[2:4], k=3)
        # int8 moves each query by ||q8 - q32||, so any item's score moves by at most that much (|v.(q8 - q32)|
        # <= ||q8 - q32|| for unit v): every int8 hit is within that bound of fp32's top 3. Comparing the ids
        # themselves would compare near-ties of the random-weight model's nearly parallel vectors.
        ids, vecs = index.vectors("text")
        q32 = fp32.embed(text=TEXTS[2:4], show_progress_bar=False)["text"]
        q8 = int8.embed(text=TEXTS[2:4], show_progress_bar=False)["text"]
        for i, (g, w) in enumerate(zip(got, want)):
            assert len(g["text"]) == len(w["text"]) == 3
            bound = float(np.linalg.norm(q8[i] - q32[i])) + 1e-3  # + fp16 storage of the vectors
            kth = np.sort(vecs @ q32[i])[-3]
            for h in g["text"]:
                row = vecs[list(ids).index(h.id)]
                assert abs(h.score - float(row @ q8[i])) < 1e-3  # scored with the int8 query
                assert float(row @ q32[i]) >= kth - bound
        with pytest.raises(IndexStoreError, match="never mixes"):
            index.add(["a new caption"], modality="text")
        assert len(index) == len(TEXTS)
        index.add(TEXTS[:2], modality="text")  # unchanged items need no embedding: allowed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fp32 model it was built with: no warning
        bindkit.Index.open(tmp_path / "idx", model=fp32).close()


def test_index_built_int8_records_the_variant(fp32_and_int8, tmp_path):
    fp32, int8 = fp32_and_int8
    with bindkit.Index.create(tmp_path / "idx8", model=int8) as index:
        index.add(TEXTS[:3], modality="text")
    with pytest.warns(RuntimeWarning, match="int8 vectors of the .*text.* encoder.*fp32"):
        index = bindkit.Index.open(tmp_path / "idx8", model=fp32)
    with index, pytest.raises(IndexStoreError, match="--quantize int8"):
        index.add(["another caption"], modality="text")


def test_index_build_with_the_other_variant_stops_at_once(fp32_and_int8, tmp_path):
    """A refusal of the model (not of an item) ends `index build` with its message: no item-by-item retry that
    would record every item as failed."""
    from bindkit.errors import ModelRefusedError
    from bindkit.index.build import build

    fp32, int8 = fp32_and_int8
    with bindkit.Index.create(tmp_path / "idx", model=fp32) as index:
        index.add(TEXTS[:2], modality="text")
    (tmp_path / "m.csv").write_text("text\n" + "\n".join(TEXTS[2:]) + "\n")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*holds fp32 vectors", category=RuntimeWarning)
        warnings.filterwarnings("error", message=".*retrying its items one by one")
        with pytest.raises(ModelRefusedError, match="never mixes"):
            build([tmp_path / "m.csv"], tmp_path / "idx", int8, progress=False)
    with bindkit.Index.open(tmp_path / "idx") as index:
        assert len(index) == 2
