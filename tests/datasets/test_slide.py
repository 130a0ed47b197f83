"""mad.datasets.synthetic_slide: a zarr slide written tile by tile."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest

import madspatial as mad
from madspatial.io._arrays import label_centroids

SMALL = {"n_cells": 400, "tile_px": 256, "chunk_px": 128, "n_genes": 129}


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    return mad.datasets.synthetic_slide(tmp_path_factory.mktemp("s") / "slide.zarr", **SMALL)


def test_slide_is_lazy_and_consistent(slide):
    image = slide.images["morphology"]
    labels = slide.labels["cell_labels"]
    table = slide.tables["table"]
    assert isinstance(image.data, da.Array) and isinstance(labels.data, da.Array)
    assert image.data.chunksize[1:] == (128, 128)
    # 400 cells at ~149 per 256 px tile: 3 tiles in a 2 x 2 grid (one spare, empty)
    assert table.uns["synthetic_tissue"]["n_tiles"] == 3
    assert image.shape == (4, 512, 512)
    lab = np.asarray(labels.data)
    ids = table.obs["instance_id"].to_numpy()
    assert 388 <= table.n_obs <= 400  # a cell squeezed out of the raster has no row
    assert set(np.unique(lab[lab > 0])) == set(ids)
    assert lab[256:, 256:].max() == 0  # the spare tile holds no cells
    cent, area = label_centroids(lab, ids)
    np.testing.assert_allclose(table.obsm["spatial"], cent)
    np.testing.assert_allclose(table.obs["area"], area)
    assert table.X.shape == (table.n_obs, 129)
    assert np.asarray(table.X.sum(axis=1)).min() > 0
    assert set(table.obs["tile"]) == {0, 1, 2}


def test_slide_is_seeded(tmp_path, slide):
    again = mad.datasets.synthetic_slide(tmp_path / "a.zarr", **SMALL)
    other = mad.datasets.synthetic_slide(tmp_path / "b.zarr", **{**SMALL, "seed": 1})
    a = np.asarray(slide.images["morphology"].data)
    np.testing.assert_array_equal(a, np.asarray(again.images["morphology"].data))
    assert not np.array_equal(a, np.asarray(other.images["morphology"].data))


def test_slide_refuses_bad_input(tmp_path):
    (tmp_path / "x.zarr").mkdir()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        mad.datasets.synthetic_slide(tmp_path / "x.zarr", **SMALL)
    with pytest.raises(ValueError, match="multiple of chunk_px"):
        mad.datasets.synthetic_slide(tmp_path / "y.zarr", n_cells=400, tile_px=300, chunk_px=128)
    with pytest.raises(ValueError, match="fewer than 50 per tile"):
        mad.datasets.synthetic_slide(tmp_path / "z.zarr", n_cells=60, tile_px=128, chunk_px=64)
    assert not (tmp_path / "y.zarr").exists()


def test_slide_niche_imprint_brightens_one_partner_of_each_niche_only_pair(tmp_path):
    """As in ``synthetic_tissue``: the same cells and counts, one partner of each
    niche-only pair brighter, the other and the tumour cells unchanged."""
    from scipy import ndimage as ndi

    from madspatial.datasets._tissue_spec import NICHE_ONLY_PAIRS

    opts = {**SMALL, "noise": 0.0}
    plain = mad.datasets.synthetic_slide(tmp_path / "p.zarr", **opts)
    marked = mad.datasets.synthetic_slide(tmp_path / "m.zarr", niche_imprint=1.0, **opts)
    lab = np.asarray(plain.labels["cell_labels"].data)
    np.testing.assert_array_equal(lab, np.asarray(marked.labels["cell_labels"].data))
    tp, tm = plain.tables["table"], marked.tables["table"]
    assert (tp.X != tm.X).nnz == 0
    assert tm.uns["synthetic_tissue"]["niche_imprint"] == 1.0
    assert tp.uns["synthetic_tissue"]["niche_imprint"] == 0.0
    ids = tp.obs["instance_id"].to_numpy()

    def cell_mean(sd):  # above the camera offset, mean over channels
        img = np.asarray(sd.images["morphology"].data).astype(float) - 100
        return np.mean([ndi.mean(img[c], lab, ids) for c in range(4)], 0)

    ratio = pd.Series(cell_mean(marked) / cell_mean(plain))
    ratio = ratio.groupby(tp.obs["cell_type"].to_numpy()).median()
    for first, second in NICHE_ONLY_PAIRS:
        assert ratio[first] == pytest.approx(1.105, abs=0.055), first
        assert abs(ratio[second] - 1) < 0.02, f"{second}: {ratio[second]:.3f}"
    with pytest.raises(ValueError, match="niche_imprint"):
        mad.datasets.synthetic_slide(tmp_path / "bad.zarr", niche_imprint=2, **opts)
    assert not (tmp_path / "bad.zarr").exists()
