"""mad.tl.pretrain(cells=...): train on a subset of the table's rows, reading only them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import madspatial as mad
from madspatial.train._data import RowSubset, derive_seed, pixel_statistics, resolve_cells

from ..conftest import TINY_TRAIN

SMALL = {
    **TINY_TRAIN,
    "model": "vit_pico",
    "batch_size": 8,
    "n_prototypes": 32,
    "head_hidden_dim": 16,
    "n_local": 0,
    "n_holdout": 8,
    "precision": "fp32",
}

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # short runs: weak signal


class _Recorder:
    """A view store that records every table row read from it."""

    def __init__(self, store):
        self._store = store
        self.rows: set[int] = set()

    def __getattr__(self, name):
        return getattr(self._store, name)

    def __len__(self):
        return len(self._store)

    def batch(self, idx):
        self.rows.update(np.asarray(idx).reshape(-1).tolist())
        return self._store.batch(idx)

    @property
    def morphology(self):
        return _RecArray(self._store.morphology, self.rows)

    @property
    def microenvironment(self):
        return _RecArray(self._store.microenvironment, self.rows)


class _RecArray:
    def __init__(self, arr, rows):
        self._arr, self._rows = arr, rows
        self.shape, self.dtype = arr.shape, arr.dtype

    def __getitem__(self, key):
        k = key[0] if isinstance(key, tuple) else key
        self._rows.update(np.arange(self.shape[0])[k].reshape(-1).tolist())
        return self._arr[key]


@pytest.fixture(scope="module")
def views_table(tissue_views):
    table = tissue_views.tables["table"]
    n = table.n_obs
    table.obs["train"] = np.arange(n) % 3 != 0
    table.obs["part"] = pd.Categorical(np.where(np.arange(n) < n // 2, "a", "b"))
    return table


@pytest.mark.parametrize("mode", ["mad", "morphology"])
def test_only_selected_rows_are_read(views_table, tmp_path, mode):
    store = _Recorder(mad.io.read_views(views_table))
    n = len(store)
    rows = np.flatnonzero(np.arange(n) % 4 == 1)
    model = mad.tl.pretrain(
        store, cells=rows, mode=mode, max_steps=2, checkpoint_dir=tmp_path / "m", **SMALL
    )
    assert store.rows and store.rows <= set(rows.tolist())
    # the held-out Recall@K set and the pixel statistics come from the selection
    assert model.history["n_holdout"] == 8
    assert model.config.metadata["training"]["n_cells"] == len(rows)
    views = ["microenvironment"] if mode == "mad" else ["morphology"]
    mean, std = pixel_statistics(
        mad.io.read_views(views_table).subset(rows), views, seed=derive_seed(0, 0, 0, 3)
    )
    np.testing.assert_allclose(model.config.pixel_mean, mean)
    np.testing.assert_allclose(model.config.pixel_std, std)


def test_zarr_store_subset_reads_only_selected_chunks(views_table, tmp_path, monkeypatch):
    import madspatial.io._views as V

    store = mad.io.read_views(views_table).save(tmp_path / "v.zarr", chunk_size=16)
    seen: list[np.ndarray] = []
    orig = V._read_rows

    def spy(raw, pos):
        seen.append(np.asarray(pos))
        return orig(raw, pos)

    monkeypatch.setattr(V, "_read_rows", spy)
    rows = np.arange(40, 120)  # chunks 2..7 of 16 cells
    mad.tl.pretrain(
        str(store.path), cells=rows, max_steps=2, checkpoint_dir=tmp_path / "m", **SMALL
    )
    got = np.concatenate(seen)
    assert got.size and got.min() >= 40 and got.max() < 120


@pytest.mark.parametrize(
    "cells",
    ["train", ("part", "a"), ("part", ["a"]), "mask", "index"],
)
def test_selection_forms_agree(views_table, cells):
    n = views_table.n_obs
    mask = views_table.obs["train"].to_numpy()
    if cells == "mask":
        cells, want = mask, np.flatnonzero(mask)
    elif cells == "index":
        cells, want = np.flatnonzero(mask)[::-1].copy(), np.flatnonzero(mask)
    elif cells == "train":
        want = np.flatnonzero(mask)
    else:
        want = np.arange(n // 2)
    np.testing.assert_array_equal(resolve_cells(cells, n, views_table.obs), want)


def test_selection_errors(views_table, tmp_path):
    n = views_table.n_obs
    obs = views_table.obs
    with pytest.raises(ValueError, match=rf"mask of length 5, but the table has {n} rows"):
        resolve_cells(np.ones(5, bool), n, obs)
    with pytest.raises(KeyError, match="no obs column 'nope'"):
        resolve_cells("nope", n, obs)
    with pytest.raises(KeyError, match="no obs column 'nope'"):
        resolve_cells(("nope", 1), n, obs)
    with pytest.raises(ValueError, match="selects no cells"):
        resolve_cells(np.zeros(n, bool), n, obs)
    with pytest.raises(ValueError, match=r"selects no cells: no row has obs\['part'\] in \['z'\]"):
        resolve_cells(("part", "z"), n, obs)
    with pytest.raises(ValueError, match="selects no cells"):
        resolve_cells([], n, obs)
    with pytest.raises(TypeError, match="has dtype category, not bool"):
        resolve_cells("part", n, obs)
    with pytest.raises(IndexError, match=rf"in 0..{n - 1}"):
        resolve_cells([0, n], n, obs)
    with pytest.raises(ValueError, match="repeated"):
        resolve_cells([1, 1], n, obs)
    with pytest.raises(ValueError, match="has no table"):
        resolve_cells("train", n, None)
    # through tl.pretrain, before any training
    with pytest.raises(KeyError, match="no obs column 'nope'"):
        mad.tl.pretrain(views_table, cells="nope", checkpoint_dir=tmp_path, **SMALL)


def test_selection_is_part_of_the_run(views_table, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table = views_table.copy()
    mad.tl.pretrain(table, cells="train", max_steps=1, **SMALL)
    first = table.uns["mad"]["model"]
    mad.tl.pretrain(table, cells=("part", "a"), max_steps=1, **SMALL)
    second = table.uns["mad"]["model"]
    mad.tl.pretrain(table, max_steps=1, **SMALL)
    assert len({first, second, table.uns["mad"]["model"]}) == 3
    # an explicit folder holding another selection is not resumed
    with pytest.raises(ValueError, match="cells"):
        mad.tl.pretrain(table, cells="train", max_steps=1, checkpoint_dir=second, **SMALL)


def test_row_subset_is_lazy_and_maps_rows(views_table):
    store = mad.io.read_views(views_table)
    rows = np.array([3, 10, 11, 50])
    sub = RowSubset(store, rows)
    assert len(sub) == 4 and sub.morphology.shape[0] == 4
    np.testing.assert_array_equal(sub.morphology[[1, 3]], store.morphology[[10, 50]])
    np.testing.assert_array_equal(sub.batch([2])[1], store.batch([11])[1])
    np.testing.assert_array_equal(sub.instance_id, store.instance_id[rows])
