"""LoRA adapters (bindkit.adapt): no-op when fresh, trains only adapters, merge/unmerge, save/load, fingerprints."""

from __future__ import annotations

import pytest
import torch

import bindkit
from bindkit.adapt import (
    LoRALinear,
    adapter_parameters,
    apply_lora,
    load_adapter,
    merge_adapters,
    save_adapter,
    unmerge_adapters,
)
from bindkit.errors import ArgumentError, CheckpointError, IndexStoreError
from tiny_random import randomise_adapters


def tiny(seed: int = 0, modalities=("audio", "text")):
    torch.manual_seed(seed)
    return bindkit.build_model("imagebind_tiny", modalities=list(modalities)).eval()


def audio_batch(model, n: int = 3, seed: int = 1) -> torch.Tensor:
    cfg = model.card.modalities["audio"]
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 1, cfg["num_mel_bins"], cfg["target_length"], generator=g)


def text_batch(model, n: int = 3, seed: int = 2) -> torch.Tensor:
    cfg = model.card.modalities["text"]
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 100, (n, cfg["context_length"]), generator=g)
    ids[:, 5] = cfg["vocab_size"] - 1  # end-of-text token (the highest id)
    ids[:, 6:] = 0
    return ids


def base_state(model, enc: str) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.encoders[enc].state_dict().items() if "lora_adapters" not in k}


def train_steps(model, enc: str = "audio", steps: int = 3) -> None:
    x = audio_batch(model).flatten(0, 1)
    target = torch.nn.functional.normalize(torch.randn(x.shape[0], model.dim, generator=torch.Generator().manual_seed(3)), dim=-1)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    for _ in range(steps):
        loss = (model.encoders[enc](x) - target).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_fresh_adapter_is_a_no_op_and_only_adapters_train():
    model = tiny()
    xa, xt = audio_batch(model), text_batch(model)
    before_a, before_t = model.encode("audio", xa), model.encode("text", xt)
    n = apply_lora(model, ["audio", "text"], r=4, alpha=8)
    assert torch.equal(model.encode("audio", xa), before_a)
    assert torch.equal(model.encode("text", xt), before_t)
    adapters = adapter_parameters(model)
    assert n == sum(p.numel() for p in adapters) > 0
    assert {id(p) for p in model.parameters() if p.requires_grad} == {id(p) for p in adapters}
    # every block's qkv/out/fc1/fc2 was wrapped: 2 encoders x 2 blocks x 4 targets
    wrapped = [m for m in model.modules() if isinstance(m, LoRALinear)]
    assert len(wrapped) == 16
    # base weights keep their state-dict keys
    assert "trunk.blocks.0.attn.qkv.weight" in model.encoders["audio"].state_dict()


def test_training_changes_outputs_not_base_weights():
    model = tiny()
    x = audio_batch(model)
    before = model.encode("audio", x)
    base = base_state(model, "audio")
    text_before = base_state(model, "text")
    apply_lora(model, ["audio"], r=4, alpha=8, targets="qkv,fc2")
    train_steps(model)
    after = model.encode("audio", x)
    assert (after - before).abs().max() > 1e-3
    for k, v in base_state(model, "audio").items():
        assert torch.equal(v, base[k]), k
    for k, v in base_state(model, "text").items():
        assert torch.equal(v, text_before[k]), k


def test_train_head_option_counts_head():
    model = tiny()
    n = apply_lora(model, "audio", r=2, alpha=4, train_head=True)
    head = sum(p.numel() for p in model.encoders["audio"].head.parameters())
    assert n == sum(p.numel() for p in adapter_parameters(model)) + head


def test_merge_unmerge():
    model = tiny()
    x = audio_batch(model)
    base = base_state(model, "audio")
    apply_lora(model, ["audio"], r=4, alpha=8)
    train_steps(model)
    unmerged = model.encode("audio", x)
    fp = model.fingerprint("audio")
    merge_adapters(model)
    assert not torch.equal(model.encoders["audio"].trunk.blocks[0].attn.qkv.weight, base["trunk.blocks.0.attn.qkv.weight"])
    merged = model.encode("audio", x)
    assert (merged - unmerged).abs().max() <= 1e-5
    assert model.fingerprint("audio") == fp  # same function, same fingerprint
    with pytest.raises(ArgumentError, match="unmerge"):
        apply_lora(model, ["audio"], name="second")
    model.unmerge_adapters()
    for k, v in base_state(model, "audio").items():
        assert torch.equal(v, base[k]), k
    assert torch.equal(model.encode("audio", x), unmerged)
    model.merge_adapters()
    unmerge_adapters(model)
    assert torch.equal(model.encode("audio", x), unmerged)


