"""Training checkpoints: written atomically, read without pickle.

A checkpoint is one file, ``<checkpoint_dir>/checkpoint.pt``, holding only
tensors, numbers, strings, lists and dicts, so ``torch.load(weights_only=True)``
reads it (no arbitrary code runs when a checkpoint is opened). It is first
written to a temporary file in the same directory, flushed to disk and then
renamed over the old one with :func:`os.replace`, which is atomic on POSIX and
Windows: a run killed while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


def checkpoint_path(checkpoint_dir: str | os.PathLike) -> Path:
    return Path(checkpoint_dir) / CHECKPOINT_FILE


def save_checkpoint(state: dict[str, Any], checkpoint_dir: str | os.PathLike) -> Path:
    """Atomically write ``state`` to ``checkpoint_dir/checkpoint.pt``; returns the path."""
    directory = Path(checkpoint_dir)
    directory.mkdir(parents=True, exist_ok=True)
    target = checkpoint_path(directory)
    state = {"format": CHECKPOINT_FORMAT, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{CHECKPOINT_FILE}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_checkpoint(checkpoint_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The last checkpoint in ``checkpoint_dir``, or ``None`` when there is none."""
    path = checkpoint_path(checkpoint_dir)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated by a crash of the file system, not by us
        raise RuntimeError(
            f"could not read the checkpoint {path}: {err}. Delete it (or pass resume=False) "
            "to start the run from scratch."
        ) from err
    if state.get("format") != CHECKPOINT_FORMAT:
        raise RuntimeError(
            f"checkpoint {path} has format {state.get('format')!r}, this madspatial writes "
            f"format {CHECKPOINT_FORMAT}; pass resume=False or another checkpoint_dir."
        )
    return state


def get_rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU and, when present, CUDA) as tensors."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
