"""``bindkit.list_models()``: every card and model directory bindkit can see, with where its weights are.

A *card* (``bindkit.list_encoders()``) describes an architecture; it runs here when its weights are found
(:func:`bindkit.weights.locate_weights`), else it may be downloadable (``bindkit fetch NAME``) or be an architecture
to train. A *model directory* (``card.json`` + weights, as ``bindkit train`` writes) directly inside a weights
search folder (``$BINDKIT_WEIGHTS``, the package's own, the user cache, a clone's ``weights/``) is listed under its
folder name when no card has that name; it loads with its path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .cards import Card, list_encoders, load_card, model_dirs
from .errors import BindkitError


@dataclass(frozen=True)
class ModelInfo:
    """One entry of :func:`list_models`."""

    #: The card name (``--model NAME``), or a model directory's folder name.
    name: str
    #: ``"card"`` or ``"model directory"``.
    kind: str
    #: The encoders it has (``vision``, ``text``, ``audio``, ``depth``, ``thermal``, ``imu``).
    modalities: list[str]
    #: Dimension of the shared embedding space.
    dim: int
    #: Parameter count of its encoders (None when it could not be counted).
    parameters: int | None
    #: The licence of the weights (else of the card).
    license: str
    #: Local weights: a converted directory or a checkpoint file (None when absent).
    weights: str | None
    #: The download (``"about 4.5 GiB from https://..."``) when the weights are absent and the card names a URL.
    download: str | None
    #: True when ``bindkit.load_model(name)`` runs now, without a download.
    runs_here: bool
    #: What to do to run it when it does not (fetch, train...), else where it comes from.
    note: str
    #: The card file or model directory this entry was read from.
    source: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``bindkit models --json`` prints, one per model)."""
        return asdict(self)


def _parameters(card: Card, modalities: list[str]) -> int | None:
    """Parameter count of the card's encoders, from the architecture built on the meta device (no memory)."""
    from .factory import build_model

    try:
        model = build_model(card, modalities, device="meta")
    except Exception:  # noqa: BLE001 - a card that cannot be built (e.g. open_clip missing) is still listed
        return None
    return sum(p.numel() for p in model.encoders.parameters())


def _license(card: Card) -> str:
    return str(card.weights.get("license") or card.license or "not stated")


def _held(card: Card, weights: Path | None) -> list[str]:
    """The card's encoders that ``weights`` (a converted directory) holds; all of them for a file or None."""
    mods = list(card.modalities)
    if weights is not None and weights.is_dir():
        from .weights import checkpoint_modalities

        mods = [m for m in mods if m in checkpoint_modalities(weights)] or mods
    return mods


def _card_entry(card: Card) -> ModelInfo:
    from .weights.fetch import download_size, locate_weights

    found = locate_weights(card)
    mods = _held(card, found)
    download = None
    if found is not None:
        note = "weights here"
    elif card.weights.get("url"):
        download = f"{download_size(card)} from {card.weights['url']}"
        note = f"bindkit fetch {card.name} (or --download on a command; asked for on a terminal)"
    elif card.open_clip_modalities:
        own = [m for m in mods if m not in card.open_clip_modalities]
        note = (f"{', '.join(card.open_clip_modalities)} from open_clip {card.open_clip.get('model')}/"
                f"{card.open_clip.get('pretrained')}; {', '.join(own)} need training: bindkit train ... --card "
                f"{card.name}")
    else:
        note = "no weights: " + str(card.weights.get("note") or f"an architecture to train (bindkit train MANIFEST "
                                                             f"--card {card.name} --out DIR)")
    return ModelInfo(name=card.name, kind="card", modalities=mods, dim=card.out_embed_dim,
                     parameters=_parameters(card, mods), license=_license(card),
                     weights=str(found) if found is not None else None, download=download,
                     runs_here=found is not None, note=note, source=str(card.source))


def _directory_entry(path: Path) -> ModelInfo:
    try:
        card = load_card(path)
        mods = _held(card, path)
    except BindkitError as exc:  # a broken folder is listed with the reason, not a stack trace
        return ModelInfo(name=path.name, kind="model directory", modalities=[], dim=0, parameters=None,
                         license="", weights=str(path), download=None, runs_here=False, note=f"unusable: {exc}",
                         source=str(path))
    return ModelInfo(name=path.name, kind="model directory", modalities=mods, dim=card.out_embed_dim,
                     parameters=_parameters(card, mods), license=_license(card), weights=str(path), download=None,
                     runs_here=True, note=f"card {card.name!r}; load it by its path: --model {path}",
                     source=str(path))


def list_models() -> list[ModelInfo]:
    """Every card bindkit can find (the shipped ones, ``$BINDKIT_ENCODERS``, :func:`bindkit.add_card_path`) and
    every model directory in its weights folders that no card names, each with its encoders, dimension, parameter
    count, licence, and where its weights are (or the download), sorted: what runs here first, then by name."""
    cards = list_encoders()
    out = [_card_entry(load_card(name)) for name in cards]
    out += [_directory_entry(d) for d in model_dirs() if d.name not in cards]
    return sorted(out, key=lambda m: (not m.runs_here, m.name))
