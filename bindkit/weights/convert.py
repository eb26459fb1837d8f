"""Convert a reference checkpoint into a directory of per-modality safetensors files plus card and manifest,
one modality at a time so that peak memory stays about one modality's tensors."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..cards import Card, load_card
from ..errors import CheckpointError
from ..fileio import atomic_path, atomic_write_bytes, hash_file_into
from ..modality import ENCODERS, canonical_modalities
from ..models.encoder import reference_fingerprint
from ..models.reference_layout import encoder_of_key
from ..progress import progress_bar
from .read import CARD_FILE, MANIFEST, read_state_dict, sniff

FORMAT = "bindkit-weights"
FORMAT_VERSION = 1

_DTYPES = {
    "fp32": torch.float32, "float32": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
}


def parse_dtype(dtype: "torch.dtype | str | None") -> torch.dtype | None:
    """``"fp16"``/``"float16"``/``"bf16"``/``"bfloat16"``/``"fp32"`` or a torch dtype -> torch dtype (None stays)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        if dtype is not None and not dtype.is_floating_point:
            raise CheckpointError(f"storage dtype must be a floating-point type, got {dtype}")
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise CheckpointError(f"unknown storage dtype {dtype!r}; use one of fp32, fp16, bf16")
    return _DTYPES[key]


def _present_modalities(src: Any) -> tuple[list[str], list[str]]:
    """(modalities present, keys that belong to none) of ``src``, touching no tensor data when mmap works."""
    sd = read_state_dict(src, None, mmap=True)
    mods = {encoder_of_key(k) for k in sd}
    stray = sorted(k for k in sd if encoder_of_key(k) is None)
    del sd
    return [m for m in ENCODERS if m in mods], stray


def convert(
    src: "str | os.PathLike | Mapping[str, torch.Tensor]",
    out_dir: "str | os.PathLike",
    *,
    card: "str | Card | None" = None,
    dtype: "torch.dtype | str | None" = None,
    modalities: list[str] | None = None,
    progress: bool = True,
) -> Path:
    """Write ``out_dir/<modality>.safetensors`` for each modality of a reference checkpoint.

    Args:
        src: anything :func:`read_state_dict` reads (a reference ``.pth``, safetensors, converted directory,
            or mapping).
        out_dir: destination directory (created). Files are written atomically (temporary file + rename).
        card: card name/path/Card stored as ``card.json`` so the directory is self-describing.
        dtype: storage dtype of floating-point tensors (``"fp16"``, ``"bf16"``...); None keeps the source's.
        modalities: encoders to convert (default: every modality present in ``src``).
        progress: show a tqdm bar (only on a terminal).

    Returns:
        ``out_dir`` as a Path. ``manifest.json`` lists format version, dtype, and per file its key count,
        size in bytes and sha256.
    """
    target = parse_dtype(dtype)
    card_obj = load_card(card) if card is not None else None
    source_name = _name(src)
    if not isinstance(src, Mapping) and Path(src).is_file() and sniff(Path(src)) == "legacy":
        # Old-format checkpoints cannot be memory-mapped: read once, convert from memory.
        src = read_state_dict(src, None, mmap=False)
    present, stray = _present_modalities(src)
    wanted = canonical_modalities(modalities)
    if wanted is None:
        wanted = present
    absent = [m for m in wanted if m not in present]
    if absent:
        raise CheckpointError(f"{source_name} has no weights for {', '.join(absent)}; it holds "
                              f"{', '.join(present) or 'no modality keys'}")
    if not wanted:
        raise CheckpointError(f"{source_name} holds no reference-layout keys (modality_*.<modality>.*)")
    if card_obj is not None:
        unknown = [m for m in wanted if m not in card_obj.modalities]
        if unknown:
            raise CheckpointError(f"card {card_obj.name!r} has no {', '.join(unknown)} encoder; "
                                  "pick the card that matches the checkpoint")
    if stray:
        print(f"warning: {len(stray)} key(s) belong to no modality and are not converted: "
              f"{', '.join(stray[:5])}", file=sys.stderr)

    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"cannot create the output directory {out} ({exc.strerror or exc}); pass a new "
                              "directory path") from None
    files: dict[str, dict[str, Any]] = {}
    bar = progress_bar(None if progress else False, iterable=wanted, desc="convert", unit="modality")
    for m in bar:
        bar.set_postfix_str(m)
        files[m] = _convert_one(src, m, out, target)
        gc.collect()  # drop the mapping of this modality before paging in the next one
    bar.close()

    stored = {info["dtype"] for info in files.values()}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source": source_name,
        "card": card_obj.name if card_obj else None,
        "dtype": stored.pop() if len(stored) == 1 else "mixed",
        "modalities": list(files),
        "files": files,
    }
    if card_obj is not None:
        atomic_write_bytes(out / CARD_FILE, (json.dumps(card_obj.to_dict(), indent=2) + "\n").encode())
    atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return out


def _convert_one(src: Any, modality: str, out: Path, target: torch.dtype | None) -> dict[str, Any]:
    from safetensors.torch import save_file

    sd = read_state_dict(src, [modality], mmap=True)
    fingerprint = reference_fingerprint(sd, modality)  # of the source values, before any storage cast
    tensors = {}
    for key in sorted(sd):
        t = sd.pop(key)
        if target is not None and t.is_floating_point():
            t = t.to(target)
        tensors[key] = t.contiguous()
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in tensors.values() if t.is_floating_point()})
    final = out / f"{modality}.safetensors"
    try:
        with atomic_path(final) as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT, "modality": modality})
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"cannot write {final}: {exc}") from None
    n = len(tensors)
    del tensors, sd
    return {
        "file": final.name,
        "keys": n,
        "dtype": dtypes[0] if len(dtypes) == 1 else ",".join(dtypes),
        "bytes": final.stat().st_size,
        "sha256": hash_file_into(hashlib.sha256(), final).hexdigest(),
        "fingerprint": fingerprint,
    }


def _name(src: Any) -> str:
    return "<mapping>" if isinstance(src, Mapping) else str(src)
