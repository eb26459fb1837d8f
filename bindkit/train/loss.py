"""ImageBind's loss: symmetric InfoNCE between the two sides of a batch of pairs, with negatives gathered from
every rank, and the retrieval metric used on the held-out split."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def logit_scale(encoder: nn.Module) -> torch.Tensor | None:
    """The encoder's temperature as a tensor (differentiable when learnable), clipped at ``max_logit_scale``;
    None for an encoder without one (vision, as in ImageBind)."""
    log = getattr(encoder, "log_logit_scale", None)
    if log is None:
        return None
    return log.exp().clamp(max=float(encoder.max_logit_scale))


def pair_scale(scale_a: torch.Tensor | None, scale_b: torch.Tensor | None) -> torch.Tensor:
    """The temperature of a pair: ImageBind multiplies each side's unit vectors by its modality's logit scale
    (none for vision), so the logits are ``scale_a * scale_b * cos``; image-X pairs use X's scale."""
    out = torch.ones(())
    for s in (scale_a, scale_b):
        if s is not None:
            out = out.to(s.device) * s
    return out


def gather(z: torch.Tensor) -> torch.Tensor:
    """Concatenate ``z`` (b_r, d) from every rank in rank order, keeping the gradient to the local rows
    (``torch.distributed.nn.functional.all_gather``). Ranks may hold different numbers of rows (items that
    failed to load are dropped): rows are padded to the largest count for the exchange and cut back after."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    from torch.distributed.nn.functional import all_gather

    n = torch.tensor([z.shape[0]], device=z.device)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    counts = [int(s) for s in sizes]
    top = max(counts)
    padded = F.pad(z, (0, 0, 0, top - z.shape[0])) if z.shape[0] < top else z
    parts = all_gather(padded.contiguous())
    return torch.cat([p[:c] for p, c in zip(parts, counts)])


def info_nce(za: torch.Tensor, zb: torch.Tensor, scale: torch.Tensor,
             labels: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE of matched rows ``za[i] <-> zb[i]`` (unit vectors): the mean of the cross-entropy of
    a -> b and b -> a over logits ``scale * za @ zb.T``.

    With ``labels`` (one class id per row; label pairing), every item of the query's label is a positive, with
    equal target weight, as in supervised contrastive learning (Khosla et al. 2020) and UniCL (Yang et al. 2022):
    in class-level pairs the written partner is one arbitrary member of its class, so the other members are no
    less right. Counting them as positives (rather than only masking them out of the denominator) also pulls
    each class together, which is what zero-shot through the shared space needs. Rows with distinct labels give
    the plain loss exactly."""
    logits = scale * (za @ zb.T)
    if labels is None:
        target = torch.arange(za.shape[0], device=za.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    same = (labels[:, None] == labels[None, :]).float()
    target = same / same.sum(dim=1, keepdim=True)  # symmetric mask: the same target serves both directions
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def recall_at_1(za: torch.Tensor, zb: torch.Tensor, same_a: torch.Tensor, same_b: torch.Tensor) -> tuple[float, float, float, float]:
    """R@1 both ways over matched rows, and the chance level of each direction.

    ``same_a[i, j]`` (bool) says rows i and j hold the same a-side item (the same file or the same text), likewise
    ``same_b``: a retrieved row counts as correct when it is the query's row or is interchangeable with it on
    either side, so repeated captions ("a red square") do not turn correct answers into misses. Chance is the
    expected R@1 of a random ranking under the same rule.

    Returns: (r1 a->b, r1 b->a, chance a->b, chance b->a).
    """
    sims = za @ zb.T
    ok = same_a | same_b
    idx = torch.arange(za.shape[0])
    r_ab = ok[idx, sims.argmax(dim=1).cpu()].float().mean().item()
    r_ba = ok[sims.argmax(dim=0).cpu(), idx].float().mean().item()
    chance = ok.float().mean(dim=1).mean().item()
    chance_t = ok.float().mean(dim=0).mean().item()
    return r_ab, r_ba, chance, chance_t
