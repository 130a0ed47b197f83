"""madspatial.nn: the torch layer of MAD (no AnnData here).

Backbone factory (timm ViT, patch 14, dynamic image size), local-weights loading,
DINO head, :class:`MADModel` with save/load, :class:`MADLoss`, KoLeo, batched multi-crop
augmentation and schedules.
"""

from __future__ import annotations

from ._augment import MultiCropAugment
from ._backbone import BACKBONE_PRESETS, ViTBackbone, build_backbone, resolve_backbone_kwargs
from ._head import DINOHead
from ._loss import MADLoss, koleo_loss, mode_views
from ._model import MODEL_FORMAT_VERSION, MADConfig, MADModel
from ._params import parameter_groups
from ._schedules import cosine_schedule, teacher_temperature_schedule
from ._weights import LoadReport, load_backbone_weights, read_state_dict

__all__ = [
    "BACKBONE_PRESETS",
    "MODEL_FORMAT_VERSION",
    "DINOHead",
    "LoadReport",
    "MADConfig",
    "MADLoss",
    "MADModel",
    "MultiCropAugment",
    "ViTBackbone",
    "build_backbone",
    "cosine_schedule",
    "koleo_loss",
    "load_backbone_weights",
    "mode_views",
    "parameter_groups",
    "read_state_dict",
    "resolve_backbone_kwargs",
    "teacher_temperature_schedule",
]
