"""The ViT backbone: a timm ``VisionTransformer`` with patch 14 and dynamic image size.

One backbone serves both views: the 70x70 morphology view (5x5 patches), the
224x224 microenvironment view (16x16 patches) and any crop whose side is a
multiple of 14. timm resamples the learned position embedding (a 16x16 grid
for the default ``img_size=224``) to the input's patch grid on the fly.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer

from .._constants import PATCH_SIZE

#: Architecture presets (timm ``VisionTransformer`` keyword arguments), patch 14.
#: ``vit_pico`` is a toy for tests and CPU demos; the others follow the standard
#: ViT-Ti/S/B/L shapes. ``vit_large`` uses LayerScale (init 1e-5) like DINOv2's
#: ViT-L/14, so official DINOv2 weights load without folding.
BACKBONE_PRESETS: dict[str, dict[str, Any]] = {
    "vit_pico": {"embed_dim": 48, "depth": 2, "num_heads": 3, "mlp_ratio": 2.0},
    "vit_tiny": {"embed_dim": 192, "depth": 12, "num_heads": 3},
    "vit_small": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "vit_base": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "vit_large": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "init_values": 1e-5},
}

#: Keyword arguments madspatial fixes for every backbone (not overridable).
_FIXED_KWARGS: dict[str, Any] = {
    "patch_size": PATCH_SIZE,
    "num_classes": 0,  # no classifier: forward returns the pooled class token
    "global_pool": "token",
    "class_token": True,
    "dynamic_img_size": True,
}


class ViTBackbone(VisionTransformer):
    """timm ``VisionTransformer`` returning the class token after the final norm.

    Parameter names are exactly timm's (``patch_embed.proj.weight``, ``blocks.N.attn.qkv``,
    ...), so timm and DINOv2 state dicts map one to one and FSDP can shard ``blocks``.
    ``forward`` takes ``(B, C, H, W)`` float input with ``H`` and ``W`` multiples of 14
    and returns ``(B, embed_dim)``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"backbone input must be (B, C, H, W), got shape {tuple(x.shape)}.")
        h, w = x.shape[-2:]
        if h % PATCH_SIZE or w % PATCH_SIZE:
            raise ValueError(
                f"image side {h}x{w} is not a multiple of the patch size {PATCH_SIZE}; "
                f"resize views/crops to e.g. {PATCH_SIZE * max(1, round(h / PATCH_SIZE))}."
            )
        if x.shape[1] != self.in_chans:
            raise ValueError(
                f"backbone expects {self.in_chans} channels, got {x.shape[1]} "
                f"(input shape {tuple(x.shape)})."
            )
        return super().forward(x)

    def __init__(self, *, in_chans: int, **kwargs: Any) -> None:
        super().__init__(in_chans=in_chans, **kwargs)
        self.in_chans = in_chans
        self.arch_kwargs = dict(kwargs, in_chans=in_chans)


def resolve_backbone_kwargs(name: str | Mapping[str, Any]) -> dict[str, Any]:
    """Turn a preset name or a kwargs dict into timm ``VisionTransformer`` kwargs.

    Parameters
    ----------
    name
        A key of :data:`BACKBONE_PRESETS`, or a dict of ``VisionTransformer`` keyword
        arguments. A dict may hold ``"preset": "vit_small"`` plus overrides.

    Returns
    -------
    The keyword arguments (without the fixed ones: patch size, pooling, dynamic size).
    """
    if isinstance(name, str):
        if name not in BACKBONE_PRESETS:
            raise ValueError(
                f"unknown backbone preset {name!r}; choose one of {sorted(BACKBONE_PRESETS)} "
                "or pass a dict of timm VisionTransformer kwargs."
            )
        return copy.deepcopy(BACKBONE_PRESETS[name])
    if not isinstance(name, Mapping):
        raise TypeError(f"backbone must be a preset name or a dict, got {type(name).__name__}.")
    kwargs = dict(name)
    preset = kwargs.pop("preset", None)
    base = resolve_backbone_kwargs(preset) if preset is not None else {}
    base.update(kwargs)
    clash = sorted(set(base) & (set(_FIXED_KWARGS) | {"in_chans", "pretrained"}))
    if clash:
        raise ValueError(
            f"backbone kwargs {clash} are fixed by madspatial (patch {PATCH_SIZE}, class-token "
            "output, dynamic image size; channels come from in_chans=); remove them."
        )
    return base


def build_backbone(
    name: str | Mapping[str, Any],
    *,
    in_chans: int,
    weights: str | Path | Mapping[str, torch.Tensor] | None = None,
    grad_checkpointing: bool = False,
    drop_path_rate: float = 0.0,
    img_size: int = 224,
    prefix: str | None = None,
) -> ViTBackbone:
    """Build a patch-14 ViT backbone for ``in_chans``-channel images.

    Parameters
    ----------
    name
        Preset name (``"vit_pico"``, ``"vit_tiny"``, ``"vit_small"``, ``"vit_base"``,
        ``"vit_large"``) or a dict of timm ``VisionTransformer`` kwargs (optionally with
        ``"preset"`` to start from).
    in_chans
        Number of image channels.
    weights
        Optional weights loaded with :func:`load_backbone_weights`: a local file or state
        dict (DINOv2, timm or reference-MAD layout), or any other spelling of
        :func:`~madspatial.nn.resolve_weights` (a timm name or hub repo read from the
        huggingface_hub cache, a reference-MAD folder). Nothing is downloaded unless a hub
        model that is not cached is named (and never with ``HF_HUB_OFFLINE=1``).
    grad_checkpointing
        Recompute block activations in the backward pass (less memory, ~30% slower).
    drop_path_rate
        Stochastic depth rate.
    img_size
        Side of the square position-embedding grid in pixels (``img_size / 14`` patches);
        other input sizes are served by interpolating it.
    prefix
        Key prefix to select in ``weights`` (see :func:`load_backbone_weights`).

    Returns
    -------
    The backbone; ``.embed_dim`` is its token width.
    """
    if in_chans < 1:
        raise ValueError(f"in_chans must be >= 1, got {in_chans}.")
    if img_size % PATCH_SIZE:
        raise ValueError(f"img_size must be a multiple of {PATCH_SIZE}, got {img_size}.")
    kwargs = resolve_backbone_kwargs(name)
    kwargs.setdefault("img_size", img_size)
    kwargs["drop_path_rate"] = drop_path_rate
    kwargs.update(_FIXED_KWARGS)
    backbone = ViTBackbone(in_chans=in_chans, **kwargs)
    if weights is not None:
        from ._weights import load_backbone_weights

        if isinstance(weights, str | Path) and not Path(weights).is_file():
            weights, prefix = _resolve(weights, prefix)
        load_backbone_weights(backbone, weights, prefix=prefix)
    backbone.set_grad_checkpointing(grad_checkpointing)
    return backbone


def _resolve(weights: str | Path, prefix: str | None) -> tuple[Path, str | None]:
    """Return the weights file (and prefix) behind a hub name or a model folder."""
    from ._pretrained import resolve_weights

    resolved = resolve_weights(weights, prefix=prefix)
    if resolved.kind == "mad_model":
        raise ValueError(
            f"weights={str(weights)!r} is a saved MADModel folder, not backbone weights: load "
            "it with MADModel.load, or pass it to mad.tl.pretrain(weights=...) to continue "
            "training it."
        )
    return resolved.path, resolved.prefix
