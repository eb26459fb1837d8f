"""A deterministic procedural world for training and testing bindkit models without any downloaded data.

Each scene holds one main object with six labelled attributes (plus small grey distractors):

=============  ===========================================================
shape          circle, square, triangle, star, hexagon, cross
colour         red, green, blue, yellow, purple, orange
size           small, medium, large
material       metal, wood, glass, rubber
temperature    cold, warm, hot
motion         still, bouncing, spinning, sliding, shaking
=============  ===========================================================

and is rendered as a paired **image** (RGB, shows everything), **caption** (templated English with
synonyms, mentions a random subset), **audio** (pitch <- size, timbre <- material, rhythm <- motion),
**depth** (same geometry, metric), **thermal** (hot is bright, on a fixed scale) and **IMU** (accelerometer
and gyroscope of a sensor on the object; pattern <- motion). See the ``render_*`` modules for what each
signal encodes. Six shape x colour combinations (:data:`HELD_OUT`) never occur in the ``train``/``test``
splits, only in ``compositional``.

In memory::

    from bindkit.datasets import synthetic
    s = synthetic.sample(0, seed=0)                  # dict: labels, text, image, audio, depth, thermal, imu
    model.embed(image=[s["image"]], text=[s["text"]], audio=[(s["audio"], s["audio_rate"])],
                depth=[s["depth"]], thermal=[s["thermal"]], imu=[s["imu"]])
    synthetic.classes("material")                    # ['metal', 'wood', 'glass', 'rubber']

On disk (files + pair manifests; see :func:`generate` for the layout)::

    synthetic.generate("world", n=5000, seed=0)
    # or: bindkit datasets synthetic --out world --n 5000

A small gallery of every modality, indexed with a model (what ``bindkit demo`` and ``demos/app.py`` search;
see :mod:`~bindkit.datasets.synthetic.gallery`)::

    with synthetic.build_gallery("gallery", model, n=60, videos=8) as g:
        g.index.search(text="a red shape", k=3)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ArgumentError
from .captions import caption
from .gallery import GALLERY_KINDS, Gallery, build_gallery, gallery_key, gallery_kinds, write_video
from .microphone import MICS, apply_microphone
from .render_audio import render_audio
from .render_image import render_image
from .render_imu import render_imu
from .render_maps import celsius_to_8bit, depth_to_mm, render_depth, render_thermal
from .world import ATTRIBUTES, HELD_OUT, SPLITS, Scene, allowed_combos, draw_scene, streams

#: Default rendering parameters (all overridable in :func:`sample` and :func:`generate`).
DEFAULTS: dict[str, Any] = {
    "size": 64,            # image, depth and thermal side in pixels
    "audio_seconds": 2.0,  # clip length
    "audio_rate": 16000,   # Hz
    "imu_seconds": 4.0,    # recording length
    "imu_rate": 100.0,     # Hz (bindkit's loader resamples the whole recording to the card's length)
    "audio_mic": "clean",  # the microphone (see .microphone): "clean", or "shifted" for domain-shift experiments
}

#: Which attributes each modality carries, i.e. the zero-shot tests that make sense (modality -> attributes).
#: Image shows all six; text names them. The others carry only what their physics carries.
ENCODES: dict[str, tuple[str, ...]] = {
    "image": tuple(ATTRIBUTES),
    "audio": ("material", "size", "motion"),
    "imu": ("motion",),
    "depth": ("shape", "size"),
    "thermal": ("temperature", "shape"),
}

#: Prompt templates per attribute for zero-shot classification (``{}`` is replaced by a class name); they
#: read like the captions the text encoder was trained on.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "shape": ("a {}", "a {} shape", "photo of a {}"),
    "colour": ("a {} shape", "a {} object", "something {}"),
    "size": ("a {} shape", "a {} object"),
    "material": ("a {} shape", "a {} object", "something made of {}"),
    "temperature": ("a {} shape", "a {} object"),
    "motion": ("a {} shape", "a {} object", "something {}"),
}


def classes(attribute: str) -> list[str]:
    """Class names of ``attribute`` (shape, colour, size, material, temperature, motion), in label order."""
    if attribute not in ATTRIBUTES:
        raise ArgumentError(f"unknown attribute {attribute!r}; expected one of {', '.join(ATTRIBUTES)}")
    return list(ATTRIBUTES[attribute])


def templates(attribute: str) -> list[str]:
    """Suggested prompt templates for zero-shot classification of ``attribute``."""
    classes(attribute)
    return list(TEMPLATES[attribute])


def scene(index: int, seed: int = 0, split: str = "train") -> Scene:
    """The scene (labels and geometry, no rendering) of sample ``index``."""
    return draw_scene(streams(seed, split, index)[0], seed, split, index)


def sample(index: int, seed: int = 0, split: str = "train", **params: Any) -> dict[str, Any]:
    """Render sample ``index`` of ``split`` (train, val, test or compositional) under ``seed``, in memory.

    ``params`` override :data:`DEFAULTS` (size, audio_seconds, audio_rate, imu_seconds, imu_rate, audio_mic).
    ``audio_mic="shifted"`` records the sound with another microphone (:mod:`.microphone`); everything else,
    the scene included, stays the same.

    Returns a dict with:
        ``labels`` ({attribute: class name}), ``attributes`` (labels plus geometry and physics), ``scene``;
        ``text`` (str);
        ``image`` uint8 (size, size, 3);
        ``audio`` float32 (samples,) in [-1, 1] and ``audio_rate``;
        ``depth`` float32 (size, size) metres (what the 16-bit PNG holds, in mm);
        ``thermal`` uint8 (size, size) on the fixed scale of
        :func:`~bindkit.datasets.synthetic.render_maps.celsius_to_8bit` and ``thermal_c`` in Celsius;
        ``imu`` float32 (T, 6) accel x/y/z (m/s^2), gyro x/y/z (rad/s), and ``imu_rate``.

    The same arguments always give the same arrays, and the files :func:`generate` writes hold exactly them
    (up to the files' quantisation: depth in mm, audio 16-bit, IMU 3 decimals).
    """
    p = {**DEFAULTS, **params}
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ArgumentError(f"unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(DEFAULTS)}")
    size = int(p["size"])
    if size < 16:
        raise ArgumentError(f"size must be at least 16 pixels, got {size}")
    if p["audio_mic"] not in MICS:
        raise ArgumentError(f"unknown audio_mic {p['audio_mic']!r}; choose among {', '.join(MICS)}")
    r_scene, r_image, r_text, r_audio, r_depth, r_thermal, r_imu, _ = streams(seed, split, index)
    sc = draw_scene(r_scene, seed, split, index)
    thermal_c = render_thermal(sc, r_thermal, size)
    audio = render_audio(sc, r_audio, float(p["audio_seconds"]), int(p["audio_rate"]))
    if p["audio_mic"] != "clean":  # its own stream (the 9th child): the other eight, and so the scene, unchanged
        audio = apply_microphone(audio, int(p["audio_rate"]), p["audio_mic"], streams(seed, split, index, 9)[8])
    return {
        "index": int(index),
        "split": split,
        "seed": int(seed),
        "labels": sc.labels,
        "attributes": sc.to_dict(),
        "scene": sc,
        "text": caption(sc, r_text),
        "image": render_image(sc, r_image, size),
        "audio": audio,
        "audio_rate": int(p["audio_rate"]),
        "depth": render_depth(sc, r_depth, size).astype(np.float32),
        "thermal": celsius_to_8bit(thermal_c),
        "thermal_c": thermal_c.astype(np.float32),
        "imu": render_imu(sc, r_imu, float(p["imu_seconds"]), float(p["imu_rate"])).astype(np.float32),
        "imu_rate": float(p["imu_rate"]),
    }


def generate(out_dir: str, n: int = 5000, seed: int = 0, **kwargs: Any) -> dict[str, Any]:
    """Write the world to ``out_dir``; see :func:`bindkit.datasets.synthetic.writer.generate`."""
    from .writer import generate as _generate

    return _generate(out_dir, n=n, seed=seed, **kwargs)


__all__ = [
    "ATTRIBUTES", "DEFAULTS", "ENCODES", "GALLERY_KINDS", "Gallery", "HELD_OUT", "MICS", "SPLITS", "Scene",
    "TEMPLATES", "allowed_combos", "apply_microphone", "build_gallery", "caption", "celsius_to_8bit", "classes",
    "depth_to_mm", "gallery_key", "gallery_kinds", "generate", "render_audio", "render_depth", "render_image",
    "render_imu", "render_thermal", "sample", "scene", "templates", "write_video",
]
