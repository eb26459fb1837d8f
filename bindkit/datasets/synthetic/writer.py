"""Writing the synthetic world to disk: media files, pair manifests, zero-shot test files and class lists.

Layout of ``OUT`` (paths inside every manifest are relative to the manifest's folder)::

    OUT/
      README.md                 what is here and how to use it
      world.json                seed, counts, rendering parameters, held-out combinations, file formats
      image_text.csv            training pairs (train split): columns image,text
      image_attributes.csv      image,text: a caption naming all six attributes by their class names
      image_audio.csv           image,audio
      image_depth.csv           image,depth
      image_thermal.csv         image,thermal
      image_imu.csv             image,imu
      classes_<attribute>.json  class names (a JSON list) for shape, colour, size, material, temperature, motion
      templates_<attribute>.json  prompt templates for zero-shot classification of that attribute
      train/
        image/000000.png  audio/000000.wav  depth/000000.png  thermal/000000.png  imu/000000.csv
        labels.csv              every file of a sample, its caption, labels and geometry (one row per sample)
      test/                     held-out samples of the same combinations as train
        (media as in train/) labels.csv
        image_text.csv ... image_imu.csv          retrieval pairs
        <modality>_<attribute>.csv                zero-shot files: columns <modality>,label (a class name)
      compositional/            held-out shape x colour combinations (never in train or test)
        (as test/)

Media formats (all read by bindkit's loaders): image RGB PNG; audio 16-bit PCM mono WAV; depth 16-bit PNG in
millimetres; thermal 8-bit grey PNG on a fixed -20..120 C scale; IMU CSV with the header
``time_s,accel_x,accel_y,accel_z,gyro_x,gyro_y,gyro_z``. The same arguments give byte-identical files.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image

from ...errors import DatasetError  # noqa: F401  (moved to bindkit.errors; re-exported here)
from ...fileio import atomic_write_bytes
from ...progress import progress_bar
from . import DEFAULTS, ENCODES, TEMPLATES, sample
from .captions import attribute_caption
from .microphone import MICS
from .render_imu import imu_csv
from .render_maps import THERMAL_MAX_C, THERMAL_MIN_C, depth_to_mm
from .world import ATTRIBUTES, HELD_OUT, SPLITS, check_split

#: The modalities paired with images, in manifest order; their file extensions.
PAIRED: tuple[str, ...] = ("text", "audio", "depth", "thermal", "imu")
EXT: dict[str, str] = {"image": ".png", "audio": ".wav", "depth": ".png", "thermal": ".png", "imu": ".csv"}
MEDIA: tuple[str, ...] = ("image", "audio", "depth", "thermal", "imu")
_GEOMETRY = ("position", "x", "y", "radius", "angle", "distance_m", "celsius", "ambient_c", "distractors")
LABEL_COLUMNS: tuple[str, ...] = ("id", *MEDIA, "text", *ATTRIBUTES, *_GEOMETRY)
_CHUNK = 32


def default_held_out_count(n: int) -> int:
    """Samples in ``test`` and in ``compositional`` when not given: a tenth of ``n``, at least 50."""
    return max(50, n // 10)


def generate(
    out_dir: str | Path,
    n: int = 5000,
    seed: int = 0,
    *,
    splits: Mapping[str, int] | None = None,
    overwrite: bool = False,
    workers: int = 1,
    show_progress: bool | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Render the world into ``out_dir`` (layout in this module's docstring).

    Args:
        out_dir: output folder; created if absent. It must be empty, unless ``overwrite`` and it holds a
            world written before (then its splits, manifests and class files are replaced).
        n: training samples (the top-level manifests).
        seed: world seed; the same seed and arguments give byte-identical files.
        splits: samples per split, e.g. ``{"train": 2000, "test": 200, "compositional": 200, "val": 100}``;
            default ``{"train": n, "test": n // 10 (>= 50), "compositional": the same}``.
        overwrite: replace a world already in ``out_dir``.
        workers: processes rendering in parallel (files are identical whatever the number).
        show_progress: progress bar with ETA; None shows it when stderr is a terminal.
        **params: rendering parameters (see :data:`~bindkit.datasets.synthetic.DEFAULTS`): size,
            audio_seconds, audio_rate, imu_seconds, imu_rate, audio_mic (``"shifted"``: the sounds recorded
            with another microphone, :mod:`~bindkit.datasets.synthetic.microphone`; every other file and the
            scenes are those of the default ``"clean"`` world with the same seed).

    Returns:
        a summary: ``out`` folder, ``counts`` per split, ``manifests`` (train pair manifests),
        ``zero_shot`` (held-out zero-shot files), ``classes`` (class files).
    """
    counts = _counts(n, splits)
    params = _params(params)
    if int(seed) < 0:
        raise DatasetError(f"seed must be >= 0, got {seed}")
    out = Path(out_dir)
    _prepare(out, overwrite)

    jobs = [(split, start, min(start + _CHUNK, count)) for split, count in counts.items()
            for start in range(0, count, _CHUNK)]
    for split, count in counts.items():
        for kind in MEDIA:
            (out / split / kind).mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(max(counts.values(), default=1) - 1)))
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in counts}
    total = sum(counts.values())
    with progress_bar(show_progress, total=total, desc="synthetic world", unit="sample") as bar:
        args = [(str(out), split, a, b, int(seed), width, params) for split, a, b in jobs]
        if int(workers) > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(max_workers=int(workers)) as pool:
                for (split, a, b), chunk in zip(jobs, pool.map(_render_chunk, *zip(*args))):
                    rows[split].extend(chunk)
                    bar.update(b - a)
        else:
            for (split, a, b), arg in zip(jobs, args):
                rows[split].extend(_render_chunk(*arg))
                bar.update(b - a)

    summary = _write_tables(out, rows, counts, int(seed), params)
    return summary


