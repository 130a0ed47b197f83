"""Bad input to mad.pp.cell_views gets a clear error, and nothing is silently lost."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from spatialdata.models import Image2DModel, Labels2DModel, Labels3DModel
from spatialdata.transformations import Scale, Translation

import madspatial as mad
from madspatial._constants import UNS_VIEWS

from .conftest import disk_tissue

KW = dict(image_key="morphology", labels_key="cell_labels")


def _set_labels(sdata, labels, transformation=None):
    """Replace the tissue's 2-D labels (with a ``global`` transformation when given)."""
    kw = {} if transformation is None else {"transformations": {"global": transformation}}
    sdata.labels["cell_labels"] = Labels2DModel.parse(labels, dims=("y", "x"), **kw)


@pytest.fixture
def small():
    return disk_tissue(shape=(140, 140), shuffle_table=False)


@pytest.mark.parametrize(
    ("arg", "value"),
    [("morphology_size", 64), ("microenvironment_size", 200), ("morphology_size", 0)],
)
def test_sizes_must_be_multiples_of_the_patch(small, arg, value):
    sdata, _ = small
    with pytest.raises(ValueError, match=rf"{arg}={value}.*multiple of the ViT patch size 14"):
        mad.pp.cell_views(sdata, **KW, **{arg: value})


def test_label_ids_without_table_rows(small):
    sdata, _ = small
    table = sdata.tables["table"]
    sdata.tables["table"] = table[3:].copy()  # ids 1, 2, 3 lose their rows
    with pytest.raises(ValueError, match=r"3 label id\(s\).*no row.*e\.g\. ids 1, 2, 3"):
        mad.pp.cell_views(sdata, **KW)


def test_table_rows_without_labels_raise_or_intersect(small, caplog):
    sdata, truth = small
    lab = truth["labels"].copy()
    lab[np.isin(lab, [5, 9])] = 0  # two cells vanish from the segmentation (0 px: empty)
    _set_labels(sdata, lab)
    n = sdata.tables["table"].n_obs
    with pytest.raises(ValueError, match=r"2 table row\(s\).*no pixels.*empty.*ids 5, 9"):
        mad.pp.cell_views(sdata, **KW)
    with caplog.at_level(logging.WARNING, logger="madspatial"):
        logging.getLogger("madspatial").propagate = True
        try:
            mad.pp.cell_views(sdata, **KW, missing="intersect")
        finally:
            logging.getLogger("madspatial").propagate = False
    assert "2 table row(s)" in caplog.text and "dropped 2 table row(s)" in caplog.text
    table = sdata.tables["table"]
    assert table.n_obs == n - 2 and not set(table.obs["instance_id"]) & {5, 9}
    rec = table.uns[UNS_VIEWS]["missing"]
    assert rec["rows_without_labels"] == 2 and rec["rows_without_labels_ids"] == [5, 9]
    store = mad.io.read_views(sdata)
    np.testing.assert_array_equal(store.instance_id, table.obs["instance_id"].to_numpy())


def test_non_integer_labels(small):
    """Float labels with whole values are ids (issue 12.4); other values are refused."""
    sdata, truth = small
    # spatialdata >= 0.8 refuses float labels in parse; readers can still hand them over
    el = Labels2DModel.parse(truth["labels"], dims=("y", "x"))
    el.data = el.data.astype(np.float32)
    el.data[50, 60] = 3.5
    try:
        sdata.labels["cell_labels"] = el
    except ValueError:
        pytest.skip("this spatialdata refuses float labels: no reader can hand them over")
    with pytest.raises(
        ValueError,
        match=r"dtype float32.*not a non-negative whole number, e\.g\. 3\.5 at pixel "
        r"\(y=50, x=60\)",
    ):
        mad.pp.cell_views(sdata, **KW)


def test_three_d_labels(small):
    sdata, truth = small
    sdata.labels["cell_labels"] = Labels3DModel.parse(
        np.stack([truth["labels"]] * 2), dims=("z", "y", "x")
    )
    with pytest.raises(ValueError, match=r"3-D.*2-D \(y, x\) labels"):
        mad.pp.cell_views(sdata, **KW)


def test_shape_mismatch(small):
    sdata, truth = small
    _set_labels(sdata, truth["labels"][:-10])
    with pytest.raises(ValueError, match=r"shape \(140, 140\) differs.*rasterize"):
        mad.pp.cell_views(sdata, **KW)


def test_transformation_not_invertible(small):
    # issue 12: scales and sub-pixel shifts are resampled (tests/pp/test_regions.py); only a
    # transformation that cannot be inverted is an error
    sdata, truth = small
    _set_labels(sdata, truth["labels"], Scale([0.0, 1.0], axes=("y", "x")))
    with pytest.raises(
        ValueError, match=r"labels 'cell_labels' map to image 'morphology'.*not invertible"
    ):
        mad.pp.cell_views(sdata, **KW)


