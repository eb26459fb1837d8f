"""The model: reference parity, layout generality, strict loading, partial models, clear errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import bindkit
from bindkit.errors import CheckpointError, ModalityError
from bindkit.models import reference_layout

import reference_oracle

KINDS = ["vision", "text", "audio", "depth", "thermal", "imu", "video"]


@pytest.fixture(scope="module")
def fixture_io(fixture_dir):
    inputs = torch.load(fixture_dir / "inputs.pt", weights_only=True)
    outputs = torch.load(fixture_dir / "outputs.pt", weights_only=True)
    return inputs, outputs


@pytest.mark.parametrize("kind", KINDS)
def test_encode_matches_reference_outputs(tiny_model, fixture_io, kind):
    inputs, outputs = fixture_io
    got = tiny_model.encode(kind, inputs[kind])
    want = F.normalize(outputs[kind].float(), dim=-1)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert torch.allclose(got.norm(dim=-1), torch.ones(len(got)), atol=1e-6)
    assert (got - want).abs().max().item() < 1e-5


def test_reference_scales_are_card_metadata(tiny_model, tiny_state_dict, fixture_io):
    """Returned vectors are unit norm; the reference's scales (text learnable, audio 20, ...) stay metadata."""
    _, outputs = fixture_io
    assert tiny_model.logit_scale("vision") is None
    for kind, want in (("audio", 20), ("depth", 5), ("thermal", 10), ("imu", 5)):
        assert tiny_model.logit_scale(kind) == pytest.approx(want, rel=1e-5)
    text_scale = min(math.exp(tiny_state_dict["modality_postprocessors.text.1.log_logit_scale"].item()), 100)
    assert tiny_model.logit_scale("text") == pytest.approx(text_scale, rel=1e-5)
    assert outputs["text"].norm(dim=-1).mean().item() == pytest.approx(text_scale, rel=1e-4)


def test_oracle_reproduces_reference(tiny_state_dict, fixture_io):
    inputs, outputs = fixture_io
    heads = {m: 4 for m in ("vision", "text", "audio", "depth", "thermal", "imu")}
    for kind in KINDS:
        got = reference_oracle.forward(tiny_state_dict, heads, kind, inputs[kind])
        assert (got - F.normalize(outputs[kind], dim=-1)).abs().max().item() < 1e-5, kind


OTHER_CONFIGS = [
    dict(out_embed_dim=24, vision_embed_dim=48, vision_num_blocks=3, vision_num_heads=3,
         text_embed_dim=40, text_num_blocks=1, text_num_heads=5, audio_embed_dim=32, audio_num_blocks=3,
         audio_num_heads=8, depth_embed_dim=16, depth_num_blocks=1, depth_num_heads=2, thermal_embed_dim=24,
         thermal_num_blocks=2, thermal_num_heads=6, imu_embed_dim=64, imu_num_blocks=1, imu_num_heads=16),
    dict(out_embed_dim=16, vision_embed_dim=32, vision_num_blocks=1, vision_num_heads=8,
         text_embed_dim=32, text_num_blocks=3, text_num_heads=2, audio_embed_dim=24, audio_num_blocks=1,
         audio_num_heads=3, depth_embed_dim=40, depth_num_blocks=2, depth_num_heads=10, thermal_embed_dim=16,
         thermal_num_blocks=3, thermal_num_heads=1, imu_embed_dim=24, imu_num_blocks=3, imu_num_heads=4),
]


def _random_reference_state_dict(config: dict, seed: int) -> dict[str, torch.Tensor]:
    """Random weights in the reference layout for ``config`` (names via the layout table, values random)."""
    g = torch.Generator().manual_seed(seed)
    model = bindkit.build_model(config, device="meta")
    sd = {}
    for key, t in model.encoders.state_dict().items():
        ref = reference_layout.to_reference(key)
        if ref.endswith("text.mask"):
            sd[ref] = torch.full(t.shape, float("-inf")).triu(1)
        elif ref.endswith("log_logit_scale"):
            sd[ref] = torch.tensor(math.log(7.0))
        else:
            scale = 1.0 if ref.endswith(("norm_1.weight", "norm_2.weight", "0.weight")) and t.ndim == 1 else 0.2
            sd[ref] = torch.randn(t.shape, generator=g) * scale + (1.0 if scale == 1.0 else 0.0)
    return sd


