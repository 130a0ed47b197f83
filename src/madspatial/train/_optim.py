"""AdamW with DINO's parameter groups and per-step schedules."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..nn._schedules import cosine_schedule, teacher_temperature_schedule

LAST_LAYER = "last_layer"


def _no_weight_decay_names(module: nn.Module) -> set[str]:
    """Fully qualified names timm marks as exempt from weight decay (pos_embed, cls_token)."""
    names: set[str] = set()
    for prefix, m in module.named_modules():
        fn = getattr(m, "no_weight_decay", None)
        if callable(fn):
            for n in fn():
                names.add(f"{prefix}.{n}" if prefix else n)
    return names


def param_groups(module: nn.Module) -> list[dict]:
    """Split trainable parameters into groups by (weight decay?, last layer?).

    Biases, norm weights (1-D tensors) and timm's token/position embeddings get no
    weight decay, as in DINO. The prototype layer is its own group so the trainer can
    freeze it at the start.
    """
    exempt = _no_weight_decay_names(module)
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        clean = name.replace("_fsdp_wrapped_module.", "").replace("module.", "", 1)
        decay = not (p.ndim <= 1 or name.endswith(".bias") or clean in exempt)
        last = LAST_LAYER in name
        groups.setdefault((decay, last), []).append(p)
    return [
        {"params": ps, "apply_wd": decay, "last_layer": last}
        for (decay, last), ps in sorted(groups.items())
    ]


def build_optimizer(module: nn.Module, *, fused: bool | None = None) -> torch.optim.AdamW:
    groups = param_groups(module)
    return torch.optim.AdamW(groups, lr=0.0, weight_decay=0.0, betas=(0.9, 0.999), fused=fused)


@dataclass
class Schedules:
    """One value per step for every scheduled hyper-parameter."""

    lr: np.ndarray
    weight_decay: np.ndarray
    momentum: np.ndarray
    teacher_temp: np.ndarray
    freeze_last_layer_steps: int

    @classmethod
    def build(
        cls,
        total_steps: int,
        *,
        lr: float,
        min_lr: float,
        warmup_steps: int,
        weight_decay: tuple[float, float],
        momentum: tuple[float, float],
        teacher_temp: tuple[float, float],
        teacher_temp_warmup_steps: int,
        freeze_last_layer_steps: int,
    ) -> Schedules:
        return cls(
            lr=cosine_schedule(lr, min_lr, total_steps, warmup_steps=warmup_steps),
            weight_decay=cosine_schedule(weight_decay[0], weight_decay[1], total_steps),
            momentum=cosine_schedule(momentum[0], momentum[1], total_steps),
            teacher_temp=teacher_temperature_schedule(
                total_steps,
                warmup_steps=teacher_temp_warmup_steps,
                start=teacher_temp[0],
                end=teacher_temp[1],
            ),
            freeze_last_layer_steps=freeze_last_layer_steps,
        )

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        for g in optimizer.param_groups:
            g["lr"] = float(self.lr[step])
            g["weight_decay"] = float(self.weight_decay[step]) if g["apply_wd"] else 0.0

    def freeze_last_layer(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        """Drop the prototype layer's gradients during the first steps (DINO: epoch 1).

        With ``grad=None`` AdamW skips the parameter entirely (no update, no decay, no
        moment update), which is what freezing means.
        """
        if step < self.freeze_last_layer_steps:
            for g in optimizer.param_groups:
                if g["last_layer"]:
                    for p in g["params"]:
                        p.grad = None
