"""ViewStore: batches in any order, table order over storage order, zarr round trips, read_views."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import madspatial as mad
from madspatial.io import ViewStore, read_views
from madspatial.io._views import ZarrViewWriter, open_zarr_views


def _store(n=50, c=3, sm=14, se=28, seed=0):
    rng = np.random.default_rng(seed)
    morph = rng.integers(0, 256, (n, c, sm, sm), dtype=np.uint8)
    micro = rng.integers(0, 256, (n, c, se, se), dtype=np.uint8)
    ids = rng.permutation(np.arange(100, 100 + n))
    cent = rng.uniform(0, 500, (n, 2))
    return ViewStore(morph, micro, ids, cent, np.full(n, 40.0), {"channel_names": ["a", "b", "c"]})


def test_batch_any_order_with_repeats_and_properties():
    s = _store()
    idx = np.array([7, 0, 49, 7, -1])
    m, e = s.batch(idx)
    np.testing.assert_array_equal(m, s.morphology[[7, 0, 49, 7, 49]])
    np.testing.assert_array_equal(e, s.microenvironment[[7, 0, 49, 7, 49]])
    assert (len(s), s.n_channels, s.morphology_size, s.microenvironment_size) == (50, 3, 14, 28)
    assert s.channel_names == ["a", "b", "c"] and s.in_memory
    with pytest.raises(IndexError, match="out of range"):
        s.batch([50])
    sub = s.subset([3, 1])
    np.testing.assert_array_equal(sub.instance_id, s.instance_id[[3, 1]])
    np.testing.assert_array_equal(sub.morphology, s.morphology[[3, 1]])


def test_memory_location_is_registered():
    s = _store()
    loc = s.location
    assert loc.startswith("memory:") and read_views(loc) is s and s.location == loc
    with pytest.raises(KeyError, match="does not exist in this Python process"):
        read_views("memory:deadbeef")


def test_save_and_open_lazily(tmp_path):
    s = _store()
    disk = s.save(tmp_path / "v.zarr", chunk_size=8)
    assert disk.path == str(tmp_path / "v.zarr") and not disk.in_memory
    np.testing.assert_array_equal(disk.morphology[:], s.morphology)
    np.testing.assert_array_equal(disk.batch([49, 2, 2])[1], s.batch([49, 2, 2])[1])
    np.testing.assert_array_equal(disk.instance_id, s.instance_id)
    np.testing.assert_allclose(disk.centroid, s.centroid)
    assert disk.channel_names == ["a", "b", "c"]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        s.save(tmp_path / "v.zarr")


def _writer(path, s: ViewStore, storage_rows) -> ZarrViewWriter:
    """A zarr writer for the views of ``s`` (chunks of 8) in the given storage order."""
    return ZarrViewWriter.create(
        path,
        n_cells=len(s),
        n_channels=s.n_channels,
        morphology_size=s.morphology_size,
        microenvironment_size=s.microenvironment_size,
        chunk_size=8,
        attrs=s.attrs,
        instance_id=s.instance_id,
        centroid=s.centroid,
        window_px=s.window_px,
        storage_rows=storage_rows,
    )


def test_storage_order_is_hidden_behind_table_order(tmp_path):
    s = _store(n=40)
    rows = np.random.default_rng(1).permutation(40)  # storage position -> table row
    w = _writer(tmp_path / "p.zarr", s, rows)
    for a in range(0, 40, 16):
        r = rows[a : a + 16]
        w.write(a, s.morphology[r], s.microenvironment[r])
    with pytest.raises(ValueError, match="not aligned"):
        w.write(3, s.morphology[:8], s.microenvironment[:8])
    w.finish()
    d = open_zarr_views(tmp_path / "p.zarr")
    np.testing.assert_array_equal(d.storage_order, rows)
    arr = d.morphology
    assert arr.shape == s.morphology.shape and arr.dtype == np.uint8 and len(arr) == 40
    np.testing.assert_array_equal(arr[5], s.morphology[5])
    np.testing.assert_array_equal(arr[2:9], s.morphology[2:9])
    np.testing.assert_array_equal(arr[[9, 1, 9]], s.morphology[[9, 1, 9]])
    mask = np.zeros(40, bool)
    mask[[4, 30]] = True
    np.testing.assert_array_equal(arr[mask], s.morphology[mask])
    np.testing.assert_array_equal(arr[3, 1], s.morphology[3, 1])
    np.testing.assert_array_equal(np.asarray(d.microenvironment), s.microenvironment)
    np.testing.assert_array_equal(d.batch([39, 0])[0], s.morphology[[39, 0]])


def test_incomplete_and_foreign_stores(tmp_path):
    s = _store(n=16)
    w = _writer(tmp_path / "i.zarr", s, np.arange(16))
    w.write(0, s.morphology[:8], s.microenvironment[:8])
    with pytest.raises(ValueError, match=r"incomplete \(1/2 chunks written\).*resume"):
        read_views(tmp_path / "i.zarr")
    import zarr

    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    with pytest.raises(ValueError, match="not a madspatial view store"):
        read_views(tmp_path / "other.zarr")
    with pytest.raises(FileNotFoundError):
        read_views(tmp_path / "missing.zarr")


def test_read_views_from_tables():
    s = _store(n=10)
    obs = pd.DataFrame({"instance_id": s.instance_id}, index=[str(i) for i in range(10)])
    table = ad.AnnData(obs=obs)
    table.uns["spatialdata_attrs"] = {"instance_key": "instance_id"}
    with pytest.raises(KeyError, match=r"run mad\.pp\.cell_views"):
        read_views(table)
    table.uns["mad_views"] = {"store": s.location}
    assert read_views(table) is s
    with pytest.raises(ValueError, match="no longer match"):
        read_views(table[::-1].copy())
    with pytest.raises(TypeError, match="expects a path"):
        read_views(42)


def test_public_names():
    assert mad.io.ViewStore is ViewStore and callable(mad.io.export_h5)
