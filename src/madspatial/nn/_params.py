"""Optimiser parameter groups: weight decay on weights only (DINO's convention)."""

from __future__ import annotations

from torch import nn

_NO_DECAY_NAMES = ("pos_embed", "cls_token", "reg_token", "mask_token")


def parameter_groups(module: nn.Module) -> list[dict]:
    """Split trainable parameters into a decayed and a non-decayed group.

    Biases, norm weights and other 1-d parameters, the position embedding and the class
    token are not decayed (as in DINO/DINOv2); frozen parameters (e.g. the prototype
    magnitudes of :class:`~madspatial.nn.DINOHead`) are left out.

    Parameters
    ----------
    module
        Model whose ``named_parameters()`` are grouped.

    Returns
    -------
    ``[{"params": decayed, "apply_weight_decay": True},
    {"params": not_decayed, "weight_decay": 0.0, "apply_weight_decay": False}]``; a weight
    decay schedule should set ``weight_decay`` only on groups with ``apply_weight_decay``.
    """
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(".bias") or name.split(".")[-1] in _NO_DECAY_NAMES:
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "apply_weight_decay": True},
        {"params": no_decay, "weight_decay": 0.0, "apply_weight_decay": False},
    ]
