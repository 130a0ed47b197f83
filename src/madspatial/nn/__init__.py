"""madspatial.nn: the torch layer of MAD (no AnnData here).

Backbone factory (timm ViT, patch 14, dynamic image size), local-weights loading,
DINO head, :class:`MADModel` with save/load, :class:`MADLoss`, KoLeo, batched multi-crop
augmentation and schedules.
"""

from .._lazy import attach as _attach

# public name -> the module defining it, imported on first access (see madspatial._lazy)
_ATTRIBUTES = {
    "MultiCropAugment": "._augment",
    "BACKBONE_PRESETS": "._backbone",
    "ViTBackbone": "._backbone",
    "build_backbone": "._backbone",
    "resolve_backbone_kwargs": "._backbone",
    "DINOHead": "._head",
    "ViewHeads": "._head",
    "MADLoss": "._loss",
    "koleo_loss": "._loss",
    "mode_views": "._config",
    "MODEL_FORMAT_VERSION": "._config",
    "MADConfig": "._config",
    "MADModel": "._model",
    "parameter_groups": "._params",
    "ResolvedWeights": "._pretrained",
    "WeightsNotCachedError": "._pretrained",
    "resolve_weights": "._pretrained",
    "cosine_schedule": "._schedules",
    "teacher_temperature_schedule": "._schedules",
    "LoadReport": "._weights",
    "load_backbone_weights": "._weights",
    "read_state_dict": "._weights",
}

__getattr__, __dir__, __all__ = _attach(__name__, attributes=_ATTRIBUTES)
