"""Instance ids as instruments write them (issue 12.4) and ids that would silently go wrong (10.5)."""

from __future__ import annotations

import numpy as np
import pytest
from spatialdata.models import Labels2DModel

import madspatial as mad
from madspatial._constants import UNS_VIEWS

from .conftest import disk_tissue

KW = dict(image_key="morphology", labels_key="cell_labels")


@pytest.fixture(scope="module")
def ref():
    sdata, _ = disk_tissue(shape=(140, 140))
    return mad.pp.cell_views(sdata, **KW, inplace=False)


def _same(store, ref):
    np.testing.assert_array_equal(store.morphology, ref.morphology)
    np.testing.assert_array_equal(store.microenvironment, ref.microenvironment)


def test_uint64_ids_at_or_above_2_63_are_kept_exactly(ref):
    """Before: the store held negative int64 ids (wrapped). After: uint64, exact."""
    sdata, truth = disk_tissue(shape=(140, 140))
    off = np.uint64(2**63)
    lab = truth["labels"].astype(np.uint64)
    lab[lab > 0] += off
    sdata.labels["cell_labels"] = Labels2DModel.parse(lab, dims=("y", "x"))
    table = sdata.tables["table"]
    table.obs["instance_id"] = table.obs["instance_id"].to_numpy().astype(np.uint64) + off
    mad.pp.cell_views(sdata, **KW)
    store = mad.io.read_views(sdata)  # the table <-> store id check passes too
    assert store.instance_id.dtype == np.uint64
    np.testing.assert_array_equal(store.instance_id, table.obs["instance_id"].to_numpy())
    assert store.instance_id.min() >= 2**63
    _same(store, ref)


def test_uint64_ids_survive_a_zarr_store(tmp_path):
    sdata, truth = disk_tissue(shape=(140, 140))
    off = np.uint64(2**63 + 5)
    lab = truth["labels"].astype(np.uint64)
    lab[lab > 0] += off
    sdata.labels["cell_labels"] = Labels2DModel.parse(lab, dims=("y", "x"))
    table = sdata.tables["table"]
    table.obs["instance_id"] = table.obs["instance_id"].to_numpy().astype(np.uint64) + off
    mad.pp.cell_views(sdata, **KW, store=tmp_path / "v.zarr")
    again = mad.io.read_views(str(tmp_path / "v.zarr"))
    assert again.instance_id.dtype == np.uint64
    np.testing.assert_array_equal(again.instance_id, table.obs["instance_id"].to_numpy())


def test_duplicate_ids_in_an_unparsed_table_are_named():
    """Before: duplicated rows got identical views silently."""
    sdata, _ = disk_tissue(shape=(140, 140), shuffle_table=False)
    table = sdata.tables["table"]
    v = table.obs["instance_id"].to_numpy().copy()
    v[[1, 3]] = v[0]
    v[5] = v[4]
    table.obs["instance_id"] = v
    with pytest.raises(
        ValueError,
        match=r"column 'instance_id' holds 2 duplicate id\(s\): 1 \(x3\), 5 \(x2\); each row "
        r"must be one cell.*duplicated\(\)",
    ):
        mad.pp.cell_views(sdata, **KW)


def test_float_ids_with_whole_values_are_accepted(ref):
    """A CSV round trip turns ids into floats: whole values are ids."""
    sdata, _ = disk_tissue(shape=(140, 140))
    table = sdata.tables["table"]
    table.obs["instance_id"] = table.obs["instance_id"].astype(np.float64)
    _same(mad.pp.cell_views(sdata, **KW, inplace=False), ref)
    table.obs["instance_id"] = table.obs["instance_id"] + 0.5
    with pytest.raises(
        ValueError,
        match=r"column 'instance_id' holds values that are not non-negative whole numbers "
        r"\(e\.g\. \d+\.5 at row 0; 36 row\(s\)\)",
    ):
        mad.pp.cell_views(sdata, **KW)
    table.obs["instance_id"] = np.where(np.arange(table.n_obs) == 2, np.nan, 1.0)
    with pytest.raises(ValueError, match=r"1 missing value\(s\) \(NaN/NA\), e\.g\. at rows 2"):
        mad.pp.cell_views(sdata, **KW)


def test_digit_string_ids_are_ids(ref):
    sdata, _ = disk_tissue(shape=(140, 140))
    table = sdata.tables["table"]
    table.obs["instance_id"] = table.obs["instance_id"].astype(str)
    _same(mad.pp.cell_views(sdata, **KW, inplace=False), ref)


def test_float_label_image_with_whole_values(ref):
    """GiottoData's CosMx crop stores float32 labels; before: 'labels have dtype float32'."""
    sdata, truth = disk_tissue(shape=(140, 140))
    # spatialdata >= 0.8 refuses float labels in parse; readers can still hand them over
    el = Labels2DModel.parse(truth["labels"], dims=("y", "x"))
    el.data = el.data.astype(np.float32)
    sdata.labels["cell_labels"] = el
    _same(mad.pp.cell_views(sdata, **KW, inplace=False), ref)


def test_text_instance_ids_match_through_a_label_column(ref):
    """Xenium-style ids ('aaab0001-1'); before: 'could not convert string to float'."""
    sdata, _ = disk_tissue(shape=(140, 140))
    table = sdata.tables["table"]
    ids = table.obs["instance_id"].to_numpy()
    table.obs["label_value"] = ids
    table.obs["instance_id"] = [f"aaab{i:04d}-1" for i in ids]
    mad.pp.cell_views(sdata, **KW)
    assert table.uns[UNS_VIEWS]["label_id_key"] == "label_value"
    store = mad.io.read_views(sdata)
    np.testing.assert_array_equal(store.instance_id, ids)
    _same(store, ref)
    explicit = mad.pp.cell_views(sdata, **KW, label_id_key="label_value", inplace=False)
    _same(explicit, ref)
    with pytest.raises(KeyError, match=r"label_id_key='nope' is not a column"):
        mad.pp.cell_views(sdata, **KW, label_id_key="nope")
    del table.obs["label_value"]
    with pytest.raises(
        ValueError,
        match=r"column 'instance_id' holds text ids, e\.g\. 'aaab\d{4}-1', not label values; "
        r"cell views need each row's value in labels 'cell_labels'\. Pass label_id_key=",
    ):
        mad.pp.cell_views(sdata, **KW)
