"""The teacher: an exponential moving average of the student, never trained by gradients."""

from __future__ import annotations

import torch
from torch import nn


def _local(t: torch.Tensor) -> torch.Tensor:
    # FSDP2 parameters are DTensors; student and teacher are sharded identically, so the
    # EMA is a purely local operation on the shards.
    return t.to_local() if hasattr(t, "to_local") else t


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher <- momentum * teacher + (1 - momentum) * student`` for every parameter."""
    for m in (teacher, student):
        # FSDP2 keeps the root unit unsharded after a forward without backward (the
        # teacher's): go back to the local shards so both sides line up
        reshard = getattr(m, "reshard", None)
        if callable(reshard):
            reshard()
    t_params = [_local(p.detach()) for p in teacher.parameters()]
    s_params = [_local(p.detach()) for p in student.parameters()]
    if len(t_params) != len(s_params):
        raise RuntimeError(
            f"teacher has {len(t_params)} parameters, student {len(s_params)}: they must be "
            "copies of one architecture."
        )
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, s_params, alpha=1.0 - momentum)
    for tb, sb in zip(teacher.buffers(), student.buffers()):
        _local(tb).copy_(_local(sb))


def make_teacher(student: nn.Module) -> nn.Module:
    """Return a frozen copy of ``student`` in eval mode (no dropout / stochastic depth)."""
    import copy

    teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)
    teacher.eval()
    return teacher
