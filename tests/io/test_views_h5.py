"""H5 export/import in the reference MAD layout."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import madspatial as mad
from madspatial.io import ViewStore


def _store(n=20, seed=0):
    rng = np.random.default_rng(seed)
    return ViewStore(
        rng.integers(0, 256, (n, 2, 14, 14), dtype=np.uint8),
        rng.integers(0, 256, (n, 2, 28, 28), dtype=np.uint8),
        np.arange(n)[::-1] + 5,
        rng.uniform(0, 100, (n, 2)),
        np.full(n, 33.0),
        {"channel_names": ["dapi", "membrane"], "n_neighbors": 25},
    )


def test_export_layout_and_round_trip(tmp_path):
    s = _store()
    path = mad.io.export_h5(s, tmp_path / "views.h5")
    with h5py.File(path) as f:
        assert f["morphology"].shape == (20, 14, 14, 2) and f["morphology"].dtype == np.uint8
        assert f["neighborhood"].shape == (20, 28, 28, 2)
        np.testing.assert_array_equal(f["cell_ids"][:], s.instance_id)
        np.testing.assert_array_equal(
            f["neighborhood"][3], s.microenvironment[3].transpose(1, 2, 0)
        )
    back = mad.io.import_h5(path)
    np.testing.assert_array_equal(back.morphology, s.morphology)
    np.testing.assert_array_equal(back.microenvironment, s.microenvironment)
    np.testing.assert_array_equal(back.instance_id, s.instance_id)
    np.testing.assert_allclose(back.centroid, s.centroid)
    assert back.channel_names == ["dapi", "membrane"] and back.attrs["n_neighbors"] == 25
    disk = mad.io.import_h5(path, store=tmp_path / "v.zarr", chunk_size=4, batch_size=8)
    np.testing.assert_array_equal(disk.batch([19, 0])[1], s.batch([19, 0])[1])


def test_export_from_a_zarr_store_in_storage_order(tmp_path):
    s = _store(n=24)
    disk = s.save(tmp_path / "s.zarr", chunk_size=8)
    path = mad.io.export_h5(str(tmp_path / "s.zarr"), tmp_path / "x.h5", batch_size=5)
    back = mad.io.import_h5(path)
    np.testing.assert_array_equal(back.morphology, disk.morphology[:])


def test_import_reference_file_without_extras(tmp_path):
    rng = np.random.default_rng(1)
    with h5py.File(tmp_path / "ref.h5", "w") as f:
        f["morphology"] = rng.integers(0, 256, (6, 70, 70, 4), dtype=np.uint8)
        f["neighborhood"] = rng.integers(0, 256, (6, 224, 224, 4), dtype=np.uint8)
        f["cell_ids"] = np.arange(6)
    s = mad.io.import_h5(tmp_path / "ref.h5", channel_names=["a", "b", "c", "d"])
    assert (s.morphology_size, s.microenvironment_size, s.n_channels) == (70, 224, 4)
    assert np.isnan(s.centroid).all() and s.channel_names == ["a", "b", "c", "d"]
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["morphology"] = np.zeros((2, 5, 5, 1), np.uint8)
        f["cell_ids"] = np.arange(2)
    with pytest.raises(KeyError, match="lacks the dataset 'neighborhood'"):
        mad.io.import_h5(tmp_path / "bad.h5")
    with h5py.File(tmp_path / "bad2.h5", "w") as f:
        f["morphology"] = np.zeros((2, 5, 5, 1), np.float32)
        f["neighborhood"] = np.zeros((2, 7, 7, 1), np.uint8)
        f["cell_ids"] = np.arange(2)
    with pytest.raises(ValueError, match="float32, expected uint8"):
        mad.io.import_h5(tmp_path / "bad2.h5")
