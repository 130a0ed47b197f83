"""Writing madspatial's files: JSON-able values and atomic writes, shared by every writer.

The writers: ``MADModel.save``, ``Decoder.save``, training checkpoints, view-store attributes.

An atomic write goes to a new file beside the target (named ``.<name>.<pid>.<hex>.tmp``,
with the mode the umask gives a new file, as a direct write would), is flushed to disk,
and is renamed over the target: a crash
leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def json_default(x: Any) -> Any:
    """``json.dumps(..., default=json_default)``: numpy scalars and arrays, tensors, paths."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray) or (hasattr(x, "tolist") and hasattr(x, "detach")):
        return x.tolist()  # an array or a torch tensor
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types (for zarr attrs / AnnData uns): dicts, lists, numbers, strings."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def file_mode() -> int:
    """Permissions of a newly created file under the current umask (``0o666 & ~umask``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` to a new file beside ``path``, flush it to disk, rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        # some writers (safetensors) create 0600 files: give what the umask gives open()
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` to ``path``."""
    atomic_write(path, lambda p: p.write_text(text))
