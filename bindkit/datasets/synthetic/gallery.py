"""A small gallery of the synthetic world, written to disk and indexed with a model: what ``bindkit demo`` and
the browser demo (``demos/app.py``) search.

A gallery is ``n`` scenes of the world's ``test`` split (scenes a model trained on the ``train`` split never saw),
each as image, caption, audio, depth, thermal and IMU files, and optionally a short video of the first
``videos`` scenes (the image moving as the scene's motion label says). Every item is stored in a
:class:`bindkit.Index` with the scene's labels as metadata (plus ``scene``, its id, and ``caption``).

Layout of the gallery folder::

    OUT/
      media/        the synthetic world (test split; media/test/video/ holds the videos)
      index/        the index (it stores the media's paths: they stay where they are)
      done.json     written last: what the gallery holds, the model it was indexed with, the ids per scene

A folder whose ``done.json`` matches the arguments and the model (its weights' fingerprints) is re-used as it
is, so an application can keep galleries in a cache folder (one sub-folder per :func:`gallery_key`).

    from bindkit.datasets import synthetic
    with synthetic.build_gallery("gallery", model, n=60) as g:
        g.index.search(text="a red shape", k=3)
        g.vectors("audio")          # (60, dim) stored vectors, one row per scene (NaN: no item)
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TYPE_CHECKING

import numpy as np

from ...errors import ArgumentError

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel

#: Every modality a gallery can hold, in the order they are indexed.
GALLERY_KINDS: tuple[str, ...] = ("image", "text", "audio", "video", "depth", "thermal", "imu")
#: Bump when a gallery's content or layout changes, so that galleries on disk are rebuilt.
GALLERY_VERSION = 2
#: The world split galleries are drawn from.
SPLIT = "test"
#: Videos: frames and frame rate (2 s).
VIDEO_FRAMES, VIDEO_FPS = 16, 8
_MARKER = "done.json"
_MEDIA, _INDEX, _PARTIAL = "media", "index", "index.partial"


@dataclass
class Gallery:
    """A gallery on disk and its open index (close it, or use the gallery as a context manager).

    Attributes:
        path: the gallery folder.
        index: the :class:`bindkit.Index` of every item, opened with the model.
        scenes: one record per scene, in order: ``id``, ``text`` (the caption), ``labels`` ({attribute: class}),
            and the file path of each media kind it has (``image``, ``audio``, ..., ``video`` for the first ones).
        kinds: the modalities indexed, in :data:`GALLERY_KINDS` order.
        ids: per kind, the index id of each scene's item (None where the scene has none or it failed to embed).
        reused: True when a complete gallery already in ``path`` was opened instead of built.
    """

    path: Path
    index: Any
    scenes: list[dict[str, Any]]
    kinds: list[str]
    ids: dict[str, list[int | None]] = field(default_factory=dict)
    reused: bool = False

    @property
    def media(self) -> Path:
        """The folder of the synthetic world the media were written to."""
        return self.path / _MEDIA

    def vectors(self, kind: str) -> np.ndarray:
        """The stored vectors of ``kind``, one row per scene (float32, ``(len(scenes), dim)``); NaN rows where a
        scene has no such item (no video, or its file failed to embed)."""
        if kind not in self.ids:
            raise KeyError(f"the gallery has no {kind!r} items (it has {', '.join(self.kinds)})")
        stored_ids, vecs = self.index.vectors(kind)
        row = {int(i): j for j, i in enumerate(stored_ids)}
        out = np.full((len(self.scenes), self.index.dim), np.nan, np.float32)
        for s, i in enumerate(self.ids[kind]):
            if i is not None and int(i) in row:
                out[s] = vecs[row[int(i)]]
        return out

    def close(self) -> None:
        """Close the index."""
        self.index.close()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def model_key(model: "BindModel") -> str:
    """A short hash of the model's card name, modalities and weight fingerprints (16 hex digits)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(model.card.name.encode())
    for m in model.modalities:
        h.update(m.encode() + model.fingerprint(m).encode())
    return h.hexdigest()


