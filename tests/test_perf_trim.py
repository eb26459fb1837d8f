"""Exact text trimming: the trimmed (and packed) text encoder equals the full 77-position computation."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

import bindkit
from bindkit.cards import load_card
from bindkit.models.trim import Packing, run_trimmed, trimmed_length

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


def _full(model, ids, **flags):
    """The encoder's output with ``flags`` set on it (default: no trimming, the full context, every position
    through every block)."""
    enc = model.encoders["text"]
    flags = flags or {"trim_text": False, "pool_last_block": False}
    for k, v in flags.items():
        setattr(enc, k, v)
    try:
        return model.encode("text", ids)
    finally:
        for k in flags:
            delattr(enc, k)  # back to the class default


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
    # one big batch (packed), the same trimmed but unpacked, small batches, and every row alone
    assert (model.encode("text", ids) - full).abs().max().item() <= 1e-6
    assert (_full(model, ids, pack_text=False) - full).abs().max().item() <= 1e-6
    # the last block for the pooled token alone: trimmed and packed, trimmed, and on the full context
    assert (_full(model, ids, pool_last_block=False) - full).abs().max().item() <= 1e-6
    assert (_full(model, ids, trim_text=False) - full).abs().max().item() <= 1e-6
    for start in range(0, len(ids), 5):
        got = model.encode("text", ids[start:start + 5])
        assert (got - full[start:start + 5]).abs().max().item() <= 1e-6
    for i in range(len(ids)):
        assert (model.encode("text", ids[i:i + 1]) - full[i]).abs().max().item() <= 1e-6, i
    # the outputs are not trivially equal: rows differ from each other
    assert (full[0] - full[1]).abs().max().item() > 1e-3


def test_packed_large_batch_keeps_input_order():
    model = _tiny_text_model(seed=2)
    ids = _texts_of_every_length(77, 49408, seed=3)
    ids = torch.cat([ids, ids.flip(0)])[torch.randperm(2 * len(ids), generator=torch.Generator().manual_seed(0))]
    full = _full(model, ids)
    got = model.encode("text", ids)
    assert (got - full).abs().max().item() <= 1e-6
    # rows differ, so a permuted output would fail
    assert (full[0] - full[1]).abs().max().item() > 1e-3


def test_packing_layout():
    lengths = torch.tensor([3, 1, 4])
    p = Packing(lengths)
    assert (p.batch, p.length, p.tokens) == (3, 4, 8)
    assert p.positions.tolist() == [0, 1, 2, 0, 0, 1, 2, 3]
    assert p.last.tolist() == [2, 3, 7]
    x = torch.arange(12.0).view(3, 4, 1)
    packed = p.unpad(x)
    assert packed.flatten().tolist() == [0, 1, 2, 4, 8, 9, 10, 11]
    padded = p.pad(packed)
    assert padded[..., 0].tolist() == [[0, 1, 2, 0], [4, 0, 0, 0], [8, 9, 10, 11]]


def test_packing_runs_one_call_on_the_kept_positions():
    ids = _texts_of_every_length(77, 49408)[[2, 9, 5]]
    seen = []

    def forward(x, eot, packing):
        seen.append((tuple(x.shape), packing.tokens))
        return x[:, :1].float()

    run_trimmed(forward, ids)
    assert seen == [((3, 11), 4 + 11 + 7)]


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

    def forward(x, eot, packing):
        seen.append(tuple(x.shape))
        assert torch.equal(eot, x.argmax(dim=-1)) and packing is None
        return x[:, :1].float()

    run_trimmed(forward, ids, pack=False)
    assert seen == [(3, 11)] and trimmed_length(ids) == 11


def test_trimming_keeps_state_dict_layout():
    model = _tiny_text_model()
    keys = {k: tuple(v.shape) for k, v in model.encoders.state_dict().items()}
    assert keys["text.stem.mask"] == (77, 77) and keys["text.stem.pos_embed"] == (1, 77, 64)
    sd = copy.deepcopy(model.encoders.state_dict())
    again = bindkit.build_model("imagebind_tiny", modalities=["text"])
    again.encoders.load_state_dict(sd, strict=True)


@pytest.mark.parametrize("drop_path", [0.0, 0.1])
def test_training_gradients_flow_through_packing(drop_path):
    model = _tiny_text_model(seed=5).train()
    enc = model.encoders["text"]
    for block in enc.trunk.blocks:
        block.drop_path = drop_path
    assert enc.trunk.drops_paths == (drop_path > 0)  # stochastic depth keeps rows apart (no packing)
    ids = _texts_of_every_length(77, 49408)[:70]  # end-of-text at positions 1..70
    enc(ids).sum().backward()
    grad = enc.stem.pos_embed.grad[0]
    assert grad[:71].abs().sum(dim=-1).min() > 0 and grad[71:].abs().max() == 0


@pytest.mark.parametrize("flag", ["pack_text", "pool_last_block"])
def test_gradients_equal_those_of_the_plain_computation(flag):
    """Packing rows, and running the last block for the pooled token alone, leave training gradients as they are."""
    ids = _texts_of_every_length(77, 49408)[[3, 40, 12, 7]]
    grads = []
    for on in (True, False):
        model = _tiny_text_model(seed=6).train()
        setattr(model.encoders["text"], flag, on)
        model.encoders["text"](ids).pow(3).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert grads[0].shape == grads[1].shape
    assert (grads[0] - grads[1]).abs().max().item() <= 1e-5 * grads[1].abs().max().item()


def test_packing_is_refused_without_causal_attention():
    vision = bindkit.build_model("imagebind_tiny", modalities=["vision"]).encoders["vision"]
    with pytest.raises(ValueError, match="causal"):
        vision.trunk(torch.zeros(1, 4, vision.trunk.blocks[0].norm1.normalized_shape[0]),
                     packing=Packing(torch.tensor([1, 3])))


@pytest.mark.parametrize("causal,bias_kv", [(True, False), (False, True), (False, False)])
def test_pooled_trunk_equals_the_full_trunk_at_the_pooled_tokens(causal, bias_kv):
    from bindkit.models.transformer import Trunk

    torch.manual_seed(0)
    trunk = Trunk(24, 3, 4, add_bias_kv=bias_kv, causal=causal, pre_norm=not causal).eval()
    _randomise(trunk, 7)
    x = torch.randn(5, 9, 24)
    pool = torch.tensor([0, 8, 3, 5, 0]) if causal else torch.zeros(5, dtype=torch.long)
    with torch.no_grad():
        full = trunk(x)[torch.arange(5), pool]
        got = trunk.pooled(x, pool)
    assert (got - full).abs().max().item() <= 1e-5 * full.abs().max().item()
    assert (full[0] - full[1]).abs().max().item() > 1e-3
    if causal:  # packed: each row keeps its first pool+1 tokens
        packing = Packing(pool + 1)
        with torch.no_grad():
            packed = trunk.pooled(packing.pack(x)[None], pool, packing=packing)
        assert (packed - full).abs().max().item() <= 1e-5 * full.abs().max().item()



def test_causal_trunk_refuses_a_bias_key():
    from bindkit.models.transformer import Trunk

    with pytest.raises(ValueError, match="bias key"):
        Trunk(24, 2, 4, add_bias_kv=True, causal=True)


def test_pooled_block_calls_a_hooked_qkv_layer_as_a_module():
    """A q/k/v layer whose weight a forward hook rebuilds (weight_norm) is called, not read: pooled equals full."""
    from bindkit.models.transformer import Trunk

    torch.manual_seed(0)
    trunk = Trunk(24, 2, 4, causal=True).eval()
    _randomise(trunk, 3)
    last = trunk.blocks[-1].attn
    with warnings.catch_warnings():  # deprecated for parametrizations.weight_norm, which is no hook
        warnings.simplefilter("ignore", FutureWarning)
        last.qkv = torch.nn.utils.weight_norm(last.qkv)
    with torch.no_grad():
        last.qkv.weight_g.mul_(1.5)  # the stored .weight is stale until the hook runs
    x, pool = torch.randn(4, 7, 24), torch.tensor([6, 2, 4, 0])
    with torch.no_grad():
        got = trunk.pooled(x, pool)  # first: the full forward's hook call would refresh .weight
        full = trunk(x)[torch.arange(4), pool]
    assert (got - full).abs().max().item() <= 1e-5 * full.abs().max().item()
    assert (full[0] - full[1]).abs().max().item() > 1e-3


def test_per_block_mlp_ratios_with_an_attention_only_block():
    d = _other_card()
    d["modalities"]["text"]["mlp_ratio"] = [0, 1, 8]  # attention only, narrow, wide (the pooled last block)
    model = _tiny_text_model(d, seed=3)
    blocks = model.encoders["text"].trunk.blocks
    assert blocks[0].mlp is None and blocks[0].norm2 is None
    assert blocks[1].mlp.fc1.out_features == 40 and blocks[2].mlp.fc1.out_features == 320
    assert not any(k.startswith("trunk.blocks.0.mlp") for k in model.encoders["text"].state_dict())
    ids = _texts_of_every_length(24, 1000)
    full = _full(model, ids)
    assert (model.encode("text", ids) - full).abs().max().item() <= 1e-6
    assert (full[0] - full[1]).abs().max().item() > 1e-3
