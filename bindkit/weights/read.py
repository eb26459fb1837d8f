"""Read reference-layout state dicts from a ``.pth``/``.pt``, a ``.safetensors`` file, a converted directory
or a mapping, restricted to some encoder modalities without touching the other tensors' bytes."""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, describe_exc
from ..fileio import sniff as _what_bytes_are
from ..modality import ENCODERS, canonical_modalities
from ..models.reference_layout import encoder_of_key

MANIFEST = "manifest.json"
CARD_FILE = "card.json"

# Top-level keys under which training scripts commonly nest the state dict.
_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "module")



def read_state_dict(
    source: "str | os.PathLike | Mapping[str, torch.Tensor]",
    modalities: list[str] | None = None,
    *,
    mmap: bool = True,
) -> dict[str, torch.Tensor]:
    """Tensors of a reference-layout checkpoint, keyed by the reference key names.

    Args:
        source: a reference ``.pth``/``.pt`` file (optionally wrapping the state dict under ``"model"`` or
            ``"state_dict"``), a ``.safetensors`` file, a directory written by :func:`bindkit.weights.convert`
            (one ``<modality>.safetensors`` per modality), or an in-memory mapping.
        modalities: encoder names (``vision, text, audio, depth, thermal, imu``; ``image``/``video`` mean
            ``vision``) whose keys to keep; None keeps every key.
        mmap: memory-map files so that tensors of other modalities are never read and the kept ones are paged
            in lazily. With ``mmap=False`` the kept tensors are read into ordinary memory.

    Returns:
        ``{key: tensor}`` on the CPU, in the stored dtype, for the keys whose second dotted component is one of
        ``modalities``.

    Raises:
        CheckpointError: the source is missing, truncated, not a checkpoint, not a state dict, or (for a
            converted directory) lacks a requested modality.
        ModalityError: an unknown modality name.
    """
    wanted = canonical_modalities(modalities)
    if isinstance(source, Mapping):
        return _filter(_unwrap(source, "<mapping>"), wanted, "<mapping>")
    path = Path(os.fspath(source)).expanduser()
    if path.is_dir():
        return _read_directory(path, wanted, mmap)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path, or fetch weights with "
                              "`bindkit fetch <card>`")
    kind = sniff(path)
    if kind == "safetensors":
        return _read_safetensors(path, wanted, mmap)
    return _filter(_unwrap(_torch_load(path, kind, mmap), str(path)), wanted, str(path))


def checkpoint_modalities(source: "str | os.PathLike | Mapping[str, torch.Tensor]") -> list[str]:
    """The encoder modalities a checkpoint holds (in ENCODERS order), reading no tensor data."""
    if not isinstance(source, Mapping):
        path = Path(os.fspath(source)).expanduser()
        if path.is_dir():
            return list(_directory_files(path))
        if path.is_file() and sniff(path) == "safetensors":
            keys = _safetensors_keys(path)
            return [m for m in ENCODERS if any(encoder_of_key(k) == m for k in keys)]
    found = {encoder_of_key(k) for k in read_state_dict(source, None, mmap=True)}
    return [m for m in ENCODERS if m in found]


# --- file kinds -------------------------------------------------------------------------------------------

