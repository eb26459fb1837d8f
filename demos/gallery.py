"""The demo's default model and its built-in gallery: a small procedural world (bindkit.datasets.synthetic) of
every modality — images, captions, audio, depth, thermal, IMU and short videos of the same scenes — written to
a cache folder and indexed once per model (re-used on the next start).

Part of demos/app.py (loaded by it; not a package of its own)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

import bindkit

REPO = Path(__file__).resolve().parent.parent
#: The model committed with the repository (a directory written by ``bindkit train``).
TOY_MODEL = REPO / "weights" / "bindkit_toy"
#: The fallback when the toy model is absent: the reference model, if its weights are on this machine.
HUGE = "imagebind_huge"
#: Gallery generation: world seed and split (the test split: scenes the toy model was not trained on).
SEED, SPLIT = 0, "test"
GALLERY_VERSION = 1  # bump when the gallery's content changes, so that caches are rebuilt
VIDEO_FRAMES, VIDEO_FPS = 16, 8


def cache_root() -> Path:
    """$BINDKIT_DEMO_CACHE, else $XDG_CACHE_HOME/bindkit/demo, else ~/.cache/bindkit/demo."""
    if os.environ.get("BINDKIT_DEMO_CACHE"):
        return Path(os.environ["BINDKIT_DEMO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bindkit" / "demo"


def no_weights_message() -> str:
    """What to do when neither the committed toy model nor the reference weights are here."""
    return (f"No model to run the demo with: {TOY_MODEL.relative_to(REPO)}/ (the small model committed with "
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


def _model_key(model: Any) -> str:
    h = hashlib.blake2b(digest_size=8)
    h.update(model.card.name.encode())
    for m in model.modalities:
        h.update(m.encode() + model.fingerprint(m).encode())
    return h.hexdigest()


def _write_video(path: Path, image: np.ndarray, motion: str, rng: np.random.Generator) -> None:
    """A 2-s WebM (VP8) of ``image`` moving as its scene's motion label says: bouncing (up and down), sliding
    (sideways), spinning (rotating), shaking (jitter) or still; 2x enlarged (128 px)."""
    import av
    from PIL import Image

    base = Image.fromarray(image).resize((image.shape[1] * 2, image.shape[0] * 2), Image.BILINEAR)
    w, h = base.size
    bg = tuple(int(v) for v in np.asarray(base)[0, 0])
    with av.open(str(path), "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "10", "b:v": "1M"}
        for t in range(VIDEO_FRAMES):
            phase = 2 * np.pi * t / VIDEO_FRAMES
            dx = dy = 0
            frame = base
            if motion == "bouncing":
                dy = int(-abs(np.sin(phase)) * h * 0.2)
            elif motion == "sliding":
                dx = int(np.sin(phase) * w * 0.2)
            elif motion == "shaking":
                dx, dy = (int(v) for v in rng.integers(-4, 5, size=2))
            elif motion == "spinning":
                frame = base.rotate(360 * t / VIDEO_FRAMES, resample=Image.BILINEAR, fillcolor=bg)
            if dx or dy:
                frame = Image.new("RGB", (w, h), bg)
                frame.paste(base, (dx, dy))
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(frame), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def generate(out: Path, n: int, n_videos: int) -> list[dict[str, Any]]:
    """Write ``n`` scenes of the synthetic world (split ``test``) into ``out`` and ``n_videos`` videos of the
    first scenes; returns one record per scene (id, labels, caption, file per modality)."""
    from bindkit.datasets import synthetic

    synthetic.generate(out, n=n, seed=SEED, splits={SPLIT: n}, show_progress=False)
    rows = []
    labels_csv = (out / SPLIT / "labels.csv").read_text(encoding="utf-8").splitlines()
    import csv

    rng = np.random.default_rng(SEED)
    (out / SPLIT / "video").mkdir(exist_ok=True)
    for i, r in enumerate(csv.DictReader(labels_csv)):
        rec = {"id": r["id"], "text": r["text"],
               "labels": {a: r[a] for a in synthetic.ATTRIBUTES},
               **{k: str(out / SPLIT / r[k]) for k in ("image", "audio", "depth", "thermal", "imu")}}
        if i < n_videos:
            s = synthetic.sample(int(r["id"]), seed=SEED, split=SPLIT)
            path = out / SPLIT / "video" / f"{r['id']}.webm"
            _write_video(path, s["image"], s["labels"]["motion"], rng)
            rec["video"] = str(path)
        rows.append(rec)
    return rows


def _add_all(index: Any, rows: list[dict[str, Any]], kinds: list[str], log: Callable[[str], None]) -> None:
    for kind in kinds:
        have = [r for r in rows if kind in r]
        if not have:
            continue
        items = [r[kind] for r in have]
        meta = [{**r["labels"], "scene": r["id"], **({"caption": r["text"]} if kind != "text" else {})}
                for r in have]
        result = index.add(items, modality=kind, metadata=meta, strict=False, show_progress_bar=False)
        log(f"  {kind}: {len(have) - len(result.errors)} items" + (f" ({len(result.errors)} failed)"
                                                                  if result.errors else ""))


def gallery_index(model: Any, n: int = 60, n_videos: int | None = None, root: Path | None = None,
                  log: Callable[[str], None] | None = None) -> Any:
    """The built-in gallery indexed with ``model``, opened for search: built on first use in the cache folder
    (``root`` or :func:`cache_root`) and re-used while the model's weights and the gallery size are the same."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    n_videos = min(n, 24) if n_videos is None else n_videos
    kinds = [k for k in ("image", "text", "audio", "video", "depth", "thermal", "imu")
             if (k in model.modalities) or (k in ("image", "video") and "vision" in model.modalities)]
    key = f"v{GALLERY_VERSION}-n{n}-vid{n_videos}-{_model_key(model)}"
    root = Path(root) if root is not None else cache_root()
    final = root / key
    if (final / "done.json").is_file():
        return bindkit.Index.open(final / "index", model=model)
    log(f"building the demo gallery ({n} scenes of the synthetic world, {', '.join(kinds)}) in {final} ...")
    # The index stores the media's paths, so the media are written where they stay; the index is built aside
    # and renamed into place, and done.json (written last) marks the whole as complete.
    shutil.rmtree(final, ignore_errors=True)
    final.mkdir(parents=True)
    rows = generate(final / "media", n, n_videos if "video" in kinds else 0)
    with bindkit.Index.create(final / "index.partial", model=model) as index:
        _add_all(index, rows, kinds, log)
    (final / "index.partial").rename(final / "index")
    (final / "done.json").write_text(json.dumps({"n": n, "videos": n_videos, "kinds": kinds,
                                                 "model": model.card.name}))
    return bindkit.Index.open(final / "index", model=model)
