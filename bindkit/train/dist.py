"""Distributed context: one process per device under ``torchrun`` (gloo on CPU, nccl on GPU), or a single
process. Rank 0 writes files; every rank loads the same data order and keeps its own RNG state."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class Dist:
    """Where this process stands: ``rank`` of ``world`` processes, on ``device``."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def main(self) -> bool:
        """True on the process that writes files and shows progress (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def gather_objects(self, obj: Any) -> list[Any]:
        """``obj`` from every rank, in rank order (a list of one element in a single process)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def setup(device: "str | torch.device | None") -> Dist:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE``/``RANK``/``LOCAL_RANK``), or stay single.

    ``device`` None picks ``$BINDKIT_DEVICE``, else ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU
    (``factory.auto_device``). The backend is nccl for CUDA devices and gloo otherwise.
    """
    from ..factory import auto_device, resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device) if device is not None else auto_device()
    if dev.type == "cuda" and dev.index is None:  # one GPU per torchrun process (set_device needs an index)
        dev = torch.device("cuda", local % torch.cuda.device_count())
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    owns = False
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"backend": backend, "timeout": timedelta(minutes=30)}
        if backend == "nccl":
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
        owns = True
    if dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
    return Dist(rank=rank, world=world, device=dev, owns_group=owns)