def sniff(path: Path) -> str:
    """``"zip"`` (torch.save), ``"legacy"`` (pre-1.6 torch.save), or ``"safetensors"``; CheckpointError else."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
            size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 8 + n <= size:
            return "safetensors"
    if head[:1] == b"\x80":  # pickle PROTO opcode: the legacy (non-zip) torch.save format
        return "legacy"
    raise CheckpointError(f"{path} is not a PyTorch checkpoint or safetensors file (it looks like "
                          f"{_describe(head, size)}); pass the .pth/.safetensors file or a converted directory")


def _describe(head: bytes, size: int) -> str:
    if size == 0:
        return "an empty file"
    what = _what_bytes_are(head)
    if what:
        return what
    if head.lstrip().lower().startswith((b"<!doctype", b"<html", b"<?xml")):
        return "an HTML/XML page: a failed download?"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return f"unknown data starting with {head[:8].hex()}"


# --- torch.load -------------------------------------------------------------------------------------------

def _torch_load(path: Path, kind: str, mmap: bool) -> Any:
    try:
        # mmap needs the zip format; old checkpoints are read whole (there is no lazy way for them).
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and kind == "zip")
    except pickle.UnpicklingError as exc:
        first = describe_exc(exc, with_type=False)
        if "Weights only load failed" in first:
            raise CheckpointError(
                f"{path} holds Python objects other than tensors; bindkit loads checkpoints with "
                "weights_only=True for safety. Re-save it as a plain state dict "
                "(torch.save(model.state_dict(), path)) or convert it to safetensors"
            ) from None
        raise CheckpointError(f"{path} is not a valid PyTorch checkpoint ({first})") from None
    except (RuntimeError, EOFError, KeyError, ValueError, zipfile.BadZipFile, OSError) as exc:
        why = describe_exc(exc, with_type=False)
        raise CheckpointError(
            f"{path} is truncated or corrupt ({why}); download it again "
            "(`bindkit fetch <card> --force`) or check the copy"
        ) from None


def _unwrap(obj: Any, where: str) -> Mapping[str, torch.Tensor]:
    if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                return _unwrap(obj[key], where)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where} does not hold a state dict (found a {type(obj).__name__}); "
                              "expected {parameter name: tensor}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        shown = ", ".join(repr(k) for k in bad[:3])
        raise CheckpointError(f"{where} is not a state dict: {len(bad)} of its {len(obj)} entries ({shown}) "
                              "are not tensors keyed by name")
    # DistributedDataParallel checkpoints prefix every key with "module."
    if obj and all(k.startswith("module.") for k in obj):
        return {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _filter(sd: Mapping[str, torch.Tensor], wanted: list[str] | None, where: str) -> dict[str, torch.Tensor]:
    if sd and not any(encoder_of_key(k) for k in sd):
        raise CheckpointError(
            f"{where} is not an ImageBind-layout checkpoint (no 'modality_*' keys); it looks like a checkpoint "
            f"of another architecture (first keys: {', '.join(list(sd)[:3])})"
        )
    if wanted is None:
        return dict(sd)
    out = {k: v for k, v in sd.items() if encoder_of_key(k) in wanted}
    missing = [m for m in wanted if not any(encoder_of_key(k) == m for k in out)]
    if missing:
        raise CheckpointError(f"{where} has no weights for modality {', '.join(missing)}; "
                              "load only the modalities it holds (modalities=[...])")
    return out


# --- safetensors ------------------------------------------------------------------------------------------

def _safetensors_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return list(fh.keys())
    except Exception as exc:  # safetensors raises its own SafetensorError (not importable on every version)
        raise CheckpointError(f"{path} is a truncated or corrupt safetensors file ({exc}); "
                              "convert or download it again") from None


def _read_safetensors(path: Path, wanted: list[str] | None, mmap: bool,
                      where: str | None = None) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    where = where or str(path)
    out: dict[str, torch.Tensor] = {}
    try:
        # safe_open maps the file; get_tensor returns a view of the mapping (zero copy, paged in on use).
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            for key in fh.keys():
                if wanted is None or encoder_of_key(key) in wanted:
                    t = fh.get_tensor(key)
                    out[key] = t if mmap else t.clone()
    except Exception as exc:
        raise CheckpointError(f"{where} is a truncated or corrupt safetensors file ({exc}); "
                              "convert or download it again") from None
    if wanted is not None:
        return _filter(out, wanted, where)
    return out


# --- converted directories --------------------------------------------------------------------------------

def _directory_files(path: Path) -> dict[str, Path]:
    """modality -> file of a converted directory (from its manifest; by file name when there is none)."""
    manifest = path / MANIFEST
    if manifest.is_file():
        try:
            files = json.loads(manifest.read_text())["files"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{manifest} is unreadable ({exc!r}); convert the checkpoint again") from None
        found = {m: path / files[m]["file"] for m in ENCODERS if m in files}
    else:
        found = {m: path / f"{m}.safetensors" for m in ENCODERS if (path / f"{m}.safetensors").is_file()}
    if not found:
        raise CheckpointError(f"{path} is a directory without converted weights (no manifest.json or "
                              "<modality>.safetensors); create one with `bindkit convert SRC DIR`")
    return found


def recorded_fingerprints(source: Any) -> dict[str, str]:
    """Per-encoder weight fingerprints ``bindkit convert`` recorded in a converted directory's manifest (of the
    source values, so fp16/bf16 storage keeps the fingerprint of the original weights); {} for anything else.

    Only the fingerprints of files the manifest also records a sha256 for: :func:`read_state_dict` checks those
    bytes against it (:mod:`bindkit.weights.verify`) before they are used, so the fingerprint belongs to verified
    weights. A file without a sha256 gets no recorded fingerprint: the model computes it from the values."""
    if isinstance(source, Mapping):
        return {}
    manifest = Path(source).expanduser() / MANIFEST
    try:
        files = json.loads(manifest.read_text())["files"]
        return {m: str(info["fingerprint"]) for m, info in files.items()
                if info.get("fingerprint") and info.get("sha256")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _read_directory(path: Path, wanted: list[str] | None, mmap: bool) -> dict[str, torch.Tensor]:
    files = _directory_files(path)
    mods = list(files) if wanted is None else wanted
    absent = [m for m in mods if m not in files]
    if absent:
        raise CheckpointError(
            f"{path} has no weights for {', '.join(absent)} (no {absent[0]}.safetensors): it was converted "
            f"with a subset of modalities ({', '.join(files)}). Convert the checkpoint again without "
            f"--modality (or with --modality {absent[0]}), or load only {', '.join(files)}"
        )
    from .verify import manifest_files, verify_file

    entries = manifest_files(path)
    out: dict[str, torch.Tensor] = {}
    for m in mods:
        f = files[m]
        if not f.is_file():
            raise CheckpointError(f"{f} listed in {path / MANIFEST} is missing; convert the checkpoint again")
        if m in entries:  # its bytes against the manifest's sha256 (remembered per file identity): refused if not
            verify_file(f, entries[m], path / MANIFEST)
        out.update(_read_safetensors(f, [m], mmap))
    return out
