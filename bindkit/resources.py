"""Where the data bindkit ships lives: the encoder cards and the bindkit_toy model directory.

The repository keeps them once, at its top level (``encoders/*.json``, ``weights/bindkit_toy/``); building a wheel
copies them into the package as ``bindkit/_data/encoders/`` and ``bindkit/_data/weights/bindkit_toy/`` (see
``setup.py``), where :func:`packaged_dir` finds them through :mod:`importlib.resources`. Run from a clone
(``PYTHONPATH`` or an editable install) there is no ``_data``: the clone's own folders are used instead.

It also holds the download guard (:func:`download_guard`): torch-free, so that the command line can install it
for every command without importing the weights code.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator

#: The package folder that holds the shipped data in a wheel (``bindkit/_data``).
DATA_PACKAGE_DIR = "_data"
_PACKAGE = Path(__file__).resolve().parent


def clone_root() -> Path | None:
    """The repository root when bindkit runs from a clone (the folder above ``bindkit/`` holds
    ``pyproject.toml`` and ``encoders/``), else None (an installed wheel)."""
    root = _PACKAGE.parent
    if (root / "pyproject.toml").is_file() and (root / "encoders").is_dir():
        return root
    return None


def packaged_dir(name: str) -> Path | None:
    """``bindkit/_data/NAME`` of an installed wheel (``encoders`` or ``weights``) as a path, else None."""
    try:
        ref = resources.files("bindkit").joinpath(DATA_PACKAGE_DIR, name)
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - bindkit not importable as a package
        return None
    path = Path(str(ref))
    return path if path.is_dir() else None


def cards_dir() -> Path | None:
    """The shipped encoder cards: the wheel's ``bindkit/_data/encoders``, else a clone's ``encoders/``."""
    found = packaged_dir("encoders")
    if found is None and (root := clone_root()) is not None:
        found = root / "encoders"
    return found


def clone_weights_dir() -> Path | None:
    """A clone's ``weights/`` folder (bindkit_toy, and what the user put there), else None."""
    root = clone_root()
    return root / "weights" if root is not None else None


def cache_dir() -> Path:
    """The user cache for downloaded weights: ``$XDG_CACHE_HOME/bindkit`` or ``~/.cache/bindkit``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "bindkit"


def weights_search_dirs() -> list[Path]:
    """Where bindkit looks for a card's weights when none are given, in order: ``$BINDKIT_WEIGHTS``, the package's
    own (``bindkit/_data/weights``: bindkit_toy), the user cache (:func:`cache_dir`), and, only when running
    from a clone, the clone's ``weights/`` (which holds bindkit_toy there)."""
    dirs = []
    env = os.environ.get("BINDKIT_WEIGHTS", "").strip()
    if env:
        dirs.append(Path(env).expanduser())
    packaged = packaged_dir("weights")
    if packaged is not None:
        dirs.append(packaged)
    dirs.append(cache_dir())
    clone = clone_weights_dir()
    if clone is not None:
        dirs.append(clone)
    return dirs


#: Called with the card before a download that nobody asked for by name (:func:`bindkit.weights.implicit_fetch`);
#: raises to refuse. None (the library's default): download, printing the licence first.
download_check: Callable[[Any], None] | None = None


@contextmanager
def download_guard(check: Callable[[Any], None]) -> Iterator[None]:
    """Within the block, an implicit download first calls ``check(card)``, which raises to refuse. Process-wide (a
    server's worker threads see it too); the previous guard is restored on exit."""
    global download_check
    previous, download_check = download_check, check
    try:
        yield
    finally:
        download_check = previous
