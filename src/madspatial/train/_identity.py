"""The identity of a training run: what must match for a checkpoint or model to be reused.

A run is identified by *every* option that changes its numbers - every
:class:`~madspatial.train.TrainConfig` field (read with :func:`dataclasses.fields`, so a
new field is part of the identity without anyone remembering to add it), the model's
architecture (:class:`~madspatial.nn.MADConfig`, which includes the data-derived pixel
statistics), the starting weights (file contents or the weights of a model to continue
from) - and a fingerprint of the data: a seeded sample of the view pixels of the views
the mode reads, the channel names, the view sizes, the number of cells, a hash of the cell
ids and of the ``cells=`` selection. Two runs with the same identity compute the same
numbers; a checkpoint of another identity is never resumed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

#: Version of the identity layout (a checkpoint with another one is another run).
IDENTITY_VERSION = 2

#: TrainConfig fields that do not change a run's numbers, so that two runs differing only
#: in them may share a checkpoint: where and how often it is written, whether to resume,
#: how views are read ahead, where the run computes (a run may move to another machine)
#: and activation recomputation (same numbers, less memory). Every other field counts.
NOT_IDENTITY = frozenset(
    {"checkpoint_dir", "checkpoint_every", "resume", "num_workers", "device", "grad_checkpointing"}
)

#: MADConfig fields that describe the writer, not the model.
_MODEL_NOT_IDENTITY = frozenset({"version", "metadata"})

#: Cells and pixel rows in the data fingerprint's sample.
_SAMPLE_RUNS, _SAMPLE_RUN_LEN = 4, 8


def canonical(obj: Any) -> Any:
    """JSON-canonical form (tuples -> lists, numpy -> python, keys sorted when dumped)."""
    return json.loads(json.dumps(obj, sort_keys=True, default=_default))


def _default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    return str(x)


def config_identity(cfg) -> dict[str, Any]:
    """Every field of a TrainConfig-like dataclass except :data:`NOT_IDENTITY`."""
    return canonical(
        {
            f.name: getattr(cfg, f.name)
            for f in dataclasses.fields(cfg)
            if f.name not in NOT_IDENTITY
        }
    )


def model_identity(mconfig) -> dict[str, Any]:
    """Every MADConfig field that shapes the model (pixel statistics included)."""
    return canonical(
        {
            f.name: getattr(mconfig, f.name)
            for f in dataclasses.fields(mconfig)
            if f.name not in _MODEL_NOT_IDENTITY
        }
    )


def file_sha256(path: str | Path, *, block: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def state_dict_digest(state_dict) -> str:
    """sha256 of a state dict's names, shapes, dtypes and values."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(-1).view(dtype=_byte_dtype()).numpy().tobytes())
    return h.hexdigest()


def _byte_dtype():
    import torch

    return torch.uint8


def _sample_rows(store, n: int) -> np.ndarray:
    """Return a few short runs of consecutive *storage* positions, as table rows (few chunks)."""
    from ._data import storage_positions

    pos = storage_positions(store)
    order = np.argsort(pos, kind="stable")  # table rows in storage order
    rng = np.random.default_rng(0x1DE)
    starts = rng.choice(max(1, n - _SAMPLE_RUN_LEN + 1), size=min(_SAMPLE_RUNS, n), replace=False)
    picks = np.unique(
        np.concatenate([np.arange(s, min(n, s + _SAMPLE_RUN_LEN)) for s in np.sort(starts)])
    )
    return np.sort(order[picks])


def data_fingerprint(store, views, cells: np.ndarray | None = None) -> dict[str, Any]:
    """Return what identifies the training data: pixel sample, channels, sizes, cells, ids."""
    from ._data import read_batch, rows_digest

    n = len(store)
    fp: dict[str, Any] = {
        "n_cells": int(n),
        "channel_names": [str(c) for c in store.channel_names],
        "morphology_size": int(store.morphology_size),
        "microenvironment_size": int(store.microenvironment_size),
        "views": list(views),
        "cells": rows_digest(cells),
    }
    ids = getattr(store, "instance_id", None)
    fp["cell_ids"] = (
        hashlib.sha256(np.asarray(ids, dtype="<i8").tobytes()).hexdigest()[:16]
        if ids is not None
        else None
    )
    store_fp = (getattr(store, "attrs", None) or {}).get("fingerprint")
    fp["store_fingerprint"] = str(store_fp) if store_fp is not None else None
    if n:
        rows = _sample_rows(store, n)
        arrays = read_batch(store, rows, views)
        h = hashlib.sha256(np.asarray(rows, dtype="<i8").tobytes())
        for v in views:
            h.update(v.encode())
            h.update(np.ascontiguousarray(arrays[v]).tobytes())
        fp["pixels"] = h.hexdigest()[:16]
    return fp


def identity_digest(identity: dict[str, Any], length: int = 10) -> str:
    """Short sha256 of the canonical JSON of an identity (names the default folder)."""
    text = json.dumps(canonical(identity), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


#: Sections of an identity whose entries are compared (and named) one by one.
_SECTIONS = ("config", "model", "data")


def _flatten(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k in _SECTIONS and isinstance(v, dict):
            out.update({f"{k}.{k2}": v2 for k2, v2 in v.items()})
        else:
            out[k] = v
    return out


def _short(v: Any, limit: int = 80) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def identity_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Return the fields (``config.lr``, ``data.pixels``, ...) that differ, with both values."""
    if not isinstance(saved, dict) or saved.get("identity_version") != IDENTITY_VERSION:
        version = saved.get("identity_version") if isinstance(saved, dict) else None
        return [
            f"identity_version: checkpoint {version!r} vs now {IDENTITY_VERSION} (written by an "
            "older madspatial that did not record every option and the data fingerprint)"
        ]
    a, b = _flatten(canonical(saved)), _flatten(canonical(current))
    diffs = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            label = key
            if key.startswith("data."):
                label = f"{key} (data fingerprint)"
            diffs.append(f"{label}: checkpoint {_short(a.get(key))} vs now {_short(b.get(key))}")
    return diffs


class RunMismatchError(ValueError):
    """A checkpoint or model folder holds another run than the one asked for."""

    def __init__(self, path: str | Path, diffs: list[str]) -> None:
        self.path = Path(path)
        self.diffs = list(diffs)
        folder = self.path.parent
        super().__init__(
            f"{self.path} belongs to another run, so it is not resumed; fields that differ: "
            + "; ".join(self.diffs)
            + f". To train this run, pass a new checkpoint_dir (or leave checkpoint_dir unset: "
            "the default folder is named after the run's identity), or pass resume=False to "
            f"start over in {folder} (its checkpoint and model are overwritten)."
        )
