"""The demo's settings: CPU presets, the three models compared, their colours, threads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .._constants import (
    MODE_MAD,
    MODE_MICROENVIRONMENT,
    MODE_MORPHOLOGY,
    OBS_LOUVAIN,
    OBSM_MAD,
)
from .._settings import available_cores, settings
from ..train._config import PRESETS

#: The model, views and head of the demo: the library's ``"cpu"`` preset
#: (:data:`madspatial.train.PRESETS`), read here rather than written twice.
_CPU = PRESETS["cpu"]

#: Cells per pretraining step of the demo; its learning rate is the ``"cpu"`` preset's
#: ``base_lr`` scaled to this batch by DINO's rule (``base_lr * batch_size / 256``).
_DEMO_BATCH_SIZE = 64

#: The demo's CPU budget. The library defaults stay the paper's (ViT-L/14, 70 px morphology
#: and 224 px microenvironment views, 4 local crops, 65,536 prototypes); this preset shrinks
#: everything so that the three pretraining runs and all analyses fit in ~10 minutes on 2 CPU
#: cores. All three models (MAD and the two single-view ablations) get the same budget. The
#: model, view sizes, crops, prototypes and head are the ``"cpu"`` preset's; the cell count,
#: steps, batch, held-out cells, evaluations and decoder epochs are the demo's own.
DEMO_CPU_PRESET: dict[str, Any] = {
    "n_cells": 3000,
    "model": dict(_CPU["backbone"]),
    "morphology_size": _CPU["morphology_size"],
    "microenvironment_size": _CPU["microenvironment_size"],
    "n_local": _CPU["n_local"],
    "batch_size": _DEMO_BATCH_SIZE,
    "steps": 150,
    "lr": _CPU["base_lr"] * _DEMO_BATCH_SIZE / 256,
    "n_prototypes": _CPU["n_prototypes"],
    "head_hidden_dim": _CPU["head_hidden_dim"],
    "head_bottleneck_dim": _CPU["head_bottleneck_dim"],
    "n_holdout": 256,
    "n_evals": 10,
    "decoder_epochs": 100,
    "threads": None,
}

#: ``--quick``: a smoke run of every step (tests); numbers from it mean nothing.
QUICK_PRESET: dict[str, Any] = {
    "n_cells": 400,
    "model": "vit_pico",
    "morphology_size": 28,
    "microenvironment_size": 56,
    "n_local": 1,
    "batch_size": 32,
    "steps": 4,
    "lr": 2e-3,
    "n_prototypes": 64,
    "head_hidden_dim": 64,
    "head_bottleneck_dim": 32,
    "n_holdout": 48,
    "n_evals": 2,
    "decoder_epochs": 15,
    "threads": None,
}

#: The paper's setting, which the library defaults follow (stated in the report).
PAPER_SETTING = "ViT-L/14, 70 px morphology and 224 px microenvironment views, 4 local crops"

#: Early stopping of every decoder the demo fits (few epochs: a short patience).
DECODER_PATIENCE = 10


@dataclass(frozen=True)
class DemoModel:
    """One of the compared models: report name, ``tl.pretrain`` mode, ``.obsm`` key."""

    name: str
    mode: str
    rep: str

    @property
    def louvain_key(self) -> str:
        """``.obs`` column of its Louvain clusters."""
        return OBS_LOUVAIN if self.mode == MODE_MAD else f"{OBS_LOUVAIN}_{self.mode}"


MODELS = (
    DemoModel("MAD", MODE_MAD, OBSM_MAD),
    DemoModel("morphology only", MODE_MORPHOLOGY, OBSM_MAD + "_morph_only"),
    DemoModel("microenvironment only", MODE_MICROENVIRONMENT, OBSM_MAD + "_micro_only"),
)
PALETTE = {"MAD": "#c44e52", "morphology only": "#4c72b0", "microenvironment only": "#55a868"}


def preset_table(preset: dict[str, Any], *, synthetic: bool) -> pd.DataFrame:
    """Return the preset as a two-column table for the report."""
    rows = []
    for k, v in preset.items():
        if k == "n_cells" and not synthetic:
            continue
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items())
        elif v is None:
            v = "auto"
        rows.append((k, str(v)))
    return pd.DataFrame(rows, columns=["setting", "value"])


def torch_threads(requested: int | None) -> tuple[int, str]:
    """Torch CPU threads for the demo, and why.

    The ``threads`` asked for, else ``mad.settings.n_threads``, else every core this
    process may run on (its affinity mask, so ``taskset``, cgroup cpusets and SLURM
    allocations are respected).
    """
    if requested is not None:
        return settings.resolve_n_threads(requested), "as asked"
    if settings.n_threads is not None:
        return settings.resolve_n_threads(), "mad.settings.n_threads"
    n = available_cores()
    return n, f"the cores this process may run on: {n} of {os.cpu_count()}"
