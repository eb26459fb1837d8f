"""Text loader: open_clip's CLIP BPE reproduces the reference token ids exactly."""

from __future__ import annotations

import json

import pytest
import torch

from bindkit.errors import InputError
from bindkit.inputs import preprocess

EOT, SOT = 49407, 49406


def test_matches_reference_token_ids(fixture_dir):
    data = json.loads((fixture_dir / "texts.json").read_text())
    got = preprocess("text", data["texts"])
    want = torch.tensor(data["token_ids"])
    assert got.dtype == torch.int64 and got.shape == (len(data["texts"]), 77)
    assert torch.equal(got, want)


def test_empty_string_is_start_and_end_only():
    got = preprocess("text", [""])[0]
    assert got[:2].tolist() == [SOT, EOT] and not got[2:].any()


def test_long_text_is_cut_to_77_and_still_ends_with_end_of_text():
    got = preprocess("text", ["word " * 200])[0]
    assert got.shape == (77,) and got[-1].item() == EOT and got[0].item() == SOT
    assert (got != 0).all()


def test_case_and_whitespace_are_normalised():
    got = preprocess("text", ["A  Dog\n", "a dog"])
    assert torch.equal(got[0], got[1])


def test_single_string_and_context_length_option():
    assert preprocess("text", "a dog").shape == (1, 77)
    short = preprocess("text", ["a photo of a dog"], context_length=4)[0]
    assert short.tolist()[0] == SOT and short.tolist()[-1] == EOT and short.shape == (4,)


def test_non_strings_are_input_errors_naming_the_index():
    with pytest.raises(InputError, match="must be str") as info:
        preprocess("text", ["fine", b"bytes are not text"])
    assert info.value.item == "#1" and info.value.modality == "text"


def test_unknown_tokenizer_is_rejected():
    with pytest.raises(ValueError, match="clip_bpe"):
        preprocess("text", ["x"], tokenizer="sentencepiece")
