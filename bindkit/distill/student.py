"""The student: its card (the architecture of ``--student-card``, one encoder, projecting into the teacher's
space, with the record that says whose space it serves), its initialisation from the teacher, and its inputs."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import torch

from ..cards import load_card, model_dir
from ..errors import CardError, InputError
from ..index.student import RECORD_KEY
from ..modality import encoder_of
from .options import DistillArgumentError


def teacher_source(teacher: Any, weights: Any = None) -> str | None:
    """How to load the teacher again: a model directory's absolute path, or a card name (None for a model
    object, whose origin is unknown, or for a card loaded from explicit weights)."""
    if isinstance(teacher, (str, os.PathLike)):
        if model_dir(teacher) is not None:
            return str(Path(teacher).expanduser().resolve())
        return None if weights is not None else str(teacher)
    return None


def teacher_fingerprints(teacher: Any, spec: Any) -> dict[str, str]:
    """Fingerprints of the teacher's encoders: those it has loaded, plus those its model directory records."""
    from ..weights.read import recorded_fingerprints

    out = {}
    if isinstance(spec, (str, os.PathLike)) and model_dir(spec) is not None:
        out.update(recorded_fingerprints(Path(spec).expanduser()))
    out.update({e: teacher.fingerprint(e) for e in teacher.modalities})
    return out


def make_student_card(card: Any, teacher: Any, kind: str, name: str, record: dict[str, Any]) -> dict[str, Any]:
    """The card of the student model: ``card``'s encoder for ``kind`` only, named ``name``, with the teacher's
    licence and the distillation record under ``weights["distilled"]``.

    Raises:
        CardError: the card has no encoder for ``kind``, or projects into another dimension than the teacher's.
    """
    base = load_card(card)
    enc = encoder_of(kind)
    if enc not in base.modalities:
        raise CardError(f"student card {base.name!r} has no {enc} encoder for {kind} items (it has "
                        f"{', '.join(base.modalities)}); choose a card with one")
    if int(base.out_embed_dim) != int(teacher.dim):
        raise CardError(
            f"student card {base.name!r} projects into a {base.out_embed_dim}-d space, but the teacher "
            f"{teacher.card.name!r} embeds into {teacher.dim}-d: a student learns to output the teacher's own "
            f"vectors, so that they can be compared with them and searched against the teacher's index. Set "
            f"\"out_embed_dim\": {teacher.dim} in the student card (the encoder's width and depth may be anything)")
    d = base.to_dict()
    d["name"] = name
    d["modalities"] = {enc: d["modalities"][enc]}
    d["preprocess"] = {k: v for k, v in d["preprocess"].items() if encoder_of(k) == enc}
    cfg = d["modalities"][enc]
    d["description"] = (
        f"A student of {teacher.card.name!r} for {kind}: the architecture of card {base.name!r} ({enc} encoder, "
        f"width {cfg['embed_dim']}, {cfg['num_blocks']} block(s)), trained by bindkit distill to reproduce the "
        f"teacher's {kind} vectors in its {teacher.dim}-d space. It serves {kind} queries on indexes built with the "
        f"teacher; items are added with the teacher.")
    license_ = teacher.card.license or teacher.card.weights.get("license", "")
    d["weights"] = {"source": "bindkit distill", "license": license_,
                    "license_note": f"trained on the outputs of {teacher.card.name!r}: its licence terms may apply",
                    RECORD_KEY: record}
    d["license"] = license_
    return d


def copy_teacher_tensors(student: torch.nn.Module, teacher: torch.nn.Module,
                         teacher_blocks: Sequence[int] | None = None) -> tuple[list[str], list[str]]:
    """Start ``student`` (an encoder) from ``teacher``'s encoder wherever their parameters share a name: copied
    whole when the shapes are equal, and *sliced* (the leading part of every axis) when the student's is smaller
    in some axes — structured pruning: a narrower student keeps the first residual dimensions, the first attention
    heads (the fused q/k/v projection is sliced part by part) and the first MLP units; a shallower one keeps the
    first blocks; a shorter context the first positions. Fine-tuning then recovers what was cut, far faster than
    from random weights. A tensor the student has *larger* in some axis (a wider MLP) gets the teacher's in its
    leading block, the student's initialisation elsewhere and zeros in the extra input columns of weight matrices,
    so it starts computing what the teacher's did. ``teacher_blocks`` chooses which teacher block starts each
    student block (``[0, 3]``: the first and the last of four, as DistilBERT keeps every other layer; default
    the first ones). Returns (names copied whole, names sliced or grown).

    Raises:
        DistillArgumentError (a DistillError): ``teacher_blocks`` names a block the teacher lacks, or not one per student block.
    """
    theirs = teacher.state_dict()
    if teacher_blocks is not None:
        theirs = _renumber_blocks(theirs, teacher_blocks)
    mine = student.state_dict()
    whole, sliced, grown, new = [], [], [], {}
    for name, p in student.named_parameters():
        t = theirs.get(name)
        if t is None or p.ndim == 0 or t.ndim != p.ndim:  # the temperature stays the card's
            continue
        if tuple(t.shape) == tuple(p.shape):
            new[name] = t
            whole.append(name)
        elif all(a <= b for a, b in zip(p.shape, t.shape)):
            new[name] = _leading(name, t, tuple(p.shape))
            sliced.append(name)
        elif not name.endswith("attn.qkv.weight") and not name.endswith("attn.qkv.bias"):
            new[name] = _grown(t, mine[name])
            grown.append(name)
    if new:
        with torch.no_grad():
            student.load_state_dict({**mine, **{k: v.to(mine[k].dtype) for k, v in new.items()}}, strict=True)
    return sorted(whole), sorted(sliced + grown)


