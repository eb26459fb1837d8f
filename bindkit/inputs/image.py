"""Image loader: any PIL-readable file (or PIL image / array) -> 3 x size x size CLIP-normalised tensor.

The pipeline is the reference's: convert to RGB, resize the shorter side to ``size`` (bicubic, on the PIL
image), centre crop, ``ToTensor`` (/255), normalise with the CLIP mean/std. With ``transform="open_clip"`` (cards
whose image encoder comes from open_clip) the RGB image goes through open_clip's own evaluation transform instead
(``open_clip.image_transform``; its ``resize_mode`` and ``fill_color`` apply). Helpers here (opening, mode
conversion, the resize+crop transform) are shared with the thermal and depth loaders.
"""

from __future__ import annotations

import io
import warnings
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from ..errors import describe_exc
from ..openclip import image_transform
from .sources import Source

DEFAULTS: dict[str, Any] = {
    "size": 224,
    "interpolation": "bicubic",
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "high_bit_depth": "scale",
    "transform": "bindkit",
}
#: ``transform`` values: bindkit's pipeline above, or open_clip's (cards set it for open_clip image towers).
_TRANSFORMS = ("bindkit", "open_clip")
_OPEN_CLIP_RESIZE = ("shortest", "longest", "squash")

_INTERPOLATIONS = {
    "nearest": transforms.InterpolationMode.NEAREST,
    "bilinear": transforms.InterpolationMode.BILINEAR,
    "bicubic": transforms.InterpolationMode.BICUBIC,
    "lanczos": transforms.InterpolationMode.LANCZOS,
    "box": transforms.InterpolationMode.BOX,
    "hamming": transforms.InterpolationMode.HAMMING,
}
_HIGH_BIT = ("scale", "minmax")
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError)


def shape(p: dict[str, Any]) -> tuple[int, ...]:
    """Shape of one preprocessed image: (3, size, size)."""
    return (3, int(p["size"]), int(p["size"]))


def validate(p: dict[str, Any]) -> None:
    """Raise ValueError for option values this loader cannot use."""
    interpolation_mode(p["interpolation"])
    if p.get("high_bit_depth", "scale") not in _HIGH_BIT:
        raise ValueError(f"high_bit_depth must be one of {', '.join(_HIGH_BIT)}, got {p['high_bit_depth']!r}")
    if int(p["size"]) <= 0:
        raise ValueError(f"size must be positive, got {p['size']!r}")
    transform = p.get("transform", "bindkit")
    if transform not in _TRANSFORMS:
        raise ValueError(f"transform must be one of {', '.join(_TRANSFORMS)}, got {transform!r}")
    if transform == "open_clip":
        if p["interpolation"] not in ("bicubic", "bilinear"):
            raise ValueError(f"open_clip's transform interpolates bicubic or bilinear, got {p['interpolation']!r}")
        if p.get("resize_mode", "shortest") not in _OPEN_CLIP_RESIZE:
            raise ValueError(f"resize_mode must be one of {', '.join(_OPEN_CLIP_RESIZE)}, got {p['resize_mode']!r}")


def interpolation_mode(name: str) -> transforms.InterpolationMode:
    """torchvision's InterpolationMode for a card's interpolation name (``"bicubic"``...)."""
    try:
        return _INTERPOLATIONS[str(name).lower()]
    except KeyError:
        raise ValueError(
            f"unknown interpolation {name!r}; expected one of {', '.join(_INTERPOLATIONS)}"
        ) from None


@lru_cache(maxsize=32)
def resize_crop(size: int, interpolation: str) -> transforms.Compose:
    """Resize the shorter side to ``size`` then centre crop ``size`` x ``size`` (PIL image or tensor)."""
    return transforms.Compose(
        [transforms.Resize(size, interpolation=interpolation_mode(interpolation)), transforms.CenterCrop(size)]
    )


