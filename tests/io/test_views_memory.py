"""In-memory view stores live as long as the tables using them, and survive sdata.write."""

from __future__ import annotations

import gc
import shutil
import weakref

import numpy as np
import pytest

import madspatial as mad
from madspatial._constants import SDATA_VIEWS_DIR, UNS_VIEWS
from madspatial.io import read_views

from ..pp.conftest import disk_tissue

KW = dict(image_key="morphology", labels_key="cell_labels")


def _views_sdata():
    sdata, _ = disk_tissue(shape=(140, 140))
    mad.pp.cell_views(sdata, **KW)
    return sdata


def test_dropping_the_spatialdata_frees_the_views():
    """Before: a module-level registry kept every in-memory store for the process's life."""
    sdata = _views_sdata()
    store = read_views(sdata)
    loc = str(sdata.tables["table"].uns[UNS_VIEWS]["store"])
    arrays = [weakref.ref(store.morphology), weakref.ref(store.microenvironment)]
    assert read_views(loc) is store
    del store, sdata
    gc.collect()
    assert [r() for r in arrays] == [None, None]
    with pytest.raises(KeyError, match=r"does not exist in this Python process"):
        read_views(loc)


def test_copies_of_the_table_keep_the_views():
    sdata = _views_sdata()
    ref = read_views(sdata).morphology.copy()
    table = sdata.tables["table"].copy()
    deep = __import__("spatialdata").deepcopy(sdata)
    del sdata
    gc.collect()
    np.testing.assert_array_equal(read_views(table).morphology, ref)
    np.testing.assert_array_equal(read_views(deep).morphology, ref)
    store = read_views(table)
    gc.collect()
    assert read_views(store.location) is store


def test_views_survive_sdata_write_and_read_zarr(tmp_path):
    """Before: the table kept 'memory:<uuid>' and embed failed after read_zarr."""
    import spatialdata as sd

    sdata = _views_sdata()
    ref = read_views(sdata)
    morph, micro, ids = ref.morphology.copy(), ref.microenvironment.copy(), ref.instance_id
    path = tmp_path / "data.zarr"
    sdata.write(path)
    key = str(sdata.tables["table"].uns[UNS_VIEWS]["store"])
    del sdata, ref
    gc.collect()
    with pytest.raises(KeyError):
        read_views(key)  # the in-memory store is gone: what follows reads the disk
    back = sd.read_zarr(path)
    info = back.tables["table"].uns[UNS_VIEWS]
    assert info["store"] == f"sdata:{SDATA_VIEWS_DIR}/table/{UNS_VIEWS}.zarr"
    store = read_views(back)
    assert store.path.startswith(str(path))
    np.testing.assert_array_equal(store.morphology[:], morph)
    np.testing.assert_array_equal(store.microenvironment[:], micro)
    np.testing.assert_array_equal(store.instance_id, ids)
    np.testing.assert_array_equal(read_views(back.tables["table"]).morphology[:], morph)
    # The reference is relative to the SpatialData: moving the folder keeps it.
    moved = tmp_path / "moved.zarr"
    shutil.move(path, moved)
    again = sd.read_zarr(moved)
    np.testing.assert_array_equal(read_views(again).morphology[:], morph)
    with pytest.raises(FileNotFoundError, match=r"saved inside its SpatialData zarr"):
        read_views(again.tables["table"])  # a lone table cannot know where it moved


def test_writing_a_table_without_its_spatialdata_warns(tmp_path):
    sdata = _views_sdata()
    table = sdata.tables["table"]
    with pytest.warns(UserWarning, match=r"kept in memory only and are not written") as rec:
        table.write_h5ad(tmp_path / "t.h5ad")
    # rec holds every warning of the block (anndata 0.13 with pandas 3 adds Pandas4Warnings
    # of its own first): check ours, and that it points at the user's line, not anndata's
    (ours,) = [w for w in rec if "kept in memory only" in str(w.message)]
    assert ours.filename == __file__
