"""Data-parallel training on ``torch.distributed``: ``torchrun --nproc-per-node N -m asyncsnn train ...``.

Every rank builds the same model, loads the same data and draws the same batch order and input
dropout; rank ``r`` of ``W`` runs the ``r``-th consecutive slice of each global batch, with the
scheduler hash numbering its samples by their index in the global batch (``sample_offset``), so
a sample's forward pass is the one it has in a single process. The gradients are all-reduced
(summed, each rank's loss weighted by its share of the batch): every rank takes the optimiser
step of the single process on the whole batch, to float rounding. Metrics are gathered in batch
order; only rank 0 writes the run folder. Backend ``nccl`` on GPUs (one per local rank),
``gloo`` on CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, n: int) -> tuple[int, int]:
        """This rank's consecutive slice ``[lo, hi)`` of ``n`` samples."""
        return n * self.rank // self.world, n * (self.rank + 1) // self.world

    def all_reduce_grads(self, params) -> None:
        """Sum the gradients over the ranks. A parameter that no rank gave a gradient keeps none
        (so that the optimiser skips it, as one process would); one that some ranks did not touch
        gets zeros on those."""
        import torch.distributed as dist

        params = [p for p in params if p.requires_grad]
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.uint8)
        dist.all_reduce(has, op=dist.ReduceOp.MAX)
        for p, any_rank in zip(params, has.tolist()):
            if not any_rank:
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)

    def sum(self, x: float) -> float:
        if not self.active:
            return x
        import torch.distributed as dist

        t = torch.tensor([x], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t[0])

    def gather(self, obj: Any) -> list:
        """``obj`` of every rank, in rank order."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()


def setup(device: str = "cpu") -> Dist:
    """This process's place in the job: initialised from torchrun's environment (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``) when ``WORLD_SIZE`` > 1."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return Dist()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        cuda = str(device).startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if cuda:
            torch.cuda.set_device(local)
        # NCCL for the gradients on the GPUs, gloo for the small CPU tensors (losses, metric rows)
        dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local)


def merge_rows(rows: list) -> dict:
    """Per-sample metric dicts of the ranks' slices of one batch, as the batch's (rank order)."""
    import numpy as np

    first = rows[0]
    return type(first)({k: np.concatenate([np.asarray(r[k]) for r in rows]) for k in first})


def shared_run_dir(dist: Dist, make: Callable[[], Path]) -> Path:
    """The run folder rank 0 makes, on every rank."""
    return Path(dist.broadcast(str(make()) if dist.main else None))
