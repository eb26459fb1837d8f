"""One contrastive training step of ``bindkit train``: one global batch from each manifest, both sides embedded
in one forward (frozen, non-augmented sides read from their caches), gathered across ranks, the symmetric InfoNCE
losses summed, and one AdamW update (with gradient clipping and, for fp16, loss scaling).

Every encoder output enters the loss, times 0 when a batch is unusable (fewer than 2 loadable pairs), so that DDP
reduces the same parameters on every rank at every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from .data import Manifest, PairDataset
from .encode import empty_batch, to_device
from .loss import gather, info_nce


@dataclass
class StepParts:
    """What a step needs that does not change between steps: the manifests and their datasets, the frozen
    sides' caches (and the rows that failed to embed into them), the loader parameters, the labels of
    label-paired manifests (a tensor on ``device``, converted once), the module DDP wraps, and the optimiser."""

    mans: Sequence[Manifest]
    datasets: Sequence[PairDataset]
    caches: Sequence[dict[str, torch.Tensor]]
    cache_failed: Sequence[dict[int, str]]
    params: dict[str, dict]
    labels: Sequence[torch.Tensor | None]
    device: torch.device
    module: torch.nn.Module
    autocast: Callable[[], Any]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    trainable_params: list[torch.nn.Parameter]
    grad_clip: float
    say: Callable[[str], None]


@dataclass
class StepOutcome:
    """One step's numbers: the summed loss (NaN when no batch was usable), each manifest's loss (None when its
    batch was unusable), the pairs that entered the loss on every rank, and the learning rate it used."""

    loss: float
    losses: list[torch.Tensor | None]
    n_pairs: int
    lr: float


def skip_key(m: Manifest, i: int) -> str:
    """The key of manifest ``i`` in the skipped-rows table."""
    return f"{m.pair}#{i}"


def jobs_of(parts: StepParts, loaded: Sequence[Any], skipped: dict[str, dict[int, str]]
            ) -> list[tuple[str, torch.Tensor | None, str, torch.Tensor | None]]:
    """The forward's inputs (kind and batch of each non-cached side, per manifest); rows that failed to load are
    recorded in ``skipped`` (the first three of each manifest said)."""
    jobs = []
    for i, (m, b) in enumerate(zip(parts.mans, loaded)):
        for row, why in b.failed:
            if row not in skipped[skip_key(m, i)]:
                skipped[skip_key(m, i)][row] = why
                if len(skipped[skip_key(m, i)]) <= 3:
                    parts.say(f"{m.name}: skipping row {row}: {why}")
        sides = []
        for side, kind in (("a", m.a), ("b", m.b)):
            x = getattr(b, side)
            if side in parts.caches[i]:
                sides.append(None)
            else:
                sides.append(to_device(x if len(b.rows) else empty_batch(kind, parts.params[kind]), parts.device))
        jobs.append((m.a, sides[0], m.b, sides[1]))
    return jobs


def pair_losses(parts: StepParts, outs: Sequence[Any], loaded: Sequence[Any], skipped: dict[str, dict[int, str]]
                ) -> tuple[list[torch.Tensor | None], list[torch.Tensor], int]:
    """Each manifest's InfoNCE loss over the gathered batch (None when fewer than 2 pairs are usable), its zero
    anchor (every output times 0), and the number of pairs."""
    dev = parts.device
    losses: list[torch.Tensor | None] = []
    anchors: list[torch.Tensor] = []
    n_pairs = 0
    for i, ((za, zb, scale), b) in enumerate(zip(outs, loaded)):
        rows = b.rows.to(dev)
        redrawn = b.partners.to(dev) if b.partners is not None else rows
        cache, redraw = parts.caches[i], parts.datasets[i].redraw
        if "a" in cache:
            za = cache["a"][redrawn if redraw == "a" else rows]
        if "b" in cache:
            zb = cache["b"][redrawn if redraw == "b" else rows]
        labels = parts.labels[i][rows].float()[:, None] if parts.labels[i] is not None else None
        ok = ~(torch.isnan(za).any(1) | torch.isnan(zb).any(1))  # frozen items that failed to load
        if not bool(ok.all()):
            for row in b.rows[~ok.cpu()].tolist():
                skipped[skip_key(parts.mans[i], i)].setdefault(row, parts.cache_failed[i].get(row, "failed to load"))
            za, zb = za[ok], zb[ok]
            labels = labels[ok] if labels is not None else None
        # every output enters the loss (times 0 when a batch is unusable): DDP reduces the same
        # parameters on every rank and step
        anchor = torch.zeros((), device=dev)
        for z in (za, zb, scale):
            if z is not None and z.requires_grad:
                anchor = anchor + 0.0 * z.float().sum()
        za, zb = gather(za.float()), gather(zb.float())
        if labels is not None:
            labels = gather(labels)[:, 0]
        n_pairs += za.shape[0]
        usable = za.shape[0] >= 2
        losses.append(info_nce(za, zb, scale.float(), labels) + anchor if usable else None)
        anchors.append(anchor)
    return losses, anchors, n_pairs


def update(parts: StepParts, loss: torch.Tensor, any_usable: bool, step: int) -> float:
    """Backward and one optimiser update (none when no batch was usable); returns the loss, NaN without an
    update. The scheduler is stepped either way."""
    optimizer, scaler = parts.optimizer, parts.scaler
    optimizer.zero_grad(set_to_none=True)
    if loss.requires_grad:  # always, unless every side is cached (refused earlier)
        (scaler.scale(loss) if scaler is not None else loss).backward()
    if any_usable:
        if scaler is not None:
            scaler.unscale_(optimizer)
        if parts.grad_clip and parts.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(parts.trainable_params, parts.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        loss_v = float(loss.detach())
    else:
        parts.say(f"step {step + 1}: fewer than 2 loadable pairs in every batch; no update")
        loss_v = float("nan")
    parts.scheduler.step()
    return loss_v


def contrastive_step(parts: StepParts, loaded: Sequence[Any], skipped: dict[str, dict[int, str]],
                     step: int) -> StepOutcome:
    """One training step on ``loaded`` (one batch per manifest); ``step`` is the number of steps taken before."""
    jobs = jobs_of(parts, loaded, skipped)
    with parts.autocast():
        outs = parts.module(jobs)
    losses, anchors, n_pairs = pair_losses(parts, outs, loaded, skipped)
    terms = [x for x in losses if x is not None]
    lr_now = parts.scheduler.get_last_lr()[0]
    loss = torch.stack(terms + [a for a, x in zip(anchors, losses) if x is None]).sum()
    loss_v = update(parts, loss, bool(terms), step)
    return StepOutcome(loss=loss_v, losses=losses, n_pairs=n_pairs, lr=lr_now)



__all__ = ["StepOutcome", "StepParts", "contrastive_step", "jobs_of", "pair_losses", "skip_key", "update"]