@pytest.mark.parametrize("config", OTHER_CONFIGS, ids=["cfg-a", "cfg-b"])
def test_other_configurations_match_oracle(config, fixture_io):
    """Not tuned to the fixture: other widths/depths/heads in the reference layout load and match."""
    inputs, _ = fixture_io
    sd = _random_reference_state_dict(config, seed=len(str(config)))
    model = bindkit.load_model(config, weights=sd)
    heads = {m: config[f"{m}_num_heads"] for m in ("vision", "text", "audio", "depth", "thermal", "imu")}
    for kind in KINDS:
        x = inputs[kind][:2]
        got = model.encode(kind, x)
        want = reference_oracle.forward(sd, heads, kind, x)
        assert got.shape == (len(x), config["out_embed_dim"])
        assert (got - want).abs().max().item() < 1e-5, kind


def test_huge_on_meta_has_reference_size(fixture_dir):
    keys = json.loads((fixture_dir / "huge_keys.json").read_text())
    model = bindkit.build_model("imagebind_huge", device="meta")
    total = sum(t.numel() for t in model.encoders.state_dict().values())
    assert total == sum(math.prod(s) for s in keys.values()) == 1_200_786_990
    assert all(t.device.type == "meta" for t in model.parameters())
    assert model.dim == 1024


@pytest.fixture(scope="module")
def huge_meta_state(fixture_dir):
    keys = json.loads((fixture_dir / "huge_keys.json").read_text())
    return {k: torch.empty(s, device="meta") for k, s in keys.items()}


def test_huge_meta_state_dict_loads_strictly(huge_meta_state):
    model = bindkit.load_model("imagebind_huge", weights=huge_meta_state, device="meta")
    assert model.modalities == ("vision", "text", "audio", "depth", "thermal", "imu")


def test_missing_key_is_named(huge_meta_state):
    state = dict(huge_meta_state)
    del state["modality_trunks.audio.blocks.7.attn.bias_k"]
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\): modality_trunks\.audio\.blocks\.7\.attn\.bias_k"):
        bindkit.load_model("imagebind_huge", weights=state, device="meta")


def test_changed_shape_is_named(huge_meta_state):
    state = dict(huge_meta_state)
    state["modality_heads.imu.3.weight"] = torch.empty(1024, 500, device="meta")
    with pytest.raises(CheckpointError, match=r"modality_heads\.imu\.3\.weight \[1024, 500\] vs model \[1024, 512\]"):
        bindkit.load_model("imagebind_huge", weights=state, device="meta")


def test_unexpected_key_is_named(huge_meta_state):
    state = dict(huge_meta_state)
    state["modality_trunks.imu.blocks.6.norm_1.weight"] = torch.empty(512, device="meta")
    with pytest.raises(CheckpointError, match=r"unexpected key\(s\): modality_trunks\.imu\.blocks\.6\.norm_1"):
        bindkit.load_model("imagebind_huge", weights=state, device="meta")


def test_checkpoint_of_another_card_is_refused(tiny_state_dict):
    with pytest.raises(CheckpointError, match="another card"):
        bindkit.load_model("imagebind_huge", weights=tiny_state_dict, modalities=["imu"], device="meta")