def test_unmerged_text_adapters_act_in_every_block_also_the_pooled_last_one():
    """The text encoder's last block runs for the pooled token alone (Attention.forward_pooled, which folds the
    key/value projections): unmerged adapters on its q/k/v must act there as in every other block."""
    model = tiny(modalities=("text",))
    x = text_batch(model, n=4)
    apply_lora(model, ["text"], r=4, alpha=8)
    randomise_adapters(model, seed=5)
    enc = model.encoders["text"]
    unmerged = model.encode("text", x)
    enc.pool_last_block = False
    try:
        full = model.encode("text", x)
    finally:
        del enc.pool_last_block
    assert (unmerged - full).abs().max() <= 1e-5
    model.merge_adapters()
    assert (model.encode("text", x) - unmerged).abs().max() <= 1e-5
    model.unmerge_adapters()
    # and they train there: the last block's q/k/v adapter gets a gradient
    model.train()
    enc(x).pow(3).sum().backward()
    last = enc.trunk.blocks[-1].attn.qkv.lora_adapters
    assert all(a.B.grad is not None and a.B.grad.abs().max() > 0 for a in last.values())
    model.eval()
    # the adapters change the output (so the checks above could fail)
    for mod in model.modules():
        if isinstance(mod, LoRALinear):
            mod.lora_adapters.clear()
    assert (model.encode("text", x) - unmerged).abs().max() > 1e-3


def test_merging_never_writes_into_the_callers_state_dict(tiny_state_dict):
    """load_model assigns the checkpoint's tensors without copying; merging adapters must not change them."""
    state = {k: v.clone() for k, v in tiny_state_dict.items()}
    before = {k: v.clone() for k, v in state.items()}
    model = bindkit.load_model("imagebind_tiny", weights=state, modalities=["audio"])
    apply_lora(model, ["audio"], r=4, alpha=8)
    train_steps(model)
    merge_adapters(model)
    assert not torch.equal(model.encoders["audio"].trunk.blocks[0].attn.qkv.weight,
                           before["modality_trunks.audio.blocks.0.attn.in_proj_weight"])
    assert all(torch.equal(state[k], before[k]) for k in before)
    unmerge_adapters(model)
    assert torch.equal(model.encoders["audio"].trunk.blocks[0].attn.qkv.weight,
                       before["modality_trunks.audio.blocks.0.attn.in_proj_weight"])


def test_save_load_roundtrip_and_stacking(tmp_path):
    model = tiny()
    x = audio_batch(model)
    apply_lora(model, ["audio"], r=4, alpha=8)
    train_steps(model)
    expected = model.encode("audio", x)
    path = save_adapter(model, "audio", tmp_path / "audio.safetensors", meta={"note": "test"})

    fresh = tiny()
    base_fp = fresh.fingerprint("audio")
    name = load_adapter(fresh, path)
    assert torch.equal(fresh.encode("audio", x), expected)
    assert fresh.fingerprint("audio") == model.fingerprint("audio") != base_fp
    assert not any(p.requires_grad for p in adapter_parameters(fresh))

    # a second adapter stacks on the first: the updates add
    model2 = tiny()
    apply_lora(model2, ["audio"], r=2, alpha=2, targets=["fc1"], name="mic2")
    with torch.no_grad():
        for p in adapter_parameters(model2):
            p.normal_(0, 0.05)
    p2 = save_adapter(model2, "audio", tmp_path / "mic2.safetensors")
    name2 = load_adapter(fresh, p2)
    assert name2 != name
    stacked = fresh.encode("audio", x)
    assert (stacked - expected).abs().max() > 1e-4
    fp_stacked = fresh.fingerprint("audio")
    assert fp_stacked not in (model.fingerprint("audio"), model2.fingerprint("audio"), base_fp)
    # stacking order does not change the function nor the fingerprint
    other = tiny()
    load_adapter(other, p2)
    load_adapter(other, path)
    assert (other.encode("audio", x) - stacked).abs().max() <= 1e-6
    assert other.fingerprint("audio") == fp_stacked

    # load_model(..., adapters=[...]) with in-memory weights
    state = {k: v for k, v in tiny().encoders.state_dict().items()}
    from bindkit.models.reference_layout import to_reference

    via_factory = bindkit.load_model("imagebind_tiny", weights={to_reference(k) or k: v for k, v in state.items()},
                                     modalities=["audio", "text"], adapters=[path])
    assert torch.allclose(via_factory.encode("audio", x), expected, atol=1e-6)


