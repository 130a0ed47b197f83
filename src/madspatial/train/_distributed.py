"""torch.distributed plumbing: process group, DDP / FSDP2 wrapping, rank-0 helpers.

The training loop is written once. Under ``torchrun`` (``WORLD_SIZE`` > 1 in the
environment) :func:`init_distributed` joins the process group (nccl on GPUs,
gloo on CPU) and :func:`wrap_models` wraps the student in DDP (default) or
shards student and teacher with FSDP2 ``fully_shard`` (one unit per transformer
block, then the root), so the same code scales from a laptop to many GPUs.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .._constants import STRATEGIES


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    initialized_here: bool = False  # we created the process group and must destroy it

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str, *, backend: str | None = None) -> DistInfo:
    """Join the process group ``torchrun`` describes in the environment, if any.

    Single process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``): nothing happens. With
    CUDA, each process uses ``cuda:LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        return DistInfo(rank, world, local, _rank_device(device, local), False)
    if world <= 1:
        return DistInfo(device=device)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _rank_device(device, local)
    if backend is None:
        backend = "nccl" if dev.startswith("cuda") else "gloo"
    if dev.startswith("cuda"):
        torch.cuda.set_device(torch.device(dev))
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, dev, True)


def _rank_device(device: str, local_rank: int) -> str:
    if device == "cuda":
        return f"cuda:{local_rank}"
    return device


def cleanup(info: DistInfo) -> None:
    """Destroy the process group we created (gloo may abort at interpreter exit otherwise)."""
    if info.initialized_here and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.barrier()
        dist.destroy_process_group()


def resolve_strategy(strategy: str, info: DistInfo) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
    if strategy == "auto":
        return "ddp" if info.distributed else "none"
    if strategy in ("ddp", "fsdp") and not info.distributed:
        # one process: nothing to synchronise; sharding over one rank only adds overhead
        return "none"
    return strategy


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.distributed:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= info.world_size
    return t


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def _blocks(model: nn.Module) -> list[nn.Module]:
    """Return the transformer blocks (children of every ``*.blocks``): one FSDP unit each."""
    out = []
    for name, m in model.named_modules():
        if name.split(".")[-1] == "blocks" and isinstance(m, nn.Sequential | nn.ModuleList):
            out.extend(m.children())
    return out


def wrap_models(
    student: nn.Module, teacher: nn.Module, strategy: str, info: DistInfo
) -> tuple[nn.Module, nn.Module]:
    """Wrap (student, teacher) for ``strategy`` ("none", "ddp" or "fsdp").

    ``student`` is the module whose ``forward`` runs all crops of a step (so DDP
    sees one forward per backward); the teacher is never wrapped by DDP (it gets
    no gradients). With FSDP2 both are sharded the same way so the EMA update
    can work on local shards.
    """
    if strategy == "none":
        return student, teacher
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        device_ids = [torch.device(info.device).index] if info.device.startswith("cuda") else None
        return DDP(student, device_ids=device_ids, broadcast_buffers=False), teacher
    if strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh_device = "cuda" if info.device.startswith("cuda") else "cpu"
        mesh = init_device_mesh(mesh_device, (info.world_size,))
        for module in (student, teacher):
            for block in _blocks(module):
                fully_shard(block, mesh=mesh)
            fully_shard(module, mesh=mesh)
        return student, teacher
    raise ValueError(f"unknown strategy {strategy!r}")


def unwrap(module: nn.Module) -> nn.Module:
    """Return the module inside a DDP wrapper (FSDP2 modules are their own module)."""
    return (
        getattr(module, "module", module)
        if type(module).__name__ == "DistributedDataParallel"
        else module
    )
