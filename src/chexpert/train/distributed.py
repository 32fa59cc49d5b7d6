"""Several processes (GPUs, machines) under ``torchrun``: one process group, rank 0 writes, all step together.

``torchrun --nproc_per_node=N -m chexpert train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :class:`Distributed` then joins the process group (NCCL on GPUs, gloo on the CPU),
each rank reads its shard of every epoch (:class:`~chexpert.sampling.EpochSampler`'s rank
sharding) and DistributedDataParallel averages the gradients. Validation and the U-SelfTrained
labelling pass score shards too, gathered back in row order (``loop.score_rows``); rank 0 alone
decides which checkpoints to keep (broadcast to the others), logs and writes. Without torchrun it is one process and every
method is trivial.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = ["Distributed"]

T = TypeVar("T")


class Distributed:
    """This process's place among the ranks; ``started`` says whether it joined the group itself."""

    def __init__(self, device: torch.device) -> None:
        self.started = False
        if dist.is_available() and dist.is_initialized():
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        elif int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available():
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
            self.started = True
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        else:
            self.rank, self.world_size = 0, 1
        self.device = device

    @property
    def active(self) -> bool:
        """Whether there is more than one rank."""
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Whether this is the rank that validates, logs and writes."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.active:
            dist.barrier()

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks."""
        if not self.active:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order (on every rank)."""
        if not self.active:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank."""
        if not self.active:
            return value
        box: list[Any] = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def share_buffers(self, module: torch.nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm statistics), in place.

        DistributedDataParallel broadcasts them at the start of each forward pass, but each rank
        then updates its own copy during that pass: after a step they differ, and a rank scoring
        with its own would not score the model that rank 0 saves.
        """
        if self.active:
            for buffer in module.buffers():
                dist.broadcast(buffer.data, src=0)

    def close(self, *, together: bool = False) -> None:
        """Leave the process group if this object joined it; ``together``: wait for every rank first.

        A rank that tears its group down while another is still writing can abort at exit
        ("terminate called without an active exception" from gloo, about one run in ten on a
        loaded machine), failing a run that finished. After a run that ended well every rank is
        alive, so waiting for all is safe; after an error another rank may be gone, so no wait
        (torchrun stops the others when one fails).
        """
        if self.started and dist.is_initialized():
            if together:
                dist.barrier()
            dist.destroy_process_group()
            self.started = False
