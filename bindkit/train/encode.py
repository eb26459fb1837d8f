"""Encoding for training and evaluation: the module DDP wraps, per-side encoding with clip averaging, the data
loader, embedding rows of a manifest (frozen caches and the held-out split) and validation metrics. (The
optimiser's parameter groups and schedule are in :mod:`.optim`, the training step in :mod:`.step`.)"""

from __future__ import annotations

import contextlib
import math
from functools import partial
from typing import Any, Callable, Sequence, TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..modality import encoder_of
from .data import PairDataset, collate
from .loss import info_nce, logit_scale, pair_scale, recall_at_1

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel


def encode_side(encoder: nn.Module, kind: str, x: torch.Tensor) -> torch.Tensor:
    """Unit vectors (N, dim) of a collated batch, with gradients when the encoder is training. Audio and video
    batches carry a clips axis: clips are embedded separately, averaged and renormalised (as ``encode``)."""
    if kind == "audio" and x.ndim == 4:
        x = x.unsqueeze(1)
    if kind in ("audio", "video"):
        n, s = x.shape[:2]
        z = encoder(x.flatten(0, 1))
        out = z.view(n, s, z.shape[-1]).mean(dim=1)
        return F.normalize(out, dim=-1)
    return encoder(x)


def empty_batch(kind: str, params: dict) -> torch.Tensor:
    """A batch of zero items of ``kind`` (a rank whose items all failed to load still runs its encoders, so
    every rank's backward reduces the same parameters)."""
    from ..inputs.batch import LOADERS

    return torch.zeros((0, *LOADERS[kind].shape(params)), dtype=torch.long if kind == "text" else torch.float32)


class PairModule(nn.Module):
    """What DDP wraps: the encoders of a BindModel, run on the non-cached sides of every manifest's batch in
    one forward (DDP allows one forward per backward). Every trainable encoder runs every step (on an empty
    batch if need be), so DDP needs no search for unused parameters."""

    def __init__(self, encoders: nn.ModuleDict):
        super().__init__()
        self.encoders = encoders

    def forward(self, jobs: Sequence[tuple[str, torch.Tensor | None, str, torch.Tensor | None]]
                ) -> list[tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]]:
        out = []
        for kind_a, xa, kind_b, xb in jobs:
            ea, eb = self.encoders[encoder_of(kind_a)], self.encoders[encoder_of(kind_b)]
            za = encode_side(ea, kind_a, xa) if xa is not None else None
            zb = encode_side(eb, kind_b, xb) if xb is not None else None
            out.append((za, zb, pair_scale(logit_scale(ea), logit_scale(eb))))
        return out


def to_device(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    return x


def make_loader(dataset: PairDataset, batch_sampler: Any, text_params: dict | None, workers: int,
                seed: int) -> torch.utils.data.DataLoader:
    """A DataLoader over ``batch_sampler`` that never draws from the global torch RNG (its own generator), so
    a resumed run's dropout/drop-path randomness matches an uninterrupted one."""
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=batch_sampler, num_workers=workers,
        collate_fn=partial(collate, text_params=text_params),
        generator=torch.Generator().manual_seed(int(seed)), persistent_workers=False,
    )


class _Sequential(torch.utils.data.Sampler):
    def __init__(self, rows: Sequence[int], batch_size: int):
        self.rows, self.bs = [int(r) for r in rows], batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.bs)

    def __iter__(self):
        for i in range(0, len(self.rows), self.bs):
            yield [(r, -1) for r in self.rows[i:i + self.bs]]


