"""Views cut on the fly (cell_views(store="on_the_fly")) equal the stored ones, bit for bit."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import madspatial as mad
from madspatial._constants import UNS_VIEWS
from madspatial.io._views import ON_THE_FLY
from madspatial.pp._on_the_fly import OnTheFlyViews

from .conftest import disk_tissue

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SLIDE = {"n_cells": 400, "tile_px": 256, "chunk_px": 128, "expression": False}
KW = {"image_key": "morphology_normalized", "labels_key": "cell_labels"}
SIZES = {"morphology_size": 28, "microenvironment_size": 56}


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    """A zarr-backed slide, lazily normalized: views are cut from a dask graph over zarr."""
    root = tmp_path_factory.mktemp("otf")
    sdata = mad.datasets.synthetic_slide(root / "slide.zarr", **SLIDE)
    mad.pp.normalize(sdata, image_key="morphology")
    stored = mad.pp.cell_views(sdata, **KW, **SIZES, store=root / "v.zarr", inplace=False)
    memory = mad.pp.cell_views(sdata, **KW, **SIZES, inplace=False)
    mad.pp.cell_views(sdata, **KW, **SIZES, store=ON_THE_FLY)
    return sdata, stored, memory, root


def _assert_same(a, b, idx):
    ma, ea = a.batch(idx)
    mb, eb = b.batch(idx)
    assert ma.shape == mb.shape and ea.shape == eb.shape
    np.testing.assert_array_equal(ma, mb)
    np.testing.assert_array_equal(ea, eb)


def test_on_the_fly_equals_memory_and_zarr_stores_bit_for_bit(slide):
    sdata, stored, memory, _ = slide
    otf = mad.io.read_views(sdata)
    assert isinstance(otf, OnTheFlyViews) and len(otf) == len(stored) == len(memory)
    everything = np.arange(len(otf))
    _assert_same(otf, stored, everything)
    _assert_same(otf, memory, everything)
    rng = np.random.default_rng(0)
    for size in (1, 7, 64, 300):  # random subsets: unsorted, with repeats
        idx = rng.integers(0, len(otf), size)
        _assert_same(otf, stored, idx)
    np.testing.assert_array_equal(otf.batch([-1])[0], stored.batch([len(stored) - 1])[0])
    # one view alone (single-view training reads store.<view>[idx]) cuts only that view
    idx = rng.permutation(len(otf))[:50]
    np.testing.assert_array_equal(otf.morphology[idx], stored.morphology[idx])
    np.testing.assert_array_equal(otf.microenvironment[idx], stored.microenvironment[idx])
    np.testing.assert_array_equal(otf.microenvironment[3], stored.microenvironment[3])
    # same rows, same storage order, same geometry, same fingerprint as the zarr store
    np.testing.assert_array_equal(otf.instance_id, stored.instance_id)
    np.testing.assert_array_equal(otf.storage_order, stored.storage_order)
    np.testing.assert_allclose(otf.centroid, stored.centroid)
    assert otf.attrs["fingerprint"] == stored.attrs["fingerprint"]
    assert (otf.n_channels, otf.morphology_size, otf.microenvironment_size) == (4, 28, 56)
    assert otf.channel_names == stored.channel_names
    assert not otf.in_memory and otf.path is None
    with pytest.raises(IndexError, match="out of range"):
        otf.batch([len(otf)])


def test_subset_and_save_materialise_the_same_views(slide, tmp_path):
    _, stored, _, _ = slide
    otf = mad.io.read_views(slide[0])
    rows = np.array([5, 2, 40])
    sub = otf.subset(rows)
    assert sub.in_memory and len(sub) == 3
    np.testing.assert_array_equal(sub.morphology, stored.morphology[rows])
    cache = otf.save(tmp_path / "cache.zarr")  # the optional cache for repeated epochs
    np.testing.assert_array_equal(cache.microenvironment[:], stored.microenvironment[:])


def test_per_cell_windows_on_the_fly_equal_the_store():
    sdata, _ = disk_tissue()
    kw = {
        "image_key": "morphology",
        "labels_key": "cell_labels",
        **SIZES,
        "microenvironment_window": "cell",
        "morphology_window": "cell",
    }
    ref = mad.pp.cell_views(sdata, **kw, inplace=False)
    otf = mad.pp.cell_views(sdata, **kw, store=ON_THE_FLY, inplace=False)
    _assert_same(otf, ref, np.arange(len(ref)))
    idx = np.random.default_rng(1).permutation(len(ref))[:40]
    _assert_same(otf, ref, idx)


def test_record_and_rebuild_from_a_written_spatialdata(slide, tmp_path):
    import spatialdata

    sdata, stored, _, _ = slide
    info = sdata.tables["table"].uns[UNS_VIEWS]
    assert info["store"] == ON_THE_FLY
    assert info["arguments"]["morphology_size"] == 28 and "window_px" not in info["arguments"]
    assert info["fingerprint"] == stored.attrs["fingerprint"]
    assert mad.io.read_views(sdata) is mad.io.read_views(sdata)  # held by the table
    # written and read back in "another process": rebuilt from the image and labels
    sdata.write(tmp_path / "w.zarr")
    back = spatialdata.read_zarr(tmp_path / "w.zarr")
    assert type(back.tables["table"].uns[UNS_VIEWS]["store"]) is str
    rebuilt = mad.io.read_views(back)
    assert isinstance(rebuilt, OnTheFlyViews)
    _assert_same(rebuilt, stored, np.arange(0, len(stored), 3))
    assert mad.io.read_views(back.tables["table"]) is rebuilt  # now held by the table
    alone = spatialdata.read_zarr(tmp_path / "w.zarr").tables["table"]
    with pytest.raises(ValueError, match="pass the SpatialData"):
        mad.io.read_views(alone)  # a table alone has no image to cut from
    with pytest.raises(ValueError, match="pass the SpatialData"):
        mad.io.read_views(ON_THE_FLY)
    # another image under the same name: the fingerprint says the views would differ
    img = back.images["morphology_normalized"]
    back.images["morphology_normalized"] = img.copy(data=(img.data * 0.5).astype("float32"))
    back.tables["table"].uns[UNS_VIEWS]["store"] = ON_THE_FLY
    with pytest.raises(ValueError, match=r"changed since mad\.pp\.cell_views .*image pixels"):
        mad.io.read_views(back)


def test_on_the_fly_store_pickles_without_caches(slide):
    _, stored, _, _ = slide
    otf = mad.io.read_views(slide[0])
    otf.batch(np.arange(20))  # fills the chunk caches
    again = pickle.loads(pickle.dumps(otf))
    assert len(again.plan.image._cache) == 0  # readers reopen lazily (in a worker)
    _assert_same(again, stored, np.arange(100, 160))


def test_memory_error_points_at_on_the_fly():
    sdata, _ = disk_tissue()
    with pytest.raises(ValueError, match="store='on_the_fly' to cut them on the fly"):
        mad.pp.cell_views(
            sdata, image_key="morphology", labels_key="cell_labels", store=None, max_memory_gb=1e-6
        )


def _auto_messages(log) -> list[str]:
    return [r.getMessage() for r in log.records if "cell_views (store='auto')" in r.getMessage()]


def test_auto_store_keeps_small_views_in_memory_and_cuts_large_ones_on_the_fly(
    monkeypatch, mad_log
):
    import madspatial.pp._on_the_fly as otf_mod

    sdata, _ = disk_tissue()
    kw = {"image_key": "morphology", "labels_key": "cell_labels", **SIZES}
    n = sdata.tables["table"].n_obs
    nbytes = n * 2 * (28**2 + 56**2)  # 2 channels: the views' exact size
    ref = mad.pp.cell_views(sdata, **kw, store=None, inplace=False)
    monkeypatch.setattr(otf_mod, "AUTO_MEMORY_BYTES", nbytes)  # they just fit
    mad.pp.cell_views(sdata, **kw)  # the default is store="auto"
    small = mad.io.read_views(sdata)
    assert sdata.tables["table"].uns[UNS_VIEWS]["store"].startswith("memory:")
    assert small.in_memory and not isinstance(small, OnTheFlyViews)
    assert _auto_messages(mad_log) == [
        f"cell_views (store='auto'): the views of {n} cells take {nbytes / 1e6:.2f} MB, within "
        f"the in-memory budget of {nbytes / 1e6:.2f} MB: keeping them in memory"
    ]
    mad_log.clear()
    monkeypatch.setattr(otf_mod, "AUTO_MEMORY_BYTES", nbytes - 1)  # one byte too many
    mad.pp.cell_views(sdata, **kw)
    large = mad.io.read_views(sdata)
    assert sdata.tables["table"].uns[UNS_VIEWS]["store"] == ON_THE_FLY
    assert isinstance(large, OnTheFlyViews)
    (msg,) = _auto_messages(mad_log)
    assert f"the views of {n} cells would take {nbytes / 1e6:.2f} MB, more than the" in msg
    assert msg.endswith(
        "cutting them on the fly (nothing stored, memory stays flat; "
        "store=None keeps them in memory, store='views.zarr' writes them to "
        "disk)"
    )
    _assert_same(large, ref, np.arange(n))  # the same views either way
    # explicit choices are kept whatever the budget
    mad.pp.cell_views(sdata, **kw, store=None)
    assert mad.io.read_views(sdata).in_memory


def test_auto_budget_is_bounded_by_ram_and_max_memory_gb(monkeypatch):
    import madspatial.pp._on_the_fly as otf_mod

    monkeypatch.setattr(otf_mod, "physical_memory_bytes", lambda: 4_000_000_000)
    assert otf_mod.auto_memory_budget(8.0) == 500_000_000  # an eighth of 4 GB < 1 GB
    assert otf_mod.auto_memory_budget(0.1) == 100_000_000  # max_memory_gb=0.1
    monkeypatch.setattr(otf_mod, "physical_memory_bytes", lambda: 64_000_000_000)
    assert otf_mod.auto_memory_budget(8.0) == 1_000_000_000
    sdata, _ = disk_tissue()
    # the budget that raised for store=None (max_memory_gb) now sends the views on the fly
    views = mad.pp.cell_views(
        sdata, image_key="morphology", labels_key="cell_labels", max_memory_gb=1e-6, inplace=False
    )
    assert isinstance(views, OnTheFlyViews)