def gallery_key(model: "BindModel", n: int = 60, videos: int = 0, seed: int = 0) -> str:
    """A folder name for a cached gallery of these arguments and this model (``v2-n60-vid24-<model_key>``;
    the seed appears when it is not 0)."""
    return f"v{GALLERY_VERSION}-n{int(n)}-vid{int(videos)}" + (f"-s{int(seed)}" if seed else "") + \
        f"-{model_key(model)}"


def gallery_kinds(model: "BindModel", videos: int = 0) -> list[str]:
    """The modalities a gallery indexes with ``model``: those of :data:`GALLERY_KINDS` it has an encoder for
    (image and video: vision), video only when ``videos`` > 0."""
    from ...modality import encoder_of

    return [k for k in GALLERY_KINDS if encoder_of(k) in model.modalities and (k != "video" or videos > 0)]


def write_video(path: str | Path, image: np.ndarray, motion: str, rng: np.random.Generator,
                frames: int = VIDEO_FRAMES, fps: int = VIDEO_FPS) -> None:
    """Write a WebM (VP8) of ``image`` (uint8 RGB) moving as a motion label says: bouncing (up and down),
    sliding (sideways), spinning (rotating), shaking (jitter drawn from ``rng``) or still; 2x enlarged."""
    import av
    from PIL import Image

    base = Image.fromarray(image).resize((image.shape[1] * 2, image.shape[0] * 2), Image.BILINEAR)
    w, h = base.size
    bg = tuple(int(v) for v in np.asarray(base)[0, 0])
    with av.open(str(path), "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "10", "b:v": "1M"}
        for t in range(frames):
            phase = 2 * np.pi * t / frames
            dx = dy = 0
            frame = base
            if motion == "bouncing":
                dy = int(-abs(np.sin(phase)) * h * 0.2)
            elif motion == "sliding":
                dx = int(np.sin(phase) * w * 0.2)
            elif motion == "shaking":
                dx, dy = (int(v) for v in rng.integers(-4, 5, size=2))
            elif motion == "spinning":
                frame = base.rotate(360 * t / frames, resample=Image.BILINEAR, fillcolor=bg)
            if dx or dy:
                frame = Image.new("RGB", (w, h), bg)
                frame.paste(base, (dx, dy))
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(frame), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def generate_scenes(out: str | Path, n: int, seed: int = 0, videos: int = 0,
                    show_progress: bool | None = False) -> list[dict[str, Any]]:
    """Write ``n`` scenes of the world's test split into ``out`` (a synthetic world folder; one written before
    is replaced) and videos of the first ``videos`` scenes; returns one record per scene (see
    :attr:`Gallery.scenes`)."""
    from . import ATTRIBUTES, sample
    from .writer import generate

    out = Path(out)
    generate(out, n=n, seed=seed, splits={SPLIT: n}, overwrite=True, show_progress=show_progress)
    with open(out / SPLIT / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(seed)
    if videos > 0:
        (out / SPLIT / "video").mkdir(exist_ok=True)
    scenes = []
    for i, r in enumerate(rows):
        rec = {"id": r["id"], "text": r["text"], "labels": {a: r[a] for a in ATTRIBUTES},
               **{k: str(out / SPLIT / r[k]) for k in ("image", "audio", "depth", "thermal", "imu")}}
        if i < videos:
            s = sample(int(r["id"]), seed=seed, split=SPLIT)
            path = out / SPLIT / "video" / f"{r['id']}.webm"
            write_video(path, s["image"], s["labels"]["motion"], rng)
            rec["video"] = str(path)
        scenes.append(rec)
    return scenes


def _world_files(folder: Path) -> bool:
    """Whether everything in ``folder`` is something the world writer writes (a world, or an unfinished one)."""
    from .world import SPLITS

    return all((e.is_dir() and e.name in SPLITS) or (e.is_file() and (
        e.name in ("README.md", "world.json") or e.name.startswith(("classes_", "templates_", "image_"))))
        for e in folder.iterdir())


def _clear(out: Path) -> None:
    """Remove what a previous (other or unfinished) gallery left in ``out``: the marker, ``media/`` when it
    holds only a synthetic world, and the index folders when they are bindkit indexes. Anything else is left
    for the world writer or ``Index.create`` to refuse with a clear error."""
    from ...index.store import DB_NAME

    (out / _MARKER).unlink(missing_ok=True)
    if (out / _MEDIA).is_dir() and _world_files(out / _MEDIA):
        shutil.rmtree(out / _MEDIA)
    for name in (_PARTIAL, _INDEX):
        if (out / name / DB_NAME).is_file():
            shutil.rmtree(out / name)


def build_gallery(out_dir: str | Path, model: "BindModel", *, n: int = 60, seed: int = 0, videos: int = 0,
                  reuse: bool = True, show_progress: bool | None = False,
                  log: Callable[[str], None] | None = None) -> Gallery:
    """Write a gallery of the synthetic world to ``out_dir`` and index it with ``model`` (layout in the module
    docstring); returns it with its index open.

    Args:
        out_dir: the gallery folder (created). Only its ``media/``, ``index/``, ``index.partial/`` and
            ``done.json`` are written; other files are left alone.
        model: a loaded model; the gallery holds the modalities it can embed (:func:`gallery_kinds`).
        n: scenes (of the world's test split, seed ``seed``).
        videos: how many of the first scenes also get a 2-s video (indexed when the model has a vision encoder).
        reuse: open a complete gallery already in ``out_dir`` when it was built with the same arguments and
            model (same weights) instead of building it again; False always rebuilds.
        show_progress: progress bars while writing and embedding (None: when stderr is a terminal).
        log: called with a line per step (building, items indexed per kind); default silent.

    Raises:
        ArgumentError (a ValueError): ``n`` < 1 or ``videos`` < 0. DatasetError: ``out_dir/media`` holds something that is not a
        synthetic world. IndexStoreError: ``out_dir/index`` is a folder that is not an index.
    """
    import bindkit

    if int(n) < 1 or int(videos) < 0:
        raise ArgumentError(f"a gallery needs n >= 1 scenes and videos >= 0, got n={n}, videos={videos}")
    n, seed, videos = int(n), int(seed), min(int(videos), int(n))
    say = log or (lambda _msg: None)
    out = Path(out_dir).expanduser().resolve()
    kinds = gallery_kinds(model, videos)
    want = {"version": GALLERY_VERSION, "n": n, "seed": seed, "videos": videos, "kinds": kinds,
            "model": model.card.name, "model_key": model_key(model)}
    marker = out / _MARKER
    if reuse and marker.is_file():
        try:
            done = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            done = {}
        if {k: done.get(k) for k in want} == want and (out / _INDEX).is_dir():
            return Gallery(out, bindkit.Index.open(out / _INDEX, model=model), done["scenes"], kinds,
                           {k: list(v) for k, v in done["ids"].items()}, reused=True)
    say(f"building the demo gallery ({n} scenes of the synthetic world, {', '.join(kinds)}) in {out} ...")
    out.mkdir(parents=True, exist_ok=True)
    _clear(out)
    # The index stores the media's paths, so the media are written where they stay; the index is built aside
    # and renamed into place, and done.json (written last) marks the whole as complete.
    scenes = generate_scenes(out / _MEDIA, n, seed, videos if "video" in kinds else 0, show_progress)
    ids: dict[str, list[int | None]] = {}
    with bindkit.Index.create(out / _PARTIAL, model=model) as index:
        for kind in kinds:
            have = [s for s in scenes if kind in s]
            meta = [{**s["labels"], "scene": s["id"], **({"caption": s["text"]} if kind != "text" else {})}
                    for s in have]
            result = index.add([s[kind] for s in have], modality=kind, metadata=meta, strict=False,
                               show_progress_bar=show_progress)
            by_scene = {s["id"]: i for s, i in zip(have, result)}
            ids[kind] = [by_scene.get(s["id"]) for s in scenes]
            say(f"  {kind}: {len(have) - len(result.errors)} items"
                + (f" ({len(result.errors)} failed)" if result.errors else ""))
    (out / _PARTIAL).rename(out / _INDEX)
    marker.write_text(json.dumps({**want, "scenes": scenes, "ids": ids}), encoding="utf-8")
    return Gallery(out, bindkit.Index.open(out / _INDEX, model=model), scenes, kinds, ids)
