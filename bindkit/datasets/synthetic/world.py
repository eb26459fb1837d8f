"""The synthetic world: its attributes, the held-out combinations, and how one scene is drawn from a seed.

A scene has one **main object** (the one every label and every modality is about) and up to two small grey
**distractors** (they appear in the image, depth and thermal maps, never in the caption, sound or IMU).

Every sample is a pure function of ``(seed, split, index)``: its random streams come from
``numpy.random.SeedSequence([seed, split code, index])``, one child stream per modality, so a sample can be
made alone (:func:`bindkit.datasets.synthetic.sample`) and changing one renderer never changes another's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import ArgumentError

#: The labelled attributes and their classes (class names are the words prompts use).
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "cross")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES: tuple[str, ...] = ("small", "medium", "large")
MATERIALS: tuple[str, ...] = ("metal", "wood", "glass", "rubber")
TEMPERATURES: tuple[str, ...] = ("cold", "warm", "hot")
MOTIONS: tuple[str, ...] = ("still", "bouncing", "spinning", "sliding", "shaking")

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": COLOURS,
    "size": SIZES,
    "material": MATERIALS,
    "temperature": TEMPERATURES,
    "motion": MOTIONS,
}

#: shape x colour combinations that never occur in ``train``/``val``/``test``, only in ``compositional``.
#: A Latin-square choice: every shape and every colour is held out exactly once, so each is still seen in
#: training with the five others.
HELD_OUT: frozenset[tuple[str, str]] = frozenset({
    ("circle", "green"),
    ("square", "purple"),
    ("triangle", "yellow"),
    ("star", "blue"),
    ("hexagon", "red"),
    ("cross", "orange"),
})

#: Split names and the code each mixes into the seed (so the splits never share a random stream).
SPLITS: dict[str, int] = {"train": 0, "test": 1, "compositional": 2, "val": 3}

#: Base RGB of each colour (jittered per sample).
RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 165, 55),
    "blue": (40, 80, 215),
    "yellow": (235, 210, 35),
    "purple": (135, 55, 185),
    "orange": (245, 135, 25),
}

#: Object half-extent as a fraction of the image side.
RADIUS: dict[str, tuple[float, float]] = {"small": (0.11, 0.14), "medium": (0.17, 0.21), "large": (0.25, 0.29)}

#: Temperature ranges in degrees Celsius.
CELSIUS: dict[str, tuple[float, float]] = {"cold": (-10.0, 5.0), "warm": (30.0, 40.0), "hot": (60.0, 110.0)}

#: Coefficient of restitution (how high a bouncing object comes back): shapes both the sound's rhythm and
#: the IMU's bounce intervals, so the two agree.
RESTITUTION: dict[str, float] = {"metal": 0.62, "wood": 0.55, "glass": 0.5, "rubber": 0.8}

#: Thermal emissivity: shiny metal shows less than its true temperature to an infrared camera.
EMISSIVITY: dict[str, float] = {"metal": 0.55, "wood": 0.93, "glass": 0.9, "rubber": 0.95}

_CODE_OF = {v: k for k, v in SPLITS.items()}


@dataclass(frozen=True)
class Distractor:
    """A small grey object in the background: centre and half-extent (fractions of the side), its angle in
    degrees, its grey level (0..255), its distance in metres and its temperature in degrees Celsius."""

    shape: str
    cx: float
    cy: float
    radius: float
    angle: float
    grey: int
    distance_m: float
    celsius: float


@dataclass(frozen=True)
class Scene:
    """Everything the renderers need about one sample. Label fields hold class names (see ATTRIBUTES)."""

    split: str
    index: int
    seed: int
    shape: str
    colour: str
    size: str
    material: str
    temperature: str
    motion: str
    rgb: tuple[int, int, int]
    cx: float
    cy: float
    radius: float
    angle: float
    distance_m: float
    celsius: float
    ambient_c: float
    direction: int  # +1 / -1: which way it slides, spins or first moves
    horizon: float  # where the floor meets the back wall, as a fraction of the height (image, depth, thermal)
    distractors: tuple[Distractor, ...] = field(default_factory=tuple)

    @property
    def labels(self) -> dict[str, str]:
        """``{attribute: class name}`` for the six attributes."""
        return {a: getattr(self, a) for a in ATTRIBUTES}

    @property
    def position(self) -> str:
        """Where the object is, in words (``"top left"``, ``"centre"``, ``"bottom"``...)."""
        col = "left" if self.cx < 0.4 else "right" if self.cx > 0.6 else ""
        row = "top" if self.cy < 0.4 else "bottom" if self.cy > 0.6 else ""
        return f"{row} {col}".strip() or "centre"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly description (labels, geometry, physical quantities)."""
        return {
            "split": self.split, "index": self.index, "seed": self.seed, **self.labels,
            "x": round(self.cx, 4), "y": round(self.cy, 4), "radius": round(self.radius, 4),
            "angle": round(self.angle, 2), "distance_m": round(self.distance_m, 3),
            "celsius": round(self.celsius, 2), "ambient_c": round(self.ambient_c, 2),
            "position": self.position, "distractors": len(self.distractors),
        }


