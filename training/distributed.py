"""torchrun / DistributedDataParallel helpers: one process per device, rank 0 logs and saves.

``init_from_env(device)`` reads what ``torchrun`` sets (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) and joins the process group (NCCL on CUDA, gloo on CPU). Without
those variables, or with ``WORLD_SIZE=1``, it returns a single-process ``DistInfo`` and every other
helper here becomes a no-op, so the training loop has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device_type: str) -> DistInfo:
    """Join the torchrun process group if there is one; pick the backend from ``device_type``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def device_for(info: DistInfo, device_type: str) -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` under torchrun on GPUs, else ``device_type``."""
    if device_type == "cuda":
        return torch.device("cuda", info.local_rank if info.enabled else torch.cuda.current_device())
    return torch.device(device_type)


def wrap_model(model: torch.nn.Module, info: DistInfo, device: torch.device, sync_bn: bool = False) -> torch.nn.Module:
    """DDP-wrap ``model`` (already on ``device``); with ``sync_bn`` BatchNorm statistics span all ranks.

    Rank 0's weights are broadcast to the others when DDP is built, so all ranks start equal.
    """
    if not info.enabled:
        return model
    if sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare network inside a DDP wrapper (what checkpoints store)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def train_sampler(dataset: Dataset, info: DistInfo, seed: int) -> DistributedSampler:
    """Seeded shuffling sampler; call ``set_epoch`` every epoch (order = f(seed, epoch) only).

    Also used with one process, where it is a seeded shuffle that needs no RNG state to resume.
    With several ranks the index list is padded (repeating a few images) to split evenly.
    """
    return DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed)


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``value`` over ranks (a copy; the input is unchanged). NaN anywhere gives NaN everywhere."""
    out = value.detach().clone()
    if info.enabled:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= info.world_size
    return out


def average_buffers(model: torch.nn.Module, info: DistInfo) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks, in place.

    DDP keeps the parameters equal but each rank's last forward updates its own running statistics;
    averaging them at epoch ends makes every rank hold the same, better estimated, state before
    validation and checkpointing.
    """
    if not info.enabled:
        return
    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            buf /= info.world_size


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