def _renumber_blocks(state: dict[str, torch.Tensor], blocks: Sequence[int]) -> dict[str, torch.Tensor]:
    """``state`` with ``trunk.blocks.{i}.*`` taken from teacher block ``blocks[i]`` (other tensors as they are)."""
    have = sorted({int(k.split(".")[2]) for k in state if k.startswith("trunk.blocks.")})
    bad = [b for b in blocks if int(b) not in have]
    if bad:
        raise DistillArgumentError(f"teacher_blocks {list(blocks)}: the teacher has blocks {have[0]}..{have[-1]}, "
                                   f"not {', '.join(map(str, bad))}")
    out = {k: v for k, v in state.items() if not k.startswith("trunk.blocks.")}
    for i, b in enumerate(blocks):
        prefix = f"trunk.blocks.{int(b)}."
        out.update({f"trunk.blocks.{i}.{k[len(prefix):]}": v for k, v in state.items() if k.startswith(prefix)})
    return out


def _grown(t: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
    """A larger tensor holding ``t`` in its leading block: the student's own initialisation elsewhere, except
    the extra *input* columns of a weight matrix (axis 1), which are zero — so a wider MLP starts as the
    teacher's (its extra hidden units feed nothing until trained; Net2Net-style growth)."""
    out = init.detach().clone()
    if out.ndim >= 2:
        out[:, t.shape[1]:] = 0
    region = tuple(slice(0, min(a, b)) for a, b in zip(t.shape, out.shape))
    out[region] = t[region]
    return out


def _leading(name: str, t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The leading ``shape`` block of ``t``; a fused q/k/v projection (3 stacked parts) is sliced per part."""
    if name.endswith("attn.qkv.weight") or name.endswith("attn.qkv.bias"):
        part = (shape[0] // 3,) + shape[1:]
        return torch.cat([c[tuple(slice(0, n) for n in part)] for c in t.chunk(3, dim=0)])
    return t[tuple(slice(0, n) for n in shape)].clone()


class StudentInputs:
    """The student's inputs by row: texts are tokenised once (with the student's own context length), media
    are loaded per batch in threads and kept in memory up to ``cache_mb``."""

    def __init__(self, kind: str, items: Sequence[Any], params: dict[str, Any], workers: int = 0,
                 cache_mb: float = 1024):
        from ..train.data import ItemCache

        self.kind, self.items, self.params = kind, items, params
        self.workers = max(1, workers or min(8, os.cpu_count() or 1))
        self.cache = ItemCache(int(cache_mb * 2**20))
        self.tokens: torch.Tensor | None = None
        if kind == "text":
            from ..inputs.text import tokenize

            self.tokens = torch.cat([tokenize(items[i:i + 4096], params) for i in range(0, len(items), 4096)])

    def batch(self, rows: Sequence[int]) -> tuple[torch.Tensor | None, list[int], dict[int, str]]:
        """(batch tensor, the rows it holds, {row: reason} of rows that failed to load)."""
        if self.tokens is not None:
            return self.tokens[list(rows)], list(rows), {}
        from ..inputs.batch import load_item

        def one(row: int) -> torch.Tensor | str:
            got = self.cache.get((row, ""))
            if got is None:
                try:
                    got = load_item(self.kind, self.items[row], row, self.params)
                except InputError as exc:
                    got = exc.reason
                self.cache.put((row, ""), got)
            return got

        if self.workers > 1 and len(rows) > 1:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="bindkit-distill") as pool:
                loaded = list(pool.map(one, rows))
        else:
            loaded = [one(r) for r in rows]
        ok = [(r, t) for r, t in zip(rows, loaded) if isinstance(t, torch.Tensor)]
        failed = {r: t for r, t in zip(rows, loaded) if not isinstance(t, torch.Tensor)}
        if not ok:
            return None, [], failed
        return torch.stack([t for _, t in ok]), [r for r, _ in ok], failed