def allowed_combos(split: str) -> list[tuple[str, str]]:
    """The (shape, colour) pairs a split draws from: the held-out ones for ``compositional``, the rest else."""
    check_split(split)
    pairs = [(s, c) for s in SHAPES for c in COLOURS]
    if split == "compositional":
        return [p for p in pairs if p in HELD_OUT]
    return [p for p in pairs if p not in HELD_OUT]


def check_split(split: str) -> str:
    """``split`` if it is a known split name, else ArgumentError (a ValueError) listing them."""
    if split not in SPLITS:
        raise ArgumentError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return split


def streams(seed: int, split: str, index: int, n: int = 8) -> list[np.random.Generator]:
    """``n`` independent random generators for sample ``index`` of ``split`` under ``seed``:
    [scene, image, caption, audio, depth, thermal, imu, spare]."""
    check_split(split)
    if int(seed) < 0 or int(index) < 0:
        raise ArgumentError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    ss = np.random.SeedSequence([int(seed), SPLITS[split], int(index)])
    return [np.random.default_rng(child) for child in ss.spawn(n)]


def draw_scene(rng: np.random.Generator, seed: int, split: str, index: int) -> Scene:
    """Draw one scene from ``rng`` (the first of :func:`streams`). Attributes are uniform and independent,
    except that (shape, colour) is uniform over :func:`allowed_combos` of the split."""
    combos = allowed_combos(split)
    shape, colour = combos[int(rng.integers(len(combos)))]
    size = SIZES[int(rng.integers(len(SIZES)))]
    material = MATERIALS[int(rng.integers(len(MATERIALS)))]
    temperature = TEMPERATURES[int(rng.integers(len(TEMPERATURES)))]
    motion = MOTIONS[int(rng.integers(len(MOTIONS)))]

    base = np.array(RGB[colour], dtype=np.float64)
    rgb = np.clip(base * rng.uniform(0.82, 1.08) + rng.normal(0, 10, 3), 0, 255)
    radius = float(rng.uniform(*RADIUS[size]))
    margin = radius + 0.06
    cx = float(rng.uniform(margin, 1 - margin))
    cy = float(rng.uniform(margin, 1 - margin))
    angle = float(rng.uniform(-25, 25))
    distance = float(rng.uniform(1.2, 3.0))
    celsius = float(rng.uniform(*CELSIUS[temperature]))
    ambient = float(rng.uniform(17.0, 25.0))
    direction = 1 if rng.random() < 0.5 else -1
    horizon = float(rng.uniform(0.25, 0.5))

    distractors = []
    for _ in range(int(rng.choice([0, 1, 1, 2]))):
        r = float(rng.uniform(0.04, 0.07))
        distractors.append(Distractor(
            shape=SHAPES[int(rng.integers(len(SHAPES)))],
            cx=float(rng.uniform(r, 1 - r)), cy=float(rng.uniform(r, 1 - r)), radius=r,
            angle=float(rng.uniform(0, 90)), grey=int(rng.integers(70, 190)),
            distance_m=float(rng.uniform(2.0, 5.0)), celsius=ambient + float(rng.uniform(-3, 3)),
        ))
    return Scene(
        split=split, index=int(index), seed=int(seed), shape=shape, colour=colour, size=size,
        material=material, temperature=temperature, motion=motion,
        rgb=tuple(int(round(v)) for v in rgb), cx=cx, cy=cy, radius=radius, angle=angle,
        distance_m=distance, celsius=celsius, ambient_c=ambient, direction=direction, horizon=horizon,
        distractors=tuple(distractors),
    )


def polygon(shape: str, cx: float, cy: float, radius: float, angle_deg: float, scale: float = 1.0
            ) -> list[tuple[float, float]] | None:
    """Vertices of ``shape`` centred on (cx, cy) with half-extent ``radius`` (any unit), rotated by
    ``angle_deg``; None for a circle (drawn as an ellipse)."""
    if shape == "circle":
        return None
    r = radius * scale
    if shape == "square":
        pts = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        pts = [(x * 0.85, y * 0.85) for x, y in pts]
    elif shape == "triangle":
        pts = [(np.cos(a), np.sin(a)) for a in np.radians([-90, 30, 150])]
        pts = [(x, y + 0.2) for x, y in pts]
    elif shape == "star":
        pts = []
        for k in range(10):
            a = np.radians(-90 + 36 * k)
            rr = 1.0 if k % 2 == 0 else 0.45
            pts.append((rr * np.cos(a), rr * np.sin(a)))
    elif shape == "hexagon":
        pts = [(np.cos(a), np.sin(a)) for a in np.radians(np.arange(6) * 60)]
    elif shape == "cross":
        w = 0.33
        pts = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w),
               (-w, -w)]
    else:
        raise ArgumentError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
    t = np.radians(angle_deg)
    c, s = float(np.cos(t)), float(np.sin(t))
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in pts]


def split_of_code(code: int) -> str:
    """Inverse of SPLITS."""
    return _CODE_OF[code]
