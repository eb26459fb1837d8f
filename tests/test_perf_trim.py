"""Exact text trimming: the trimmed (and bucketed) text encoder equals the full 77-position computation."""

from __future__ import annotations

import copy

import pytest
import torch

import bindkit
from bindkit.cards import load_card
from bindkit.models.trim import plan_buckets, run_trimmed, trimmed_length

SOT, EOT = 49406, 49407


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Weights large enough that every position matters (PyTorch's default init is rather flat)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("log_logit_scale"):
                continue
            if p.ndim == 1 and "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def _texts_of_every_length(context: int, vocab: int, seed: int = 0) -> torch.Tensor:
    """One row per content length 0..context-2 (SOT, words, EOT, zero padding), the last one filling the whole
    context as the tokenizer's truncation does, plus rows whose padding is not zero (causality makes it inert)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for n in range(context - 1):
        ids = torch.zeros(context, dtype=torch.long)
        ids[0] = SOT % vocab
        ids[1:n + 1] = torch.randint(1, min(vocab, EOT) - 2, (n,), generator=g)
        ids[n + 1] = vocab - 1  # end of text: the highest id
        rows.append(ids)
    for n in (3, 20):  # garbage after the end-of-text token
        ids = rows[n].clone()
        ids[n + 2:] = torch.randint(1, vocab - 2, (context - n - 2,), generator=g)
        rows.append(ids)
    return torch.stack(rows)


def _tiny_text_model(card="imagebind_tiny", seed=0):
    model = bindkit.build_model(card, modalities=["text"])
    _randomise(model, seed)
    return model


def _full(model, ids):
    enc = model.encoders["text"]
    enc.trim_text = False
    try:
        return model.encode("text", ids)
    finally:
        del enc.trim_text  # back to the class default


def _other_card():
    d = load_card("imagebind_tiny").to_dict()
    d["name"] = "trim_test_card"
    d["modalities"] = {"text": dict(d["modalities"]["text"], embed_dim=40, num_heads=5, num_blocks=3,
                                    context_length=24, vocab_size=1000)}
    d["out_embed_dim"] = 16
    return d


@pytest.mark.parametrize("card", ["imagebind_tiny", "other"])
def test_trimmed_equals_full_on_every_length(card):
    spec = _other_card() if card == "other" else card
    model = _tiny_text_model(spec, seed=1)
    cfg = model.card.modalities["text"]
    ids = _texts_of_every_length(int(cfg["context_length"]), int(cfg["vocab_size"]))
    full = _full(model, ids)
    # one big batch (bucketed when large enough), small batches, and every row alone
    assert (model.encode("text", ids) - full).abs().max().item() <= 1e-6
    for start in range(0, len(ids), 5):
        got = model.encode("text", ids[start:start + 5])
        assert (got - full[start:start + 5]).abs().max().item() <= 1e-6
    for i in range(len(ids)):
        assert (model.encode("text", ids[i:i + 1]) - full[i]).abs().max().item() <= 1e-6, i
    # the outputs are not trivially equal: rows differ from each other
    assert (full[0] - full[1]).abs().max().item() > 1e-3


def test_bucketed_large_batch_keeps_input_order():
    model = _tiny_text_model(seed=2)
    ids = _texts_of_every_length(77, 49408, seed=3)
    ids = torch.cat([ids, ids.flip(0)])[torch.randperm(2 * len(ids), generator=torch.Generator().manual_seed(0))]
    assert len(plan_buckets(sorted((ids.argmax(-1) + 1).tolist()))) > 3  # really bucketed
    full = _full(model, ids)
    got = model.encode("text", ids)
    assert (got - full).abs().max().item() <= 1e-6


def test_bucket_plan_minimises_padded_positions():
    assert plan_buckets([5] * 10) == [10]
    assert plan_buckets([3, 3, 77], penalty=64) == [2, 3]  # 2x3 + 77 + 64 < 3x77
    assert plan_buckets([10, 11], penalty=64) == [2]  # a bucket that saves one position is not worth a call
    lengths = sorted([6, 7, 8, 8, 9, 10, 12, 12, 13, 14, 14, 15, 17, 18, 18, 20] * 2)
    cuts = plan_buckets(lengths, penalty=64)
    assert cuts[-1] == len(lengths) and cuts == sorted(set(cuts))
    cost = sum((b - a) * lengths[b - 1] + 64 for a, b in zip([0] + cuts[:-1], cuts))
    assert cost <= len(lengths) * max(lengths) + 64
    assert all(lengths[c - 1] != lengths[c] for c in cuts[:-1])  # cuts fall between distinct lengths


def test_tokenized_texts_including_truncated_ones():
    pytest.importorskip("open_clip")
    model = _tiny_text_model(seed=4)
    texts = ["", "a dog", "a photo of a dog on a beach at sunset", "word " * 200, "x" * 500, "ünïcödé 😀"]
    ids = bindkit.preprocess("text", texts, card=model.card)
    assert int(ids[3].argmax()) == 76  # cut to the context and still ending with end-of-text
    assert (model.encode("text", ids) - _full(model, ids)).abs().max().item() <= 1e-6


def test_forward_sees_only_the_trimmed_positions():
    ids = _texts_of_every_length(77, 49408)[[2, 5, 9]]
    seen = []

    def forward(x, eot):
        seen.append(tuple(x.shape))
        assert torch.equal(eot, x.argmax(dim=-1))
        return x[:, :1].float()

    run_trimmed(forward, ids)
    assert seen == [(3, 11)] and trimmed_length(ids) == 11


def test_trimming_keeps_state_dict_layout():
    model = _tiny_text_model()
    keys = {k: tuple(v.shape) for k, v in model.encoders.state_dict().items()}
    assert keys["text.stem.mask"] == (77, 77) and keys["text.stem.pos_embed"] == (1, 77, 64)
    sd = copy.deepcopy(model.encoders.state_dict())
    again = bindkit.build_model("imagebind_tiny", modalities=["text"])
    again.encoders.load_state_dict(sd, strict=True)


def test_training_gradients_flow_through_buckets():
    model = _tiny_text_model(seed=5).train()
    ids = _texts_of_every_length(77, 49408)[:70]  # end-of-text at positions 1..70, bucketed
    model.encoders["text"](ids).sum().backward()
    grad = model.encoders["text"].stem.pos_embed.grad[0]
    assert grad[:71].abs().sum(dim=-1).min() > 0 and grad[71:].abs().max() == 0
