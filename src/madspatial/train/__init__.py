"""madspatial.train: the MAD training loop (single process, DDP, FSDP2), checkpoints, history."""

from .._lazy import attach as _attach

# public name -> the module defining it, imported on first access (see madspatial._lazy)
_ATTRIBUTES = {
    "load_checkpoint": "._checkpoint",
    "save_checkpoint": "._checkpoint",
    "ChunkBatchSampler": "._data",
    "ViewDataset": "._data",
    "History": "._history",
    "cross_view_recall": "._history",
    "PRESETS": "._config",
    "RECIPES": "._config",
    "AUTO_RECIPE_MIN_STEPS": "._config",
    "resolve_recipe": "._config",
    "TrainConfig": "._config",
    "Trainer": "._trainer",
    "TrainingDivergedError": "._trainer",
}

__getattr__, __dir__, __all__ = _attach(__name__, attributes=_ATTRIBUTES)
