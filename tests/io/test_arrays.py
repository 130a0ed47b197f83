from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import madspatial as mad
from madspatial._constants import INSTANCE_KEY, LAYER_COUNTS, OBSM_SPATIAL


def _toy(n_ch: int = 2):
    lab = np.zeros((40, 50), dtype=np.int32)
    lab[2:12, 3:13] = 5  # 10 x 10 square, centroid (7.5, 6.5) as (x, y)
    lab[20:30, 30:46] = 9
    img = np.arange(n_ch * 40 * 50, dtype=np.uint16).reshape(n_ch, 40, 50)
    return img, lab


def test_builds_linked_sdata_with_centroids_and_counts():
    img, lab = _toy()
    expr = pd.DataFrame([[1, 0, 2], [0, 3, 0]], index=[9, 5], columns=["EPCAM", "CD3E", "ACTA2"])
    sdata = mad.io.sdata_from_arrays(img, lab, expr, channel_names=["DAPI", "membrane"])
    table = sdata.tables["table"]
    attrs = table.uns["spatialdata_attrs"]
    assert attrs["region"] == "cell_labels" and attrs["instance_key"] == INSTANCE_KEY
    # row order follows the expression frame; values travel with their ids
    assert table.obs[INSTANCE_KEY].tolist() == [9, 5]
    np.testing.assert_array_equal(table.X, [[1, 0, 2], [0, 3, 0]])
    np.testing.assert_array_equal(table.layers[LAYER_COUNTS], table.X)
    np.testing.assert_allclose(table.obsm[OBSM_SPATIAL][1], [7.5, 6.5])
    assert table.obs["area"].tolist() == [160.0, 100.0]
    assert list(sdata.images["morphology"].coords["c"].values) == ["DAPI", "membrane"]
    np.testing.assert_array_equal(sdata.labels["cell_labels"].values, lab)


def test_yxc_rgb_is_moved_to_channels_first_and_sparse_counts_accepted():
    _, lab = _toy()
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    sdata = mad.io.sdata_from_arrays(rgb, lab, sp.csr_matrix(np.ones((2, 4))))
    assert sdata.images["morphology"].shape == (3, 40, 50)
    np.testing.assert_array_equal(sdata.images["morphology"].values[1], rgb[..., 1])
    assert sdata.tables["table"].obs[INSTANCE_KEY].tolist() == [5, 9]


def test_float_labels_with_whole_numbers_are_accepted():
    img, lab = _toy()
    sdata = mad.io.sdata_from_arrays(img, lab.astype(np.float32))
    assert np.issubdtype(sdata.labels["cell_labels"].dtype, np.integer)
    assert sdata.tables["table"].n_obs == 2


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda img, lab: (img, lab[None]), "2-D"),
        (lambda img, lab: (img, lab + 0.5), "non-integer"),
        (lambda img, lab: (img[:, :30], lab), "differs from labels shape"),
        (lambda img, lab: (img[None], lab), r"\(c, y, x\)"),
    ],
)
def test_bad_arrays_raise_clear_errors(change, match):
    img, lab = _toy()
    img, lab = change(img, lab)
    with pytest.raises(ValueError, match=match):
        mad.io.sdata_from_arrays(img, lab)


def test_expression_rows_must_match_label_ids():
    img, lab = _toy()
    expr = pd.DataFrame(np.ones((2, 2)), index=[5, 77], columns=["A", "B"])
    with pytest.raises(ValueError, match=r"1 label id\(s\) have no expression row \(e.g. 9\)"):
        mad.io.sdata_from_arrays(img, lab, expr)
    with pytest.raises(ValueError, match="3 rows but labels hold 2 cells"):
        mad.io.sdata_from_arrays(img, lab, np.ones((3, 2)))


def test_pixel_size_adds_a_micron_coordinate_system():
    from spatialdata.transformations import get_transformation

    img, lab = _toy()
    sdata = mad.io.sdata_from_arrays(img, lab, pixel_size=0.25)
    t = get_transformation(sdata.labels["cell_labels"], to_coordinate_system="microns")
    np.testing.assert_allclose(t.to_affine_matrix(("y", "x"), ("y", "x"))[:2, :2], np.eye(2) * 0.25)
    with pytest.raises(ValueError, match="pixel_size"):
        mad.io.sdata_from_arrays(img, lab, pixel_size=-1)


def test_real_cosmx_fields_of_view(cosmx_dir):
    from madspatial.datasets._cosmx import ID_STRIDE, cosmx_lung_mini

    sdata = cosmx_lung_mini(cosmx_dir)
    table = sdata.tables["table"]
    assert table.obs["fov"].value_counts().to_dict() == {"2": 67, "3": 53}
    assert table.n_vars == 960 and not any(g.startswith("NegPrb") for g in table.var_names)
    ids = np.unique(sdata.labels["cell_labels"].values)
    assert set(ids[ids > 0]) == set(table.obs[INSTANCE_KEY])  # every label id has a row
    # counts equal the transcript file's per-cell tallies
    tx = pd.read_csv(cosmx_dir / "Lung12_tx_file.csv")
    tx = tx[(tx.cell_ID > 0) & ~tx.target.str.startswith("NegPrb")]
    per_cell = (tx.fov * ID_STRIDE + tx.cell_ID).value_counts()
    got = pd.Series(np.asarray(table.X.sum(1)).ravel(), index=table.obs[INSTANCE_KEY].to_numpy())
    pd.testing.assert_series_equal(
        got.sort_index(),
        per_cell.reindex(got.index, fill_value=0).sort_index().astype(got.dtype),
        check_names=False,
    )
    assert table.X.sum() > 10_000
