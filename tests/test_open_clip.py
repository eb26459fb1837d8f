"""open_clip anchors: a card whose image and text encoders come from open_clip (a tiny custom architecture with
random weights, saved to a temporary checkpoint; no network) and whose audio encoder is bindkit's.

Shows: bindkit's image/text embeddings are open_clip's own normalised encode_image/encode_text on the same inputs
(files through bindkit's loading path vs open_clip's preprocess; strings through open_clip's tokenizer);
``bindkit train --freeze image,text`` binds audio and keeps every tower tensor bit-identical; the trained directory
loads, embeds audio into the same space, and indexes for text -> audio search."""

from __future__ import annotations

import copy
import json
import sys

import numpy as np
import open_clip  # a dependency of bindkit (its tokenizer)
import pytest
import torch

import bindkit
from bindkit.errors import CardError, ModalityError, WeightsNotFoundError
from train_helpers import cli, tiny_card, toy_world

NAME = "bindkit-test-tiny-clip"  # registered with open_clip by the fixture below (its add_model_config)
CONFIG = {"embed_dim": 32,
          "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16},
          "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
TEXTS = ["a red square", "", "A Blue   PATCH &amp; a green block!", "Ünïcödé text, naïve café",
         "a very long caption " * 20]


@pytest.fixture(scope="module")
def anchor(tmp_path_factory):
    """A random-weight open_clip model of the tiny config, its checkpoint file, open_clip's own preprocess and
    tokenizer, and a bindkit card taking image and text from it (audio: the tiny bindkit card's encoder). Runs the
    module on one intra-op thread (2 shared cores: faster under load, same numbers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("open_clip")
    (root / f"{NAME}.json").write_text(json.dumps(CONFIG))
    open_clip.add_model_config(root / f"{NAME}.json")
    torch.manual_seed(123)
    checkpoint = root / "tiny_clip.pt"
    torch.save(open_clip.create_model(NAME).state_dict(), checkpoint)
    reference, _, preprocess = open_clip.create_model_and_transforms(NAME, pretrained=str(checkpoint))
    base = json.loads(tiny_card(root / "tiny.json").read_text())
    card = {"name": "oclip_tiny_bind", "out_embed_dim": 32,
            "open_clip": {"model": NAME, "config": CONFIG, "pretrained": str(checkpoint)},
            "modalities": {"vision": {"source": "open_clip"}, "text": {"source": "open_clip"},
                           "audio": base["modalities"]["audio"]},
            "preprocess": {"audio": base["preprocess"]["audio"]}}
    yield {"root": root, "card": card, "checkpoint": checkpoint, "reference": reference.eval(),
           "preprocess": preprocess, "tokenizer": open_clip.get_tokenizer(NAME)}
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images(anchor):
    """Image files of several sizes and formats (RGB, so open_clip's own mode conversion is a no-op)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h, ext) in enumerate([(50, 40, "png"), (31, 77, "jpg"), (64, 64, "png"), (200, 90, "webp")]):
        path = anchor["root"] / f"img{i}.{ext}"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def model(anchor):
    return bindkit.build_model(anchor["card"])


def _open_clip_images(anchor, paths) -> np.ndarray:
    from PIL import Image

    batch = torch.stack([anchor["preprocess"](Image.open(p)) for p in paths])
    with torch.no_grad():
        return anchor["reference"].encode_image(batch, normalize=True).numpy()


def _open_clip_texts(anchor, texts) -> np.ndarray:
    with torch.no_grad():
        return anchor["reference"].encode_text(anchor["tokenizer"](texts), normalize=True).numpy()


def _towers(model) -> dict[str, torch.Tensor]:
    """The open_clip state dict the model's towers hold (open_clip's key names)."""
    out = {f"visual.{k}": t for k, t in model.encoders["vision"].open_clip["visual"].state_dict().items()}
    out.update(model.encoders["text"].open_clip.state_dict())
    return out


def _assert_towers_equal(model, anchor) -> None:
    want = anchor["reference"].state_dict()
    got = _towers(model)
    assert sorted(got) == sorted(want)
    different = [k for k in want if not torch.equal(got[k], want[k])]
    assert not different, different[:5]


# --- parity -----------------------------------------------------------------------------------------------

def test_image_embeddings_are_open_clips_own(anchor, model, images):
    got = model.embed(image=[str(p) for p in images], strict=True)["image"]
    want = _open_clip_images(anchor, images)
    assert got.shape == (len(images), 32)
    assert np.abs(got - want).max() <= 1e-5
    from PIL import Image  # the loading path itself: bindkit's batch is open_clip's preprocess, bit for bit

    batch = bindkit.preprocess("image", [str(p) for p in images], card=model)
    assert torch.equal(batch, torch.stack([anchor["preprocess"](Image.open(p)) for p in images]))


def test_text_embeddings_are_open_clips_own(anchor, model):
    got = model.embed(text=TEXTS, strict=True)["text"]
    assert np.abs(got - _open_clip_texts(anchor, TEXTS)).max() <= 1e-5
    assert torch.equal(bindkit.preprocess("text", TEXTS, card=model), anchor["tokenizer"](TEXTS))


def test_logit_scale_and_space_are_open_clips(anchor, model):
    assert model.dim == 32 and model.logit_scale("image") is None
    want = float(anchor["reference"].logit_scale.detach().exp())
    assert model.logit_scale("text") == pytest.approx(want, rel=1e-6)
    assert model.card.modalities["vision"] == {"source": "open_clip", "image_size": 32}
    assert model.card.modalities["text"] == {"source": "open_clip", "context_length": 16, "vocab_size": 49408}
    _assert_towers_equal(model, anchor)


@pytest.mark.parametrize("mode", ["longest", "squash"])
def test_other_open_clip_resize_modes_follow_open_clips_transform(anchor, images, mode):
    from PIL import Image

    card = copy.deepcopy(anchor["card"])
    card["preprocess"]["image"] = {"resize_mode": mode, "fill_color": 7}
    got = bindkit.preprocess("image", [str(p) for p in images], card=card)
    pipe = open_clip.image_transform(32, is_train=False, resize_mode=mode, fill_color=7)
    assert torch.equal(got, torch.stack([pipe(Image.open(p)) for p in images]))


def test_open_clip_towers_alone_load_from_the_card(anchor, model):
    towers = bindkit.load_model(anchor["card"], modalities=["image", "text"])
    assert towers.modalities == ("vision", "text")
    assert towers.fingerprint("image") == model.fingerprint("image")
    assert towers.fingerprint("text") == model.fingerprint("text")


def test_video_is_refused_by_an_open_clip_image_tower(model):
    with pytest.raises(ModalityError, match="open_clip.*video"):
        model.encode("video", torch.zeros(1, 1, 3, 2, 32, 32))


# --- training binds audio to the frozen towers ----------------------------------------------------------

@pytest.fixture(scope="module")
def bound(anchor):
    """bindkit train image_audio.csv --card <open_clip card> --freeze image,text (Python API), a few steps."""
    data = toy_world(anchor["root"] / "data", n=24, kinds=("audio",))
    out = anchor["root"] / "m_oclip"
    result = bindkit.train(data["audio"], out, card=anchor["card"], freeze="image,text", epochs=1, batch_size=8,
                           max_steps=3, lr=3e-3, val_split=0.25, seed=0, log=lambda msg: None)
    return {"out": out, "data": data, "result": result}


def test_train_binds_audio_and_keeps_the_towers_bit_identical(anchor, model, bound):
    record = json.loads((bound["out"] / "train_record.json").read_text())
    assert record["status"] == "finished" and record["steps"] == 3
    assert record["trainable"] == ["audio"] and record["frozen"] == ["vision", "text"]
    trained = bindkit.load_model(bound["out"])
    assert trained.modalities == ("vision", "text", "audio") and trained.dim == 32
    _assert_towers_equal(trained, anchor)  # every tensor, torch.equal, after save and load
    sounds = sorted((bound["data"]["audio"].parent / "media").glob("snd*.wav"))[:4]
    vecs = trained.embed(audio=[str(s) for s in sounds], strict=True)
    assert vecs["audio"].shape == (4, 32)
    assert np.allclose(np.linalg.norm(vecs["audio"], axis=1), 1, atol=1e-5)
    assert np.abs(trained.embed(text=TEXTS)["text"] - _open_clip_texts(anchor, TEXTS)).max() <= 1e-5
    manifest = json.loads((bound["out"] / "manifest.json").read_text())
    for m in ("vision", "text"):  # the index's identity of the towers: recorded, and unchanged by training
        assert manifest["files"][m]["fingerprint"] == trained.fingerprint(m) == model.fingerprint(m)


def test_int8_quantises_the_bound_encoder_and_leaves_the_towers_fp32(anchor, bound):
    int8 = bindkit.load_model(bound["out"], quantize="int8")
    fp32 = bindkit.load_model(bound["out"])
    assert int8.fingerprint("audio") == fp32.fingerprint("audio") + "+int8"
    assert int8.fingerprint("text") == fp32.fingerprint("text")
    assert np.abs(int8.embed(text=TEXTS)["text"] - _open_clip_texts(anchor, TEXTS)).max() <= 1e-5


def test_cli_continues_from_the_trained_dir_with_towers_frozen(anchor, bound):
    """The issue's command shape: bindkit train image_audio.csv --init DIR --freeze image,text --out DIR2."""
    out2 = anchor["root"] / "m_oclip2"
    cli("train", bound["data"]["audio"], "--init", bound["out"], "--freeze", "image,text", "--out", out2,
        "--max-steps", "2", "--batch-size", "8", "--val-split", "0", "-q")
    trained = bindkit.load_model(out2)
    _assert_towers_equal(trained, anchor)
    first = bindkit.load_model(bound["out"], modalities=["audio"])
    assert not torch.equal(trained.encoders["audio"].head.proj.weight, first.encoders["audio"].head.proj.weight)


def test_index_of_the_bound_model_searches_audio_by_text(anchor, bound, tmp_path):
    trained = bindkit.load_model(bound["out"])
    sounds = [str(s) for s in sorted((bound["data"]["audio"].parent / "media").glob("snd*.wav"))[:6]]
    index = bindkit.Index.create(tmp_path / "idx", model=trained)
    assert all(i is not None for i in index.add(sounds))
    hits = index.search(text="a red square", k=3)["audio"]
    index.close()
    vec = trained.embed(text=["a red square"], audio=sounds)
    stored = vec["audio"].astype(np.float16).astype(np.float32)  # an index keeps vectors in float16
    want = np.sort(stored @ vec["text"][0])[::-1][:3]
    assert np.allclose([h.score for h in hits], want, atol=1e-5)
    bindkit.Index.open(tmp_path / "idx", model=trained).close()
    # other tower weights under the same card name: the recorded open_clip fingerprints refuse them
    other = json.loads((bound["out"] / "card.json").read_text())
    other["open_clip"]["pretrained"] = None
    torch.manual_seed(1)
    stranger = bindkit.build_model(other)
    with pytest.raises(bindkit.IndexStoreError, match="fingerprint"):
        bindkit.Index.open(tmp_path / "idx", model=stranger)


# --- cards and errors -----------------------------------------------------------------------------------

def test_example_card_parses_with_bindkit_small_encoders():
    card = bindkit.load_card("openclip_vitb32_bind")  # parsed only: its weights are never fetched in tests
    small = bindkit.load_card("bindkit_small")
    assert card.open_clip == {"model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"}
    assert card.open_clip_modalities == ["vision", "text"] and card.out_embed_dim == 512
    for m in ("audio", "depth", "thermal", "imu"):
        assert card.modalities[m] == small.modalities[m]
        assert card.preprocess_for(m) == small.preprocess_for(m)
    assert card.to_dict()["open_clip"] == card.open_clip


def _card(anchor, **changes):
    card = copy.deepcopy(anchor["card"])
    for key, value in changes.items():
        card["open_clip"][key] = value
    return card


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["modalities"].update(audio={"source": "open_clip"}), "open_clip.*image.*text.*only"),
    (lambda c: c.pop("open_clip"), "no \"open_clip\" block"),
    (lambda c: c["open_clip"].update(tag="x"), "unknown key.*tag"),
    (lambda c: c["modalities"]["vision"].update(model="ViT-B-32"), "top-level \"open_clip\" block"),
    (lambda c: c["modalities"]["vision"].update(source="timm"), "source 'timm'"),
    (lambda c: c["open_clip"].update(config={"embed_dim": 32}), "vision_cfg"),
])
def test_bad_open_clip_cards_are_refused_clearly(anchor, edit, message):
    card = copy.deepcopy(anchor["card"])
    edit(card)
    with pytest.raises(CardError, match=message):
        bindkit.load_card(card)


