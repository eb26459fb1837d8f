"""Image loader: reference parity, every PIL mode, every item type, clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from bindkit.errors import InputError
from bindkit.inputs import preprocess


@pytest.fixture(scope="module")
def rgb() -> Image.Image:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    # smooth structure plus noise, non-square, so resize and crop both matter
    return Image.fromarray(base).resize((300, 180), Image.BILINEAR)


def png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def test_matches_reference_preprocessing(samples_dir, fixture_dir):
    want = torch.load(fixture_dir / "inputs.pt", weights_only=True)["vision"]
    got = preprocess("image", sorted(samples_dir.glob("image/*.jpg")), card="imagebind_tiny")
    assert got.shape == want.shape and got.dtype == torch.float32
    assert (got - want).abs().max().item() < 1e-5


def test_every_item_type_gives_the_same_rows(rgb, tmp_path):
    path = tmp_path / "x.png"
    rgb.save(path)
    arr = np.array(rgb)
    items = [
        path,
        str(path),
        path.read_bytes(),
        io.BytesIO(path.read_bytes()),
        rgb,
        arr,
        torch.from_numpy(arr).permute(2, 0, 1),  # C x H x W uint8
        torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0,  # C x H x W float in [0, 1]
    ]
    got = preprocess("image", items, num_workers=2)
    assert got.shape == (len(items), 3, 224, 224)
    for row in got[1:]:
        assert (row - got[0]).abs().max().item() < 1e-6


def test_alpha_is_dropped_not_composited(rgb):
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(np.tile((np.arange(300) % 256).astype(np.uint8), (180, 1))))
    got = preprocess("image", [png_bytes(rgb), png_bytes(rgba)])
    assert torch.equal(got[0], got[1])


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "LA", "1"])
def test_other_modes_convert_like_pil(rgb, mode):
    im = rgb.convert(mode)
    got = preprocess("image", [im, im.convert("RGB")])
    assert torch.equal(got[0], got[1])


def test_grey_becomes_three_equal_channels(rgb):
    got = preprocess("image", [rgb.convert("L")], mean=[0, 0, 0], std=[1, 1, 1])[0]
    assert torch.equal(got[0], got[1]) and torch.equal(got[1], got[2])


def test_16_bit_images_are_scaled_not_clipped(rgb):
    grey8 = np.asarray(rgb.convert("L"))
    grey16 = Image.fromarray(grey8.astype(np.uint16) * 257)  # the same picture, 16-bit
    assert grey16.mode.startswith("I;16")
    got = preprocess("image", [png_bytes(rgb.convert("L")), png_bytes(grey16), grey16])
    assert (got[1] - got[0]).abs().max().item() < 1e-6
    assert (got[2] - got[0]).abs().max().item() < 1e-6


def test_webp_and_gif_first_frame(rgb):
    other = Image.fromarray(255 - np.asarray(rgb))
    gif = io.BytesIO()
    rgb.save(gif, format="GIF", save_all=True, append_images=[other])
    webp = png_bytes(rgb, format="WEBP", lossless=True)
    got = preprocess("image", [gif.getvalue(), webp, png_bytes(rgb)])
    first_frame = preprocess("image", [Image.open(io.BytesIO(gif.getvalue())).convert("RGB")])[0]
    assert torch.equal(got[0], first_frame)
    assert torch.equal(got[1], got[2])  # lossless WebP decodes to the same pixels


def test_small_and_extreme_aspect_images_give_the_fixed_shape():
    items = [np.zeros((5, 7, 3), np.uint8), np.zeros((10, 900), np.uint8), np.ones((1000, 20, 3), np.uint8)]
    assert preprocess("image", items).shape == (3, 3, 224, 224)


def test_card_and_options_set_the_pipeline(rgb):
    small = preprocess("image", [rgb], size=112)
    assert small.shape == (1, 3, 112, 112)
    plain = preprocess("image", [rgb], mean=[0, 0, 0], std=[1, 1, 1])
    assert plain.min() >= 0 and plain.max() <= 1


def test_unknown_option_lists_the_valid_ones(rgb):
    with pytest.raises(ValueError, match="valid options:.*interpolation.*size"):
        preprocess("image", [rgb], sise=224)
    with pytest.raises(ValueError, match="interpolation"):
        preprocess("image", [rgb], interpolation="fancy")


def test_bad_files_raise_input_error_naming_the_item(tmp_path, samples_dir):
    jpg = (samples_dir / "image" / "dog.jpg").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(jpg[: len(jpg) // 2])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    odd = tmp_path / "notes.xyz"
    odd.write_bytes(b"hello")
    cases = [
        (truncated, str(truncated), "truncated"),
        (empty, str(empty), "empty"),
        (odd, str(odd), "unknown extension"),
        (tmp_path / "missing.jpg", str(tmp_path / "missing.jpg"), "no such file"),
        (tmp_path, str(tmp_path), "directory"),
    ]
    for item, label, words in cases:
        with pytest.raises(InputError, match=words) as info:
            preprocess("image", [item])
        assert info.value.item == label and info.value.modality == "image"
    with pytest.raises(InputError, match="not a readable image") as info:
        preprocess("image", [samples_dir / "image" / "dog.jpg", b"\x00garbage" * 10])
    assert info.value.item == "#1"
    with pytest.raises(InputError, match="wrong array shape"):
        preprocess("image", [np.zeros((4, 5, 6, 3), np.uint8)])
    with pytest.raises(InputError, match="text mode"):
        preprocess("image", [io.StringIO("not bytes")])


@pytest.mark.parametrize("side", [10_000, 20_000])  # over PIL's bomb limit (89.5 Mpx: warning; twice that: error)
def test_decompression_bomb_is_refused_before_decoding(tmp_path, side):
    # A 1-bit PNG of side x side pixels is a few kB to 50 kB on disk but 300 MB to 1.2 GB once decoded as RGB.
    bomb = tmp_path / "bomb.png"
    Image.new("1", (side, side)).save(bomb)
    assert bomb.stat().st_size < 100_000
    for kind in ("image", "thermal"):  # the loaders that share open_image
        with pytest.raises(InputError, match="decompression bomb.*MAX_IMAGE_PIXELS") as info:
            preprocess(kind, [bomb])
        assert info.value.item == str(bomb) and f"{side * side} pixels" in str(info.value)
