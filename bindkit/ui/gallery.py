"""The demo's default model and its built-in gallery: a small procedural world (bindkit.datasets.synthetic) of
every modality — images, captions, audio, depth, thermal, IMU and short videos of the same scenes — written to
a cache folder and indexed once per model (re-used on the next start).

Part of the demo app (:mod:`bindkit.ui`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, TYPE_CHECKING

import bindkit
from bindkit import resources
from bindkit.datasets import synthetic

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel


def _toy_model() -> tuple[Path, Path]:
    """(root, bindkit_toy directory): a clone's ``weights/bindkit_toy``, else the wheel's copy (``bindkit/_data``)."""
    clone = resources.clone_root()
    if clone is not None:
        return clone, clone / "weights" / "bindkit_toy"
    shipped = resources.packaged_dir("weights")
    package = Path(bindkit.__file__).resolve().parent
    return package, (shipped or package / resources.DATA_PACKAGE_DIR / "weights") / "bindkit_toy"


#: REPO: the clone (or the installed package), what messages show TOY_MODEL relative to; TOY_MODEL: the model
#: committed with the repository and shipped in the wheel (a directory written by ``bindkit train``).
REPO, TOY_MODEL = _toy_model()
#: The fallback when the toy model is absent: the reference model, if its weights are on this machine.
HUGE = "imagebind_huge"
#: Gallery generation: the world seed (scenes of its test split, which the toy model was not trained on).
SEED = 0


def cache_root() -> Path:
    """$BINDKIT_DEMO_CACHE, else $XDG_CACHE_HOME/bindkit/demo, else ~/.cache/bindkit/demo."""
    if os.environ.get("BINDKIT_DEMO_CACHE"):
        return Path(os.environ["BINDKIT_DEMO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bindkit" / "demo"


def no_weights_message() -> str:
    """What to do when neither the committed toy model nor the reference weights are here."""
    try:
        shown = TOY_MODEL.relative_to(REPO)
    except ValueError:
        shown = TOY_MODEL
    return (f"No model to run the demo with: {shown}/ (the small model committed with "
            f"bindkit) is absent and no {HUGE} weights were found.\n"
            f"  - get the reference weights: bindkit fetch {HUGE}   (licence: CC BY-NC 4.0, non-commercial), or\n"
            "  - train a small model on the synthetic world (minutes on a CPU):\n"
            "      bindkit datasets synthetic --out world --n 2000\n"
            "      bindkit train world/image_text.csv --card bindkit_small --out m1\n"
            "      bindkit train world/image_audio.csv world/image_depth.csv world/image_thermal.csv "
            "world/image_imu.csv --init m1 --freeze image,text --out weights/bindkit_toy\n"
            "  then start the demo again (or pass --model DIR / --model CARD --weights PATH).")


def default_model(device: str = "cpu") -> Any:
    """weights/bindkit_toy when present, else imagebind_huge when its weights are on this machine (no download);
    raises WeightsNotFoundError with :func:`no_weights_message` otherwise."""
    if (TOY_MODEL / "card.json").is_file():
        return bindkit.load_model(str(TOY_MODEL), device=device)
    try:
        return bindkit.load_model(HUGE, device=device, download=False)
    except bindkit.WeightsNotFoundError:
        raise bindkit.WeightsNotFoundError(no_weights_message()) from None


def gallery_index(model: "BindModel", n: int = 60, n_videos: int | None = None, root: Path | None = None,
                  log: Callable[[str], None] | None = None) -> Any:
    """The built-in gallery indexed with ``model``, opened for search: built on first use in the cache folder
    (``root`` or :func:`cache_root`) and re-used while the model's weights and the gallery size are the same
    (:func:`bindkit.datasets.synthetic.build_gallery`, one sub-folder per model and size)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    n_videos = min(n, 24) if n_videos is None else n_videos
    root = Path(root) if root is not None else cache_root()
    key = synthetic.gallery_key(model, n=n, videos=n_videos, seed=SEED)
    return synthetic.build_gallery(root / key, model, n=n, seed=SEED, videos=n_videos, log=log).index
