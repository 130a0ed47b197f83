"""Training checkpoints: written atomically, read without pickle.

A checkpoint is one file, ``<checkpoint_dir>/checkpoint.pt``, holding only
tensors, numbers, strings, lists and dicts, so ``torch.load(weights_only=True)``
reads it (no arbitrary code runs when a checkpoint is opened). It is first
written to a temporary file in the same directory, flushed to disk and then
renamed over the old one with :func:`os.replace`, which is atomic on POSIX and
Windows: a run killed while saving leaves the previous checkpoint intact.

The state carries a sha256 of its own contents (every tensor's bytes, every number and
string), checked on load: flipped bytes in tensor data, which ``torch.load`` does not
notice, raise a clear error instead of resuming from damaged weights.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from .._serialize import atomic_write

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
#: Key of the state's own sha256 (over every other entry).
CHECKSUM_KEY = "sha256"


def checkpoint_path(checkpoint_dir: str | os.PathLike) -> Path:
    return Path(checkpoint_dir) / CHECKPOINT_FILE


def save_checkpoint(state: dict[str, Any], checkpoint_dir: str | os.PathLike) -> Path:
    """Atomically write ``state`` to ``checkpoint_dir/checkpoint.pt``; returns the path."""
    directory = Path(checkpoint_dir)
    directory.mkdir(parents=True, exist_ok=True)
    target = checkpoint_path(directory)
    state = {"format": CHECKPOINT_FORMAT, **state}
    state[CHECKSUM_KEY] = state_checksum(state)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)

    atomic_write(target, write)
    return target


def load_checkpoint(checkpoint_dir: str | os.PathLike) -> dict[str, Any] | None:
    """Return the last checkpoint in ``checkpoint_dir``, or ``None`` when there is none."""
    path = checkpoint_path(checkpoint_dir)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated by a crash of the file system, not by us
        raise RuntimeError(
            f"could not read the checkpoint {path} (truncated or damaged: "
            f"{type(err).__name__}: {err}). Delete it (or pass resume=False) to start the run "
            "from scratch."
        ) from err
    if not isinstance(state, dict):
        raise RuntimeError(
            f"checkpoint {path} holds a {type(state).__name__}, not a madspatial checkpoint; "
            "delete it (or pass resume=False, or another checkpoint_dir)."
        )
    saved = state.pop(CHECKSUM_KEY, None)
    if saved is not None and saved != state_checksum(state):
        raise RuntimeError(
            f"checkpoint {path} is damaged: its contents no longer match the sha256 recorded "
            "when it was written (flipped bytes on disk or in transfer). Delete it (or pass "
            "resume=False) to start the run from scratch, or restore the file from a copy."
        )
    if state.get("format") != CHECKPOINT_FORMAT:
        raise RuntimeError(
            f"checkpoint {path} has format {state.get('format')!r}, this madspatial writes "
            f"format {CHECKPOINT_FORMAT}; pass resume=False or another checkpoint_dir."
        )
    return state


def state_checksum(state: Any) -> str:
    """sha256 over a nested state (dicts, lists, tensors, numbers, strings), order-stable."""
    h = hashlib.sha256()
    _feed(h, state)
    return h.hexdigest()


def _feed(h, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{tuple(t.shape)}{t.dtype}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for k in sorted(obj, key=lambda k: (type(k).__name__, str(k))):
            h.update(f"K{type(k).__name__}:{k}".encode())
            _feed(h, obj[k])
    elif isinstance(obj, list | tuple):
        h.update(f"L{len(obj)}".encode())
        for v in obj:
            _feed(h, v)
    else:
        h.update(f"V{type(obj).__name__}:{obj!r}".encode())


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
