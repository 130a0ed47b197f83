"""madspatial.train: the MAD training loop (single process, DDP, FSDP2), checkpoints, history."""

from ._checkpoint import load_checkpoint, save_checkpoint
from ._data import ChunkBatchSampler, ViewDataset
from ._history import History, cross_view_recall
from ._trainer import TrainConfig, Trainer, TrainingDivergedError

__all__ = [
    "ChunkBatchSampler",
    "History",
    "TrainConfig",
    "Trainer",
    "TrainingDivergedError",
    "ViewDataset",
    "cross_view_recall",
    "load_checkpoint",
    "save_checkpoint",
]