def test_open_clip_resolution_errors_name_the_fix(anchor, tmp_path, monkeypatch):
    from bindkit.models.open_clip_tower import DOWNLOAD_ENV, resolve_checkpoint

    monkeypatch.delenv(DOWNLOAD_ENV, raising=False)
    vitb = {"name": "vitb", "out_embed_dim": 512, "modalities": {"text": {"source": "open_clip"}},
            "open_clip": {"model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k", "cache_dir": str(tmp_path)}}
    with pytest.raises(WeightsNotFoundError, match=f"not in the local cache.*create_model.*{DOWNLOAD_ENV}=1"):
        bindkit.build_model(vitb)  # an empty cache dir: never downloaded
    with pytest.raises(CardError, match="QuickGELU.*ViT-B-32-quickgelu"):
        resolve_checkpoint(bindkit.load_card(dict(vitb, open_clip={"model": "ViT-B-32", "pretrained": "openai"})))
    with pytest.raises(CardError, match="neither a file nor a pretrained tag.*laion2b_s34b_b79k"):
        resolve_checkpoint(bindkit.load_card(dict(vitb, open_clip={"model": "ViT-B-32", "pretrained": "nope"})))
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        bindkit.build_model(_card(anchor, pretrained=str(tmp_path / "missing.pt")))
    with pytest.raises(CardError, match="no model named 'ViT-B-23'.*ViT-B-32"):
        bindkit.build_model(dict(vitb, open_clip={"model": "ViT-B-23"}), device="meta")
    with pytest.raises(CardError, match="out_embed_dim is 64.*32"):
        bindkit.build_model(dict(anchor["card"], out_embed_dim=64), device="meta")
    with pytest.raises(WeightsNotFoundError, match="bindkit train image_audio.csv --card oclip_tiny_bind"):
        bindkit.load_model(anchor["card"])  # the audio encoder has no weights until trained
    with pytest.raises(WeightsNotFoundError, match="names no open_clip weights"):
        bindkit.load_model(_card(anchor, pretrained=None), modalities=["text"])


def test_missing_open_clip_package_is_a_clear_error(anchor, monkeypatch):
    card = copy.deepcopy(anchor["card"])
    card["open_clip"]["model"] = "bindkit-test-absent-package"  # a config not resolved (cached) before
    card["open_clip"]["config"] = CONFIG
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(CardError, match=r"pip install open_clip_torch"):
        bindkit.build_model(card, device="meta")


def test_init_from_a_trained_dir_needs_no_open_clip_weights(anchor, bound, tmp_path):
    """A trained folder holds the towers: continuing from it on a machine without the card's pretrained weights
    (here: the checkpoint path the card names is gone) neither reads nor needs them."""
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(bound["out"], moved)
    card = json.loads((moved / "card.json").read_text())
    card["open_clip"]["pretrained"] = str(tmp_path / "gone" / "open_clip_model.safetensors")
    (moved / "card.json").write_text(json.dumps(card))
    assert bindkit.load_model(moved).dim == 32
    out = tmp_path / "continued"
    cli("train", bound["data"]["audio"], "--init", moved, "--freeze", "image,text", "--out", out,
        "--max-steps", "1", "--batch-size", "8", "--val-split", "0", "-q")
    _assert_towers_equal(bindkit.load_model(out), anchor)
