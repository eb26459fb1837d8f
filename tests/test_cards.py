"""Encoder cards: discovery, user cards, reference constructor names, validation messages."""

from __future__ import annotations

import json

import pytest

import bindkit
from bindkit.cards import from_reference_kwargs
from bindkit.errors import CardError


def test_builtin_cards_are_listed_and_complete():
    names = bindkit.list_encoders()
    assert {"imagebind_huge", "imagebind_tiny"} <= set(names)
    huge = bindkit.load_card("imagebind_huge")
    assert huge.out_embed_dim == 1024
    assert huge.modalities["vision"]["embed_dim"] == 1280 and huge.modalities["imu"]["num_blocks"] == 6
    assert "CC-BY-NC" in huge.weights["license"] and huge.weights["url"].endswith("imagebind_huge.pth")
    assert huge.preprocess_for("audio")["target_length"] == 204


def test_user_card_from_env_directory_shadows_nothing_else(tmp_path, monkeypatch):
    card = bindkit.load_card("imagebind_tiny").to_dict()
    card["name"] = "my_sensor_model"
    card["modalities"] = {"imu": dict(card["modalities"]["imu"], embed_dim=16, num_heads=2)}
    (tmp_path / "my_sensor_model.json").write_text(json.dumps(card))
    monkeypatch.setenv("BINDKIT_ENCODERS", str(tmp_path))
    assert "my_sensor_model" in bindkit.list_encoders()
    model = bindkit.build_model("my_sensor_model")
    assert model.modalities == ("imu",)
    assert model.encoders["imu"].stem.pos_embed.shape[-1] == 16


def test_card_by_path_and_reference_config_file(fixture_dir):
    card = bindkit.load_card(fixture_dir / "config.json")  # the reference's flat constructor names
    assert card.modalities["thermal"]["embed_dim"] == 48 and card.out_embed_dim == 32
    assert card.modalities["audio"]["stride"] == 10  # unnamed hyper-parameters keep the huge defaults


def test_reference_kwargs_translate_and_unknown_ones_fail():
    d = from_reference_kwargs({"vision_embed_dim": 96, "audio_stride": 12, "video_frames": 2})
    assert d["modalities"]["vision"]["embed_dim"] == 96 and d["modalities"]["audio"]["stride"] == 12
    with pytest.raises(CardError, match="unknown reference hyper-parameter.*vision_embed_dims"):
        from_reference_kwargs({"vision_embed_dims": 96})


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c.pop("out_embed_dim"), "missing top-level key"),
        (lambda c: c["modalities"].update(smell={"embed_dim": 8}), "unknown modality 'smell'"),
        (lambda c: c["modalities"]["text"].pop("vocab_size"), "'text' lacks vocab_size"),
        (lambda c: c["modalities"]["depth"].update(num_heads=5), "not divisible by num_heads=5"),
        (lambda c: c["modalities"]["text"].update(mlp_ratio=[1, 8, 2]), r"text.mlp_ratio .*list of 2 .*\[1, 8, 2\]"),
        (lambda c: c["modalities"]["text"].update(mlp_ratio=0), r"text.mlp_ratio must be a positive integer"),
        (lambda c: c["modalities"]["text"].update(add_bias_kv=True), r"text.add_bias_kv is not supported"),
    ],
)
def test_invalid_cards_say_what_is_wrong(mutate, message):
    card = bindkit.load_card("imagebind_tiny").to_dict()
    mutate(card)
    with pytest.raises(CardError, match=message):
        bindkit.load_card(card)


def test_unknown_card_name_lists_known_ones(tmp_path):
    with pytest.raises(CardError, match="no encoder card named 'imagebind_gigantic'.*imagebind_huge"):
        bindkit.load_card("imagebind_gigantic")
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(CardError, match="not valid JSON"):
        bindkit.load_card(bad)