def open_image(src: Source) -> Image.Image:
    """Decode ``src`` to a fully loaded PIL image (first frame of GIF/WebP animations). Arrays and tensors
    (H x W, H x W x C, or C x H x W with C in 1, 3, 4) become PIL images: uint8 as is, floats taken as [0, 1],
    16-bit integers kept 16-bit (mode ``I;16``). Raises InputError for undecodable or truncated files, and for
    files over PIL's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``: refused before decoding)."""
    if src.obj is not None:
        if isinstance(src.obj, Image.Image):
            return src.obj
        return array_to_pil(src.obj, src)
    if src.ext == ".npy":
        return array_to_pil(load_npy(src), src)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL warns on odd palettes/EXIF; they decode fine
            # ...but not on a possible decompression bomb: refuse it at open, before a pixel is decoded.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(src.open())
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise src.fail(f"refused, not decoded: {describe_exc(exc, with_type=False)} (PIL.Image.MAX_IMAGE_PIXELS "
                       f"= {Image.MAX_IMAGE_PIXELS} sets the limit: raise it, or set it to None, to read large "
                       "images you trust)") from None
    except _DECODE_ERRORS as exc:
        raise src.fail(f"not a readable image ({describe_exc(exc)}); the file may be truncated or corrupt") from None
    return im


def load_npy(src: Source) -> np.ndarray:
    """The array in a ``.npy`` item (never unpickles objects)."""
    try:
        return np.load(io.BytesIO(src.read_bytes()), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise src.fail(f"not a readable .npy file ({describe_exc(exc)})") from None


def array_to_pil(arr: Any, src: Source) -> Image.Image:
    """A numpy array / tensor image as a PIL image (see :func:`open_image` for the accepted layouts)."""
    is_tensor = isinstance(arr, torch.Tensor)
    a = arr.detach().cpu().numpy() if is_tensor else np.asarray(arr)
    if a.ndim == 3 and a.shape[-1] not in (1, 3, 4) and a.shape[0] in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # C x H x W (torch's layout) -> H x W x C
    elif a.ndim == 3 and is_tensor and a.shape[0] in (1, 3, 4) and a.shape[-1] in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # ambiguous tiny image: tensors are C x H x W
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)) or min(a.shape[:2]) == 0:
        raise src.fail(f"wrong array shape {tuple(a.shape)}; expected H x W, H x W x 3/4 or 3/4 x H x W")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise src.fail("array contains NaN or inf")
        a = np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif a.dtype == np.uint16 and a.ndim == 2:
        return Image.fromarray(a)  # mode I;16: converted like a 16-bit PNG
    elif a.dtype != np.uint8:
        if a.dtype.itemsize > 1 and a.max(initial=0) > 255:
            a = np.clip(a, 0, 65535) / 257.0  # 16-bit range, like I;16 files
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(a))


def to_mode(im: Image.Image, mode: str, src: Source, high_bit_depth: str = "scale") -> Image.Image:
    """Convert ``im`` to ``"RGB"`` or ``"L"``: alpha is dropped (not composited); 16/32-bit integer and float
    images are brought to 8 bits first — ``"scale"`` maps the full 16-bit range (v / 257; floats in [0, 1]
    times 255), ``"minmax"`` stretches the image's own min..max to 0..255."""
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        im = _to_8bit(im, high_bit_depth)
    if im.mode == mode:
        return im
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if im.mode in ("P", "PA") and mode == "RGB":
                im = im.convert("RGBA")  # resolves palette transparency; alpha is dropped below
            return im.convert(mode)
    except (ValueError, OSError) as exc:
        raise src.fail(f"cannot convert PIL mode {im.mode} to {mode} ({describe_exc(exc)})") from None


def _to_8bit(im: Image.Image, how: str) -> Image.Image:
    a = np.asarray(im).astype(np.float64)
    finite = np.isfinite(a)
    a = np.where(finite, a, 0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if how == "minmax" or (im.mode == "F" and (lo < 0 or hi > 1)):
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
    elif im.mode == "F":
        a = a * 255.0
    else:
        a = np.clip(a, 0, 65535) / 257.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode="L")


@lru_cache(maxsize=32)
def _pipeline(size: int, interpolation: str, mean: tuple, std: tuple) -> transforms.Compose:
    return transforms.Compose(
        [resize_crop(size, interpolation), transforms.ToTensor(), transforms.Normalize(mean=mean, std=std)]
    )


def load(src: Source, p: dict[str, Any]) -> torch.Tensor:
    """One image -> float32 tensor (3, size, size), CLIP-normalised."""
    im = to_mode(open_image(src), "RGB", src, p.get("high_bit_depth", "scale"))
    if p.get("transform") == "open_clip":
        pipe = image_transform(int(p["size"]), str(p["interpolation"]), tuple(p["mean"]), tuple(p["std"]),
                               str(p.get("resize_mode", "shortest")), int(p.get("fill_color", 0)))
    else:
        pipe = _pipeline(int(p["size"]), str(p["interpolation"]), tuple(p["mean"]), tuple(p["std"]))
    return pipe(im)