@torch.no_grad()
def embed_rows(model: "BindModel", dataset: PairDataset, rows: Sequence[int], batch_size: int, workers: int,
               device: torch.device, sides: Sequence[str] = ("a", "b"),
               cache: dict[str, torch.Tensor] | None = None, autocast: Callable | None = None,
               ) -> tuple[dict[str, torch.Tensor], list[tuple[int, str]]]:
    """Embed ``rows`` of ``dataset``'s manifest without augmentation, in whatever mode the caller set (eval):
    ``{side: (len(rows), dim) float32 on device}`` with NaN rows for items that failed, and the failures. A side
    found in ``cache`` (row-indexed embeddings) is read from it."""
    m = dataset.m
    skip = {s for s in ("a", "b") if s not in sides or (cache and s in cache)}
    ds = PairDataset(m, dataset.params, {}, skip, seed=0, cache=dataset.cache)
    pos = {int(r): i for i, r in enumerate(rows)}
    out = {s: torch.full((len(rows), int(model.dim)), float("nan"), device=device) for s in sides}
    failed: list[tuple[int, str]] = []
    loader = make_loader(ds, _Sequential(rows, batch_size), dataset.params.get("text"), workers, 0)
    kinds = {"a": m.a, "b": m.b}
    for batch in loader:
        failed += batch.failed
        if not len(batch.rows):
            continue
        at = torch.tensor([pos[int(r)] for r in batch.rows], device=device)
        for s in sides:
            if cache and s in cache:
                out[s][at] = cache[s][batch.rows.to(device)]
                continue
            x = to_device(getattr(batch, s), device)
            enc = model.encoders[encoder_of(kinds[s])]
            with (autocast() if autocast else contextlib.nullcontext()):
                out[s][at] = encode_side(enc, kinds[s], x).float()
    return out, failed


def same_items(values: Sequence[str]) -> torch.Tensor:
    """(n, n) bool: rows holding the same item (same file path or same text)."""
    ids = {v: i for i, v in enumerate(dict.fromkeys(values))}
    codes = torch.tensor([ids[v] for v in values])
    return codes[:, None] == codes[None, :]


@torch.no_grad()
def validate(model: "BindModel", dataset: PairDataset, batch_size: int, workers: int, device: torch.device,
             cache: dict[str, torch.Tensor] | None, autocast: Callable | None = None) -> dict[str, Any] | None:
    """Loss and R@1 both ways on the held-out rows of ``dataset``'s manifest (None when it has none). Rows whose
    media fail to load are left out and counted."""
    manifest = dataset.m
    rows = [int(r) for r in manifest.val_idx]
    if not rows:
        return None
    emb, failed = embed_rows(model, dataset, rows, batch_size, workers, device, cache=cache, autocast=autocast)
    ok = ~(torch.isnan(emb["a"]).any(1) | torch.isnan(emb["b"]).any(1))
    keep = [r for r, k in zip(rows, ok.tolist()) if k]
    if len(keep) < 2:
        return {"n": len(keep), "failed": len(failed)}
    za, zb = emb["a"][ok], emb["b"][ok]
    ea, eb = model.encoders[encoder_of(manifest.a)], model.encoders[encoder_of(manifest.b)]
    scale = pair_scale(logit_scale(ea), logit_scale(eb)).to(device)
    if manifest.pairing == "label" and manifest.labels is not None:
        # class-level pairs: a row's written partner is one arbitrary member of its class, so pair-level R@1 is
        # near chance by construction; a retrieved item of the query's label is a hit (label-level R@1)
        labels = torch.as_tensor(manifest.labels[keep])
        loss = float(info_nce(za, zb, scale, labels.to(za.device)))
        same_a = same_b = labels[:, None] == labels[None, :]
    else:
        loss = float(info_nce(za, zb, scale))
        same_a = same_items([manifest.rows[r][0] for r in keep])
        same_b = same_items([manifest.rows[r][1] for r in keep])
    r_ab, r_ba, c_ab, c_ba = recall_at_1(za.cpu(), zb.cpu(), same_a, same_b)
    return {"n": len(keep), "failed": len(failed), "loss": loss, "r1_ab": r_ab, "r1_ba": r_ba,
            "chance_ab": c_ab, "chance_ba": c_ba, "scale": float(scale), "level": manifest.pairing}
