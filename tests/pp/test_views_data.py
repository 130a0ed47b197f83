"""normalize + cell_views end to end on the synthetic tissue and on the real CosMx data."""

from __future__ import annotations

import numpy as np
import pytest

import madspatial as mad
from madspatial._constants import OBS_BORDER, UNS_VIEWS


@pytest.fixture(scope="module")
def tissue_views(tiny_tissue):
    import spatialdata

    sdata = spatialdata.deepcopy(tiny_tissue)
    mad.pp.normalize(sdata, image_key="morphology")
    mad.pp.cell_views(sdata, image_key="morphology_normalized", labels_key="cell_labels")
    return sdata


def test_synthetic_tissue_neighbours_in_window(tissue_views):
    """Default settings put 20-30 neighbouring cells in the microenvironment window."""
    table = tissue_views.tables["table"]
    store = mad.io.read_views(tissue_views)
    assert len(store) == table.n_obs and store.n_channels == 4
    half = store.attrs["window_px"] / 2
    c = store.centroid
    counts = (np.abs(c[:, None] - c[None]).max(axis=2) <= half).sum(axis=1) - 1
    inner = ~table.obs[OBS_BORDER].to_numpy()
    assert inner.sum() > 50
    assert 20 <= np.median(counts) <= 30
    assert 20 <= np.median(counts[inner]) <= 30
    # The table's own centroids agree with the labels' (same pixel frame).
    np.testing.assert_allclose(c, table.obsm["spatial"], atol=1e-6)


def test_synthetic_tissue_views_are_informative(tissue_views):
    store = mad.io.read_views(tissue_views)
    morph, micro = store.batch(np.arange(len(store)))
    assert morph.dtype == micro.dtype == np.uint8
    assert store.attrs["channel_names"] == list(
        tissue_views.images["morphology"].coords["c"].values
    )
    # Every cell's morphology view shows the cell (non-empty mask) on a zero surround.
    assert (morph.reshape(len(store), -1).max(axis=1) > 0).all()
    assert (morph[:, :, 0, :] == 0).mean() > 0.9  # top rows are mostly outside the cells
    assert micro.mean() > morph.mean()  # the neighbourhood fills the window
    info = tissue_views.tables["table"].uns[UNS_VIEWS]
    assert info["n_empty_morphology"] == 0


def test_cosmx_rgb_composite(cosmx_dir):
    sdata = mad.datasets.cosmx_lung_mini(cosmx_dir)
    mad.pp.normalize(sdata, image_key="morphology")
    mad.pp.cell_views(sdata, image_key="morphology_normalized", labels_key="cell_labels")
    table = sdata.tables["table"]
    store = mad.io.read_views(sdata)
    assert len(store) == table.n_obs == 120
    assert store.morphology.shape == (120, 3, 70, 70)
    assert store.microenvironment.shape == (120, 3, 224, 224)
    np.testing.assert_array_equal(store.instance_id, table.obs["instance_id"].to_numpy())
    assert (store.morphology.reshape(120, -1).max(axis=1) > 0).all()
    assert table.uns[UNS_VIEWS]["window_px"] > 0 and table.obs[OBS_BORDER].dtype == bool
