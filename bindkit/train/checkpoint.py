"""The output directory of ``bindkit train``.

::

    OUT/
      card.json  manifest.json  <modality>.safetensors   the trained model (best epoch by held-out R@1; the
                                                          last one with --val-split 0), written when training
                                                          ends; the `bindkit convert` format, so
                                                          bindkit.load_model("OUT") and --model OUT work
      train_record.json     data files + sha256, arguments, metrics per epoch, versions, seed, fingerprints
      metrics.csv           one row per optimizer step (loss per pair, lr, items/s)
      val_metrics.csv       one row per evaluation (loss, R@1 both ways and their chance level, per pair)
      tensorboard/          event files, when TensorBoard is installed
      checkpoints/last/     the latest checkpoint: model files + trainer_state.pt (optimizer, scheduler, RNG,
                            step) — what --resume continues from
      checkpoints/best/     model files of the best epoch so far

A LoRA run (``--lora``) writes, in OUT and in each checkpoint, a LoRA model directory instead of full weights:
``card.json``, ``manifest.json`` pointing at the base model, and one ``<encoder>.lora.safetensors`` per adapted
encoder (see :mod:`bindkit.adapt.lora_model`); ``bindkit.load_model("OUT")`` loads the base with them.

Checkpoint directories are replaced atomically (written beside, then renamed), so a run killed at any moment
leaves the previous checkpoint intact. ``checkpoints/`` may be deleted once training is finished.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from ..errors import CheckpointError, describe_exc
from ..fileio import atomic_path, atomic_write_bytes, fsync_dir, hash_file_into
from ..modality import ENCODERS
from ..models.encoder import encoder_fingerprint
from ..models.reference_layout import to_reference
from ..weights.read import CARD_FILE, MANIFEST

STATE_FILE = "trainer_state.pt"
RECORD_FILE = "train_record.json"
METRICS_FILE = "metrics.csv"
VAL_FILE = "val_metrics.csv"
CKPT_DIR = "checkpoints"
_OLD = ".old"


def write_model_dir(directory: Path, state: Mapping[str, torch.Tensor], card: dict[str, Any],
                    source: str = "bindkit train") -> dict[str, Any]:
    """Write ``state`` (bindkit layout, ``vision.trunk...``) as a model directory in the ``bindkit convert``
    format: one ``<modality>.safetensors`` per encoder (reference key names), ``card.json`` and a
    ``manifest.json`` with per file its key count, dtype, size, sha256 and weight fingerprint. Returns the
    manifest."""
    from safetensors.torch import save_file

    from ..cards import load_card
    from ..weights.convert import FORMAT, FORMAT_VERSION

    card_obj = load_card(card)  # validates
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    for enc in ENCODERS:
        prefix = enc + "."
        mine = {k: t for k, t in state.items() if k.startswith(prefix)}
        if not mine:
            continue
        tensors = {}
        for key in sorted(mine):
            name = to_reference(key)
            if name is None:  # pragma: no cover - every parameter of BindModel has a reference name
                raise CheckpointError(f"parameter {key} has no reference-layout name")
            tensors[name] = mine[key].detach().to("cpu").contiguous()
        final = directory / f"{enc}.safetensors"
        with atomic_path(final) as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT, "modality": enc})
        dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in tensors.values() if t.is_floating_point()})
        files[enc] = {"file": final.name, "keys": len(tensors), "dtype": ",".join(dtypes),
                      "bytes": final.stat().st_size,
                      "sha256": hash_file_into(hashlib.sha256(), final).hexdigest(),
                      "fingerprint": encoder_fingerprint(dict(mine), enc)}
    stored = {info["dtype"] for info in files.values()}
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "source": source, "card": card_obj.name,
                "dtype": stored.pop() if len(stored) == 1 else "mixed", "modalities": list(files), "files": files}
    atomic_write_bytes(directory / CARD_FILE, (json.dumps(card_obj.to_dict(), indent=2) + "\n").encode())
    atomic_write_bytes(directory / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def save_checkpoint(out: Path, which: str, state: Mapping[str, torch.Tensor] | None, card: dict[str, Any],
                    trainer_state: dict[str, Any] | None = None, *,
                    write: Callable[[Path], Any] | None = None) -> Path:
    """Replace ``OUT/checkpoints/<which>`` with the model ``state`` (and ``trainer_state`` when given).
    ``write(directory)``, when given, writes the model files instead (LoRA runs: adapters + base pointer)."""
    root = out / CKPT_DIR
    final = root / which
    tmp = root / f".{which}.tmp"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        if write is not None:
            write(tmp)
        else:
            write_model_dir(tmp, state, card)
        if trainer_state is not None:
            torch.save(trainer_state, tmp / STATE_FILE)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)  # no half-written checkpoint left to fill the disk
        if _out_of_space(exc, root):
            raise CheckpointError(
                f"no space to write the checkpoint {final} ({describe_exc(exc)}): the disk, a quota or a file-size "
                f"limit is full. The previous {which} checkpoint is intact; free some space (each checkpoint "
                "holds the model and the optimizer state) and continue with `bindkit train ... --resume`") from None
        raise
    old = root / f"{which}{_OLD}"
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(root, best_effort=True)
    if old.exists():
        shutil.rmtree(old)
    return final


def _out_of_space(exc: BaseException, folder: Path) -> bool:
    """Whether a failed write ran out of space: ENOSPC/EDQUOT/EFBIG, or a library's write error (torch.save's
    "file write failed", safetensors' I/O error) while the file system has next to nothing free."""
    import errno

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    text = str(exc).lower()
    if any(s in text for s in ("no space left", "file too large", "quota exceeded")):
        return True
    if "write" not in text and "inline_container" not in text:  # torch.save's writer says "unexpected pos"
        return False
    import resource

    if resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:
        return True  # a file-size limit is in force: the write ran into it
    try:
        return shutil.disk_usage(folder).free < (64 << 20)
    except OSError:
        return False


