"""Data-parallel training under torchrun: process group, per-rank data shards, and the agreements ranks need.

`torchrun --nproc_per_node N -m posecal train CONFIG` starts N copies of `posecal train`; torchrun's environment
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) is what tells a copy that it is one rank of a group. Without
it training runs as a single process. posecal.training.train uses this module; the model's gradients
are averaged by torch's DistributedDataParallel.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

# Rank 0 validates and writes checkpoints at each epoch's end while the others wait in a barrier; validation
# on a large val set can outlast the collectives' default timeout (10 minutes with NCCL).
_TIMEOUT = timedelta(hours=2)
_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in _TORCHRUN_ENV)


@dataclass
class Group:
    """This process's place in the group: `rank` over all nodes, `local_rank` on this node (its GPU index)."""

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        dist.barrier(device_ids=[self.local_rank] if self.backend == "nccl" else None)

    def agree_on_stop(self, code: int, device: torch.device) -> int:
        """The largest stop code of all ranks (0 = go on): one rank's max_minutes or SIGTERM stops them all at
        the same step, else the others would wait forever for its gradients."""
        flag = torch.tensor([code], dtype=torch.int64, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def start_group(device_type: str) -> Group:
    """Join torchrun's group: NCCL between GPUs, gloo between CPU processes."""
    backend = "nccl" if device_type == "cuda" else "gloo"
    local_rank = int(os.environ["LOCAL_RANK"])
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, timeout=_TIMEOUT)
    return Group(dist.get_rank(), dist.get_world_size(), local_rank, backend)


class DistributedEpochOrder(DistributedSampler):
    """This rank's share of each epoch's seeded shuffle, as (epoch, index) pairs like train.EpochOrder.

    torch's DistributedSampler shuffles with seed + epoch and pads the last ranks' shares so every rank runs
    the same number of steps (DDP needs that). `start` skips this rank's first items: an epoch resumed
    mid-way, `batches * batch_size` into every rank's share.
    """

    def __init__(self, n: int, group: Group, seed: int):
        super().__init__(range(n), num_replicas=group.world_size, rank=group.rank, shuffle=True, seed=seed)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self):
        return iter([(self.epoch, i) for i in list(super().__iter__())[self.start:]])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)