def test_labels_translated_outside_the_image(small):
    sdata, truth = small
    _set_labels(sdata, truth["labels"], Translation([4, 0], axes=("x", "y")))
    with pytest.raises(ValueError, match=r"reach outside the image"):
        mad.pp.cell_views(sdata, **KW)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_pixels(small, bad):
    sdata, truth = small
    img = truth["image"].copy()
    img[1, 50:52, 60] = bad
    sdata.images["morphology"] = Image2DModel.parse(img, dims=("c", "y", "x"))
    with pytest.raises(ValueError, match=r"NaN/inf"):
        mad.pp.cell_views(sdata, **KW)


def test_unnormalized_images(small):
    sdata, truth = small
    raw = (truth["image"] * 4000).astype(np.uint16)
    sdata.images["morphology"] = Image2DModel.parse(raw, dims=("c", "y", "x"))
    with pytest.raises(ValueError, match=r"dtype uint16.*mad.pp.normalize"):
        mad.pp.cell_views(sdata, **KW)
    sdata.images["morphology"] = Image2DModel.parse(raw.astype(np.float32), dims=("c", "y", "x"))
    with pytest.raises(ValueError, match=r"not \[0, 1\].*mad.pp.normalize"):
        mad.pp.cell_views(sdata, **KW)


def test_zero_variance_channel(small):
    sdata, truth = small
    img = truth["image"].copy()
    img[1] = 0.5
    sdata.images["morphology"] = Image2DModel.parse(
        img, dims=("c", "y", "x"), c_coords=["value", "flat"]
    )
    with pytest.raises(ValueError, match=r"\['flat'\].*constant"):
        mad.pp.cell_views(sdata, **KW)


def test_fewer_cells_than_neighbors():
    sdata, _ = disk_tissue(shape=(60, 60), shuffle_table=False)  # 4 cells
    with pytest.raises(ValueError, match=r"4 cells.*fewer than n_neighbors \+ 1 = 26"):
        mad.pp.cell_views(sdata, **KW)
    store = mad.pp.cell_views(sdata, **KW, n_neighbors=3, inplace=False)
    assert len(store) == 4


def test_unknown_keys_and_options(small):
    sdata, _ = small
    with pytest.raises(KeyError, match=r"no image 'nope'.*morphology"):
        mad.pp.cell_views(sdata, image_key="nope", labels_key="cell_labels")
    with pytest.raises(ValueError, match=r"missing must be"):
        mad.pp.cell_views(sdata, **KW, missing="drop")
    with pytest.raises(ValueError, match=r"morphology_window must be"):
        mad.pp.cell_views(sdata, **KW, morphology_window="tight")
    with pytest.raises(ValueError, match=r"need .* GB.*store="):
        mad.pp.cell_views(sdata, **KW, store=None, max_memory_gb=1e-6)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            {"morphology_size": "28"},
            r"morphology_size='28' \(str\) must be a positive int multiple of the ViT patch "
            r"size 14.*pass the number 28, not a string",
        ),
        (
            {"microenvironment_size": 56.0},
            r"microenvironment_size=56\.0 \(float\) must be a positive int multiple.*pass 56 "
            r"\(an int\)",
        ),
        ({"chunk_size": 0}, r"chunk_size=0 \(int\) must be a positive int, e\.g\. 64"),
        (
            {"morphology_quantile": 1.5},
            r"morphology_quantile=1\.5 \(float\) must be a number in \(0, 1\], e\.g\. 0\.99",
        ),
        (
            {"morphology_window_px": 0},
            r"morphology_window_px=0 \(int\) must be a finite number > 0",
        ),
        ({"window_px": -10}, r"window_px=-10 \(int\) must be a finite number > 0, e\.g\. 100"),
        ({"window_px": float("nan")}, r"window_px=nan \(float\) must be a finite number > 0"),
        ({"morphology_margin": -1}, r"morphology_margin=-1 \(int\) must be a finite number > 0"),
        ({"n_neighbors": True}, r"n_neighbors=True \(bool\) must be a positive int"),
        ({"n_neighbors": 2.5}, r"n_neighbors=2\.5 \(float\) must be a positive int"),
        ({"cells_per_tile": 0}, r"cells_per_tile=0 \(int\) must be a positive int"),
        ({"max_memory_gb": 0}, r"max_memory_gb=0 \(int\) must be a finite number > 0"),
        ({"cache_mb": -1}, r"cache_mb=-1 \(int\) must be a finite number >= 0"),
        ({"n_jobs": 1.5}, r"n_jobs=1\.5 \(float\) must be an int \(-1: all cores\)"),
        ({"key_added": ""}, r"key_added must be a non-empty str"),
    ],
)
def test_numeric_options_get_clear_errors(small, kw, message):
    """Issue 10: each of these was a ZeroDivisionError, a wrong hint or a silent bad run."""
    sdata, _ = small
    with pytest.raises(ValueError, match=message):
        mad.pp.cell_views(sdata, **KW, **kw)
