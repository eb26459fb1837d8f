"""Captions: templated English about the main object, with synonyms and varied word order.

The shape is always named; colour usually; size, material and motion often; temperature and position
sometimes — as real captions leave things out. Examples (seed 0)::

    "a big red metal circle bouncing"
    "bouncing crimson disc made of steel, large"
    "there is a small icy wooden hexagon on the left, and it is spinning"
"""

from __future__ import annotations

import numpy as np

from .world import Scene

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "disk", "round shape", "ball"),
    "square": ("square", "block", "tile", "box shape", "four-sided square"),
    "triangle": ("triangle", "wedge", "three-sided shape", "triangular shape"),
    "star": ("star", "star shape", "five-pointed star", "starburst"),
    "hexagon": ("hexagon", "six-sided shape", "hex", "honeycomb shape"),
    "cross": ("cross", "plus sign", "plus shape", "cross shape"),
}
COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet", "cherry red"),
    "green": ("green", "emerald", "grass green", "leaf green"),
    "blue": ("blue", "azure", "cobalt", "royal blue"),
    "yellow": ("yellow", "lemon", "golden yellow", "canary yellow"),
    "purple": ("purple", "violet", "plum", "lilac"),
    "orange": ("orange", "tangerine", "pumpkin orange", "amber"),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "tiny", "little", "miniature"),
    "medium": ("medium", "medium-sized", "mid-sized", "average-sized"),
    "large": ("large", "big", "huge", "giant"),
}
#: (adjectives, nouns) per material.
MATERIAL_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "metal": (("metal", "metallic", "steel", "iron", "chrome"), ("metal", "steel", "iron")),
    "wood": (("wooden", "wood", "oak", "timber"), ("wood", "oak", "timber")),
    "glass": (("glass", "glassy", "crystal", "transparent glass"), ("glass", "crystal")),
    "rubber": (("rubber", "rubbery", "soft rubber"), ("rubber", "latex")),
}
TEMPERATURE_WORDS: dict[str, tuple[str, ...]] = {
    "cold": ("cold", "icy", "frozen", "chilled", "freezing"),
    "warm": ("warm", "lukewarm", "tepid", "body-warm"),
    "hot": ("hot", "scorching", "burning hot", "heated", "sizzling"),
}
#: (present participles, "it is ..." phrases) per motion.
MOTION_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "still": (("resting", "standing still", "lying still", "motionless"),
              ("still", "motionless", "at rest", "not moving", "stationary")),
    "bouncing": (("bouncing", "hopping", "bounding", "jumping up and down"),
                 ("bouncing", "hopping up and down", "bouncing around")),
    "spinning": (("spinning", "rotating", "twirling", "whirling"),
                 ("spinning", "rotating", "spinning in place", "turning round and round")),
    "sliding": (("sliding", "gliding", "skidding", "slipping along"),
                ("sliding", "gliding across the floor", "skidding sideways")),
    "shaking": (("shaking", "vibrating", "wobbling", "trembling", "rattling"),
                ("shaking", "vibrating", "wobbling", "rattling")),
}
POSITION_WORDS: dict[str, tuple[str, ...]] = {
    "centre": ("in the middle", "in the centre"),
    "left": ("on the left",), "right": ("on the right",), "top": ("at the top",), "bottom": ("at the bottom",),
    "top left": ("in the top left corner", "at the upper left"), "top right": ("in the top right corner",),
    "bottom left": ("in the bottom left corner", "at the lower left"), "bottom right": ("in the bottom right corner",),
}


def _pick(rng: np.random.Generator, words: tuple[str, ...]) -> str:
    return words[int(rng.integers(len(words)))]


def _article(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """One caption of ``scene``."""
    show = {
        "colour": rng.random() < 0.9, "size": rng.random() < 0.7, "material": rng.random() < 0.7,
        "motion": rng.random() < 0.75, "temperature": rng.random() < 0.4, "position": rng.random() < 0.25,
    }
    shape = _pick(rng, SHAPE_WORDS[scene.shape])
    colour = _pick(rng, COLOUR_WORDS[scene.colour]) if show["colour"] else ""
    size = _pick(rng, SIZE_WORDS[scene.size]) if show["size"] else ""
    mat_adj = _pick(rng, MATERIAL_WORDS[scene.material][0]) if show["material"] else ""
    mat_noun = _pick(rng, MATERIAL_WORDS[scene.material][1]) if show["material"] else ""
    temp = _pick(rng, TEMPERATURE_WORDS[scene.temperature]) if show["temperature"] else ""
    moving = _pick(rng, MOTION_WORDS[scene.motion][0]) if show["motion"] else ""
    is_moving = _pick(rng, MOTION_WORDS[scene.motion][1]) if show["motion"] else ""
    where = _pick(rng, POSITION_WORDS[scene.position]) if show["position"] else ""

    def join(*parts: str) -> str:
        return " ".join(p for p in parts if p)

    form = int(rng.integers(7))
    if form == 0:  # a big red metal circle bouncing
        text = join(_article(join(size, temp, colour, mat_adj, shape)), moving, where)
    elif form == 1:  # bouncing crimson disc made of steel, large
        text = join(moving, colour, shape, f"made of {mat_noun}" if mat_noun else "", where)
        text += "".join(f", {w}" for w in (size, temp) if w)
    elif form == 2:  # there is a small icy wooden hexagon on the left, and it is spinning
        text = "there is " + join(_article(join(size, temp, colour, mat_adj, shape)), where)
        if is_moving:
            text += f", and it is {is_moving}"
    elif form == 3:  # the hexagon is red and wooden; it is spinning
        props = [w for w in (size, temp, colour, mat_adj) if w]
        text = f"the {shape}"
        text += (" is " + (", ".join(props[:-1]) + " and " + props[-1] if len(props) > 1 else props[0])) if props else ""
        text += f" {where}" if where else ""
        text += f"; it is {is_moving}" if is_moving else ""
    elif form == 4:  # photo of a star, blue, glass, rotating
        text = "photo of " + _article(shape) + "".join(f", {w}" for w in (colour, size, mat_adj, temp, moving, where) if w)
    elif form == 5:  # a steel cross, small and red, sliding
        text = _article(join(mat_adj, shape))
        extra = [w for w in (size, colour, temp) if w]
        if extra:
            text += ", " + " and ".join(extra)
        text += "".join(f", {w}" for w in (moving, where) if w)
    else:  # something made of rubber: a tiny green square that is shaking
        head = f"something made of {mat_noun}: " if mat_noun else ""
        text = head + _article(join(size, temp, colour, shape))
        text += f" that is {is_moving}" if is_moving else ""
        text += f" {where}" if where else ""
    return " ".join(text.split())


def attribute_caption(labels: dict[str, str]) -> str:
    """A caption naming all six attributes with their class names (the words zero-shot prompts use), e.g.
    ``"a large orange metal hexagon, cold, sliding"``. The varied captions of :func:`caption` use synonyms
    ("chrome hex", "giant", "icy") and name a random subset; training on both teaches the class names too."""
    return (f"a {labels['size']} {labels['colour']} {labels['material']} {labels['shape']}, "
            f"{labels['temperature']}, {labels['motion']}")
