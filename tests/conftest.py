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


#: Parameters of the shared tiny synthetic tissue (two slides, so slide-aware code is exercised).
TINY_TISSUE = {"n_cells": 400, "n_slides": 2, "seed": 0}


@pytest.fixture(scope="session")
def tiny_tissue():
    """A small synthetic SpatialData (400 cells on two 298 x 298 px slides), generated once.

    Shared by the whole session: never mutate it; use ``copy_tissue`` instead.
    """
    from madspatial.datasets import synthetic_tissue

    return synthetic_tissue(**TINY_TISSUE)


@pytest.fixture
def copy_tissue(tiny_tissue):
    """A deep copy of ``tiny_tissue`` that a test may modify."""
    import spatialdata

    return spatialdata.deepcopy(tiny_tissue)


@pytest.fixture
def cosmx_dir():
    if not COSMX.is_dir():
        pytest.skip(f"real CosMx data not found at {COSMX} (shared/data is absent)")
    return COSMX


def _toy_embedding_adata(n_per=60, n_types=3, dim=16, n_genes=20, n_slides=4, seed=0):
    """AnnData with planted structure for downstream tools: well-separated cell types in
    obsm["X_mad"] (and its two views), counts driven by the same latent state, slides."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = n_per * n_types
    types = np.repeat(np.arange(n_types), n_per)
    latent = rng.normal(size=(n_types, 4))[types] * 3 + rng.normal(size=(n, 4)) * 0.25
    emb = latent @ rng.normal(size=(4, dim)) + rng.normal(size=(n, dim)) * 0.3
    rates = np.exp(0.4 * latent @ rng.normal(size=(4, n_genes)) / 2 + 1.0)
    counts = rng.poisson(rates).astype(np.float32)
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical([f"type{t}" for t in types]),
            "slide": pd.Categorical([f"s{i % n_slides}" for i in range(n)]),
        },
        index=[f"cell{i}" for i in range(n)],
    )
    var = pd.DataFrame(index=[f"GENE{g}" for g in range(n_genes)])
    adata = ad.AnnData(counts, obs=obs, var=var)
    adata.layers["counts"] = counts.copy()
    adata.obsm["X_mad"] = emb.astype(np.float32)
    adata.obsm["X_mad_morphology"] = (
        emb[:, : dim // 2] + rng.normal(size=(n, dim // 2)) * 0.1
    ).astype(np.float32)
    adata.obsm["X_mad_microenvironment"] = (
        emb[:, dim // 2 :] + rng.normal(size=(n, dim // 2)) * 0.1
    ).astype(np.float32)
    adata.obsm["spatial"] = rng.uniform(0, 1000, size=(n, 2))
    return adata


@pytest.fixture
def toy_embedding_adata():
    """Factory of small AnnData objects with planted structure (downstream tools)."""
    return _toy_embedding_adata


@pytest.fixture
def mad_log(caplog):
    """caplog for the madspatial logger (it does not propagate to the root logger)."""
    import logging

    log = logging.getLogger("madspatial")
    log.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="madspatial")
    yield caplog
    log.removeHandler(caplog.handler)