def _counts(n: int, splits: Mapping[str, int] | None) -> dict[str, int]:
    if splits is None:
        if int(n) < 1:
            raise DatasetError(f"n must be at least 1, got {n}")
        k = default_held_out_count(int(n))
        splits = {"train": int(n), "test": k, "compositional": k}
    counts: dict[str, int] = {}
    for name in sorted(splits, key=lambda s: SPLITS.get(s, 99)):
        try:
            check_split(name)
        except ValueError as exc:
            raise DatasetError(str(exc)) from None
        if int(splits[name]) < 0:
            raise DatasetError(f"split {name!r}: count must be >= 0, got {splits[name]}")
        if int(splits[name]) > 0:
            counts[name] = int(splits[name])
    if not counts:
        raise DatasetError("no samples to write: every split count is 0")
    return counts


def _params(params: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise DatasetError(f"unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    if int(p["size"]) < 16:
        raise DatasetError(f"size must be at least 16 pixels, got {p['size']}")
    if float(p["audio_seconds"]) < 0.1 or float(p["imu_seconds"]) < 0.5:
        raise DatasetError("audio_seconds must be >= 0.1 and imu_seconds >= 0.5")
    if int(p["audio_rate"]) < 4000 or float(p["imu_rate"]) < 10:
        raise DatasetError("audio_rate must be >= 4000 Hz and imu_rate >= 10 Hz")
    if p["audio_mic"] not in MICS:
        raise DatasetError(f"unknown audio_mic {p['audio_mic']!r}; choose among {', '.join(MICS)}")
    out = {"size": int(p["size"]), "audio_seconds": float(p["audio_seconds"]), "audio_rate": int(p["audio_rate"]),
           "imu_seconds": float(p["imu_seconds"]), "imu_rate": float(p["imu_rate"])}
    if p["audio_mic"] != "clean":  # recorded only when not the default: a default world's files stay as they were
        out["audio_mic"] = str(p["audio_mic"])
    return out


_OURS_DIRS = tuple(SPLITS)
_OURS_FILES = ("README.md", "world.json")


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "world.json").is_file():
            raise DatasetError(f"{out} is not empty and holds no synthetic world (no world.json); "
                               "choose an empty or new folder")
        if not overwrite:
            raise DatasetError(f"{out} already holds a synthetic world; pass --overwrite (overwrite=True) to "
                               "replace it, or choose another folder")
        for name in _OURS_DIRS:
            if (out / name).is_dir():
                shutil.rmtree(out / name)
        for f in out.iterdir():
            if f.is_file() and (f.name in _OURS_FILES or f.name.startswith(("classes_", "templates_"))
                                or (f.name.startswith("image_") and f.suffix == ".csv")):
                f.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _wav(wave: np.ndarray, rate: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wave, rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def _render_chunk(out: str, split: str, start: int, stop: int, seed: int, width: int,
                  params: dict[str, Any]) -> list[dict[str, Any]]:
    """Render and write samples start..stop-1 of ``split``; their labels.csv rows."""
    base = Path(out) / split
    rows = []
    for i in range(start, stop):
        s = sample(i, seed, split, **params)
        name = f"{i:0{width}d}"
        rel = {kind: f"{kind}/{name}{EXT[kind]}" for kind in MEDIA}
        (base / rel["image"]).write_bytes(_png(s["image"]))
        (base / rel["audio"]).write_bytes(_wav(s["audio"], s["audio_rate"]))
        (base / rel["depth"]).write_bytes(_png(depth_to_mm(s["depth"].astype(np.float64))))
        (base / rel["thermal"]).write_bytes(_png(s["thermal"]))
        (base / rel["imu"]).write_bytes(imu_csv(s["imu"].astype(np.float64), s["imu_rate"]))
        a = s["attributes"]
        rows.append({"id": name, **rel, "text": s["text"], **{k: a[k] for k in (*ATTRIBUTES, *_GEOMETRY)}})
    return rows


def _csv_bytes(header: list[str], rows: list[list[Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _write_tables(out: Path, rows: dict[str, list[dict[str, Any]]], counts: dict[str, int], seed: int,
                  params: dict[str, Any]) -> dict[str, Any]:
    """labels.csv, pair manifests, zero-shot files, class lists, world.json and README.md (written last, so
    a run that was killed leaves no manifests)."""
    manifests, zero_shot = [], []
    for split, split_rows in rows.items():
        base = out / split
        atomic_write_bytes(base / "labels.csv", _csv_bytes(
            list(LABEL_COLUMNS), [[r[c] for c in LABEL_COLUMNS] for r in split_rows]))
        if split == "train":
            where, prefix = out, "train/"
        else:
            where, prefix = base, ""
        for kind in PAIRED:
            path = where / f"image_{kind}.csv"
            other = (lambda r: r["text"]) if kind == "text" else (lambda r, k=kind: prefix + r[k])
            atomic_write_bytes(path, _csv_bytes(["image", kind], [[prefix + r["image"], other(r)]
                                                                 for r in split_rows]))
            if split == "train":
                manifests.append(str(path))
        path = where / "image_attributes.csv"  # image,text with every attribute's class name (attribute_caption)
        atomic_write_bytes(path, _csv_bytes(["image", "text"], [[prefix + r["image"], attribute_caption(r)]
                                                                for r in split_rows]))
        if split == "train":
            manifests.append(str(path))
            continue
        for kind, attrs in ENCODES.items():
            for attr in attrs:
                path = base / f"{kind}_{attr}.csv"
                atomic_write_bytes(path, _csv_bytes([kind, "label"], [[r[kind], r[attr]] for r in split_rows]))
                zero_shot.append(str(path))
    classes = []
    for attr, names in ATTRIBUTES.items():
        atomic_write_bytes(out / f"classes_{attr}.json", _json_bytes(list(names)))
        atomic_write_bytes(out / f"templates_{attr}.json", _json_bytes(list(TEMPLATES[attr])))
        classes.append(str(out / f"classes_{attr}.json"))
    world = _world_record(counts, seed, params)
    atomic_write_bytes(out / "world.json", _json_bytes(world))
    atomic_write_bytes(out / "README.md", _readme(counts, seed, params).encode("utf-8"))
    return {"out": str(out), "counts": dict(counts), "manifests": manifests, "zero_shot": zero_shot,
            "classes": classes}


def _world_record(counts: dict[str, int], seed: int, params: dict[str, Any]) -> dict[str, Any]:
    from ... import __version__

    return {
        "generator": "bindkit.datasets.synthetic",
        "bindkit_version": __version__,
        "seed": seed,
        "counts": counts,
        "params": params,
        "attributes": {k: list(v) for k, v in ATTRIBUTES.items()},
        "held_out_shape_colour": sorted([list(p) for p in HELD_OUT]),
        "encodes": {k: list(v) for k, v in ENCODES.items()},
        "formats": {
            "image": "RGB PNG",
            "audio": f"mono 16-bit PCM WAV, {params['audio_rate']} Hz, {params['audio_seconds']} s"
                     + (f", {params['audio_mic']} microphone" if "audio_mic" in params else ""),
            "depth": "16-bit grey PNG, millimetres (metric depth)",
            "thermal": f"8-bit grey PNG, value = (celsius - ({THERMAL_MIN_C})) * 255 / "
                       f"{THERMAL_MAX_C - THERMAL_MIN_C} (fixed scale: hot is bright)",
            "imu": f"CSV, header time_s,accel_x,accel_y,accel_z (m/s^2),gyro_x,gyro_y,gyro_z (rad/s); "
                   f"{params['imu_rate']} Hz, {params['imu_seconds']} s",
        },
    }


def _readme(counts: dict[str, int], seed: int, params: dict[str, Any]) -> str:
    held = ", ".join(f"{c} {s}" for s, c in sorted(HELD_OUT))
    split_lines = "\n".join(f"- `{s}/`: {c} samples" for s, c in counts.items())
    mic = f" (recorded with the {params['audio_mic']} microphone)" if "audio_mic" in params else ""
    return f"""# Synthetic world (seed {seed})

Written by `bindkit datasets synthetic` (bindkit.datasets.synthetic). Procedural data: every file is
regenerated exactly from the seed and the parameters in `world.json`.

{split_lines}

Each sample has one main object with a shape, colour, size, material, temperature and motion, rendered as
an image ({params['size']} px), a caption, a sound{mic}, a depth map, a thermal map and an IMU recording.
Held-out shape x colour combinations, only in `compositional/`: {held}.

## Files

- `image_text.csv`, `image_audio.csv`, `image_depth.csv`, `image_thermal.csv`, `image_imu.csv`:
  training pairs (the train split), paths relative to this folder.
- `<split>/labels.csv`: every file of each sample, its caption, labels and geometry.
- `test/` and `compositional/`: the same pair manifests (for `bindkit eval --retrieval`) and zero-shot
  files `<modality>_<attribute>.csv` with columns `<modality>,label`.
- `classes_<attribute>.json`: class names; `templates_<attribute>.json`: prompt templates.

## Use

    bindkit train image_text.csv --card bindkit_small --out m1
    bindkit train image_audio.csv --init m1 --freeze image,text --out m2
    bindkit eval m2 --retrieval test/image_audio.csv
    bindkit eval m2 --zero-shot test/audio_material.csv --classes classes_material.json \\
        --templates templates_material.json
    bindkit eval m2 --zero-shot test/imu_motion.csv --classes classes_motion.json \\
        --templates templates_motion.json
"""
