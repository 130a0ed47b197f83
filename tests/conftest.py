from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MADSPATIAL_NO_PROGRESS", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COSMX = SHARED_DATA / "cosmx_lung_mini"


@pytest.fixture(autouse=True)
def _seed_everything():
    import numpy as np

    np.random.seed(0)  # noqa: NPY002 - legacy global state some libraries still read
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:  # pragma: no cover
        pass


@pytest.fixture
def cosmx_dir():
    if not COSMX.is_dir():
        pytest.skip(f"real CosMx data not found at {COSMX} (shared/data is absent)")
    return COSMX