def checkpoint_dir(out: Path, which: str) -> Path | None:
    """``OUT/checkpoints/<which>``, or the copy it was replacing when a run died between the two renames."""
    root = out / CKPT_DIR
    for d in (root / which, root / f"{which}{_OLD}"):
        if (d / MANIFEST).is_file():
            return d
    return None


def load_trainer_state(directory: Path) -> dict[str, Any]:
    """The trainer state saved with a checkpoint (CheckpointError when absent or unreadable)."""
    path = directory / STATE_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{directory} has no {STATE_FILE}; it is not a resumable checkpoint") from None
    except Exception as exc:
        raise CheckpointError(f"{path} is unreadable ({type(exc).__name__}: {exc})") from None


def load_model_state(directory: Path) -> dict[str, torch.Tensor]:
    """The tensors of a model directory in bindkit layout (``vision.trunk...``)."""
    from ..models.reference_layout import to_ours
    from ..weights.read import read_state_dict

    return {to_ours(k) or k: t.clone() for k, t in read_state_dict(directory, None, mmap=False).items()}


def publish(out: Path, source: Path) -> None:
    """Copy a checkpoint's model files (safetensors, card, manifest — manifest last) to ``OUT`` itself."""
    manifest = json.loads((source / MANIFEST).read_text())
    for info in manifest["files"].values():
        shutil.copyfile(source / info["file"], out / f".{info['file']}.tmp")
        os.replace(out / f".{info['file']}.tmp", out / info["file"])
    shutil.copyfile(source / CARD_FILE, out / f".{CARD_FILE}.tmp")
    os.replace(out / f".{CARD_FILE}.tmp", out / CARD_FILE)
    atomic_write_bytes(out / MANIFEST, (source / MANIFEST).read_bytes())


class CsvLog:
    """An append-only CSV with a fixed header. ``truncate_after(step)`` drops rows of steps a resumed run will
    redo, so every step appears once."""

    def __init__(self, path: Path, columns: list[str]):
        self.path, self.columns = path, columns

    def truncate_after(self, step: int) -> None:
        if not self.path.is_file():
            return
        with open(self.path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if _step_of(r) is not None and _step_of(r) <= step]
        with open(self.path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def append(self, row: dict[str, Any]) -> None:
        new = not self.path.is_file()
        with open(self.path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def _step_of(row: dict[str, Any]) -> int | None:
    """The step of a CSV row; None for a line cut short by a kill."""
    try:
        return int(float(row.get("step") or ""))
    except ValueError:
        return None


def refuse_untrained(out: Path, skipped: Mapping[str, Mapping[int, str]]) -> None:
    """Before a finished run publishes its model: raise ManifestError when no step of the run (``metrics.csv``,
    across resumes) updated the weights — every item failed to load, or no batch had two loadable pairs —
    naming a few of the items that failed. Nothing is published then: OUT holds no model to mistake for a
    trained one (its checkpoints and logs stay, to look into)."""
    from .data import ManifestError

    try:
        with open(out / METRICS_FILE, newline="") as fh:
            losses = [row.get("loss") or "nan" for row in csv.DictReader(fh)]
    except OSError:
        return
    if any(_finite(v) for v in losses):
        return
    failed = [(key.split("#")[0], row, why) for key, rows in skipped.items() for row, why in rows.items()]
    shown = "; ".join(f"{pair} row {row}: {why}" for pair, row, why in failed[:3])
    raise ManifestError(
        f"training made no update in {len(losses)} step(s): "
        + (f"{len(failed)} item(s) failed to load (e.g. {shown})" if failed else
           "no batch had two loadable pairs")
        + f". Nothing was published to {out}. Fix the manifest's paths or files (run `bindkit embed` on a few "
        "of them to see why they fail to load) and train again")


def _finite(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def write_json(path: Path, obj: dict[str, Any]) -> None:
    """``obj`` as indented JSON (anything else as its ``str``), written atomically: the records and manifests of
    ``bindkit train`` and ``bindkit distill``."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def write_record(out: Path, record: dict[str, Any], name: str = RECORD_FILE) -> None:
    """The run's record, ``out/name`` (``train_record.json``; ``distill_record.json`` for a distillation)."""
    write_json(out / name, record)