def test_checkpoint_of_another_architecture_is_refused():
    resnet_like = {"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(10, 8)}
    with pytest.raises(CheckpointError, match="another architecture"):
        bindkit.load_model("imagebind_tiny", weights=resnet_like)


def test_tampered_text_mask_is_refused(tiny_state_dict):
    state = dict(tiny_state_dict)
    state["modality_preprocessors.text.mask"] = torch.zeros(77, 77)
    with pytest.raises(CheckpointError, match="causal mask"):
        bindkit.load_model("imagebind_tiny", weights=state, modalities=["text"])


def test_only_requested_modalities_are_built(tiny_state_dict, fixture_io):
    inputs, outputs = fixture_io
    model = bindkit.load_model("imagebind_tiny", weights=tiny_state_dict, modalities=["text"])
    assert model.modalities == ("text",)
    assert all(k.startswith("text.") for k in model.encoders.state_dict())
    got = model.encode("text", inputs["text"])
    assert (got - F.normalize(outputs["text"], dim=-1)).abs().max() < 1e-5
    with pytest.raises(ModalityError, match="without the 'vision' encoder"):
        model.encode("image", inputs["vision"])


def test_image_alias_and_video_share_vision(tiny_state_dict):
    model = bindkit.load_model("imagebind_tiny", weights=tiny_state_dict, modalities=["image"])
    assert model.modalities == ("vision",)


@pytest.mark.parametrize(
    "kind, shape, message",
    [
        ("image", (3, 224, 224), "forget the batch dimension"),
        ("image", (2, 3, 200, 200), "N x 3 x 224 x 224"),
        ("audio", (1, 3, 1, 128, 100), "128 x 204"),
        ("imu", (2, 2000, 6), "N x 6 x 2000"),
        ("depth", (1, 3, 224, 224), "N x 1 x 224 x 224"),
        ("video", (1, 3, 224, 224), "N x S x 3 x 2 x 224 x 224"),
    ],
)
def test_wrong_shapes_get_clear_errors(tiny_model, kind, shape, message):
    with pytest.raises(ModalityError, match=message):
        tiny_model.encode(kind, torch.zeros(shape))


def test_unknown_modality_and_bad_text(tiny_model):
    with pytest.raises(ModalityError, match="unknown modality 'smell'"):
        tiny_model.encode("smell", torch.zeros(1, 3))
    with pytest.raises(ModalityError, match="integer token ids"):
        tiny_model.encode("text", torch.zeros(1, 77))
    with pytest.raises(ModalityError, match="token ids must lie"):
        tiny_model.encode("text", torch.full((1, 77), 10**6))


def test_bad_devices_are_clear_errors(tiny_state_dict):
    with pytest.raises(bindkit.DeviceError, match="unknown device 'gpu0'"):
        bindkit.load_model("imagebind_tiny", weights=tiny_state_dict, modalities=["imu"], device="gpu0")
    missing = "cuda:99" if torch.cuda.is_available() else "cuda"
    with pytest.raises(bindkit.DeviceError, match="CUDA"):
        bindkit.build_model("imagebind_tiny", modalities=["imu"], device=missing)


def test_default_device_follows_bindkit_device(monkeypatch, tiny_state_dict):
    """Commands, training and distillation given no device use $BINDKIT_DEVICE, else CUDA when available, else
    the CPU; a bad value is a DeviceError naming the variable (the test session itself pins it to cpu)."""
    from bindkit.cli.common import default_device, load_model_for
    from bindkit.factory import auto_device

    monkeypatch.setenv("BINDKIT_DEVICE", "cpu")
    assert auto_device() == torch.device("cpu") and default_device() == "cpu"
    monkeypatch.delenv("BINDKIT_DEVICE")
    assert auto_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad, words in (("gpu0", "unknown device"), ("cuda:99", "CUDA")):
        monkeypatch.setenv("BINDKIT_DEVICE", bad)
        with pytest.raises(bindkit.DeviceError, match=f"BINDKIT_DEVICE='{bad}'.*{words}"):
            auto_device()
    with pytest.raises(bindkit.DeviceError, match="BINDKIT_DEVICE='cuda:99'"):
        load_model_for(None, "imagebind_tiny", None, None, modalities=["imu"])


def test_missing_weights_name_the_fetch_command(monkeypatch, tmp_path):
    monkeypatch.setenv("BINDKIT_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(bindkit.WeightsNotFoundError, match="bindkit fetch imagebind_huge"):
        bindkit.load_model("imagebind_huge", modalities=["text"], download=False)


def test_truncated_and_foreign_files_are_refused(tmp_path, tiny_state_dict):
    good = tmp_path / "tiny.pt"
    torch.save({k: v for k, v in tiny_state_dict.items() if ".imu." in k}, good)
    data = good.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        bindkit.load_model("imagebind_tiny", weights=cut, modalities=["imu"])
    assert str(cut) in str(info.value)
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint.*a text file") as info:
        bindkit.load_model("imagebind_tiny", weights=text, modalities=["imu"])
    assert str(text) in str(info.value)
    model = bindkit.load_model("imagebind_tiny", weights=good, modalities=["imu"])
    assert model.modalities == ("imu",)


@pytest.mark.parametrize("card", bindkit.list_encoders())
def test_every_card_builds(card):
    """open_clip-style: every registered card builds on meta, and a random small batch encodes where cheap."""
    model = bindkit.build_model(card, device="meta")
    assert set(model.modalities) == set(bindkit.load_card(card).modalities)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_bfloat16_model_stays_close(tiny_state_dict, fixture_io):
    inputs, outputs = fixture_io
    model = bindkit.load_model("imagebind_tiny", weights=tiny_state_dict, modalities=["depth"], dtype="bf16")
    assert model.dtype == torch.bfloat16
    got = model.encode("depth", inputs["depth"])
    assert got.dtype == torch.float32
    assert F.cosine_similarity(got, F.normalize(outputs["depth"], dim=-1)).min() > 0.99


def test_early_conv_stem_keeps_the_token_layout_and_shares_images_and_video():
    """bindkit's small cards may put 3x3 stride-2 convolutions before the patch convolution: same token count,
    a still image equals a video of that frame repeated, and the conv runs per frame (frames differ -> differs)."""
    from bindkit.models.stems import VisionStem

    torch.manual_seed(0)
    plain = VisionStem(32, 64, [2, 8, 8], num_frames=2)
    conv = VisionStem(32, 64, [2, 8, 8], num_frames=2, conv_channels=[8, 16])
    img = torch.randn(3, 3, 64, 64)
    assert conv(img).shape == plain(img).shape == (3, 1 + 64, 32)
    assert conv.patch.kernel_size == (2, 2, 2) and conv.patch.in_channels == 16
    clip = img.unsqueeze(2).expand(-1, -1, 2, -1, -1)
    torch.testing.assert_close(conv(img), conv(clip), rtol=0, atol=1e-6)
    moving = torch.stack([img, img.flip(-1)], dim=2)
    assert (conv(moving) - conv(clip)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="not divisible"):
        VisionStem(32, 64, [2, 8, 8], conv_channels=[8, 8, 8, 8])


def test_conv_stem_card_builds():
    card = json.loads((bindkit.resources.cards_dir() / "bindkit_small.json").read_text())
    card["name"] = "conv_small"
    card["modalities"]["vision"]["conv_stem"] = [16, 32]
    model = bindkit.build_model(card, modalities=["vision"])
    out = model.encode("vision", torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 128)
    assert torch.allclose(out.norm(dim=-1), torch.ones(2), atol=1e-5)
    keys = [k for k in model.encoders.state_dict()]
    assert any(".stem.conv." in k for k in keys)
    from bindkit.models import reference_layout as rl

    assert all(rl.to_ours(rl.to_reference(k)) == k for k in keys)  # checkpoints name every parameter


def test_mlp_ratio_is_a_card_key():
    """Small students may narrow the MLP (ImageBind's ratio is 4): the card's ``mlp_ratio`` sizes fc1/fc2."""
    card = json.loads((bindkit.resources.cards_dir() / "bindkit_small.json").read_text())
    card["modalities"]["text"]["mlp_ratio"] = 1
    model = bindkit.build_model(card, modalities=["text"])
    block = model.encoders["text"].trunk.blocks[0]
    assert block.mlp.fc1.weight.shape == (64, 64) and block.mlp.fc2.weight.shape == (64, 64)
    default = bindkit.build_model("bindkit_small", modalities=["text"]).encoders["text"].trunk.blocks[0]
    assert default.mlp.fc1.weight.shape == (256, 64)