def test_wrong_base_is_refused_naming_both_fingerprints(tmp_path):
    model = tiny(seed=0)
    apply_lora(model, ["audio"], r=2, alpha=4)
    path = save_adapter(model, "audio", tmp_path / "a.safetensors")
    mine = model.fingerprint("audio").split("~")[0]
    other = tiny(seed=5)
    theirs = other.fingerprint("audio")
    assert mine != theirs
    with pytest.raises(CheckpointError) as err:
        load_adapter(other, path)
    assert mine in str(err.value) and theirs in str(err.value)
    assert other.fingerprint("audio") == theirs  # nothing was applied
    assert not any(isinstance(m, LoRALinear) for m in other.modules())


def test_metadata_and_size(tmp_path):
    from bindkit.adapt import read_adapter

    model = bindkit.load_model("bindkit_toy", modalities=["audio", "text"])
    base_fp = model.fingerprint("audio")
    apply_lora(model, ["audio"], r=2, alpha=4)
    apply_lora(model, ["text"], r=8, alpha=16, name="text8")
    for enc, name in (("audio", None), ("text", "text8")):
        path = save_adapter(model, enc, tmp_path / f"{enc}.safetensors", meta={"steps": 3})
        base_bytes = sum(p.numel() * 4 for n, p in model.encoders[enc].named_parameters() if "lora_adapters" not in n)
        assert path.stat().st_size < 0.05 * base_bytes, (enc, path.stat().st_size, base_bytes)
        tensors, meta = read_adapter(path)
        assert meta["base_card"] == "bindkit_toy"
        assert meta["targets"] == "qkv,out,fc1,fc2"
        assert meta["modality"] == enc
        assert all(k.startswith("trunk.blocks.") and k.rsplit(".", 1)[1] in ("lora_A", "lora_B") for k in tensors)
    _, meta = read_adapter(tmp_path / "audio.safetensors")
    assert (meta["rank"], meta["alpha"], meta["base_fingerprint"]) == ("2", "4", base_fp)
    assert '"steps": 3' in meta["meta"]


def test_fingerprint_changes_and_index_refuses_adapted_model(tmp_path):
    from bindkit.index import Index

    model = tiny(modalities=("text",))
    base_fp = model.fingerprint("text")
    with Index.create(tmp_path / "ix", model=model) as ix:
        ix.add(["a red car", "a blue boat"], modality="text")
    apply_lora(model, ["text"], r=2, alpha=4)
    fresh_fp = model.fingerprint("text")
    assert fresh_fp.startswith(base_fp + "~lora:")
    with torch.no_grad():
        for p in adapter_parameters(model):
            p.add_(0.01)
    assert model.fingerprint("text") not in (base_fp, fresh_fp)  # follows the adapter's values
    with pytest.raises(IndexStoreError, match="~lora:"):
        Index.open(tmp_path / "ix", model=model)


def test_bad_arguments():
    model = tiny()
    with pytest.raises(ArgumentError, match="target"):
        apply_lora(model, ["audio"], targets=["qkv", "nope"])
    apply_lora(model, ["audio"], r=2)
    with pytest.raises(ArgumentError, match="already"):
        apply_lora(model, ["audio"], r=2)
    with pytest.raises(ArgumentError, match="rank >= 1"):
        apply_lora(model, ["audio"], r=0, name="zero")
