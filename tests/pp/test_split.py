"""mad.pp.split: group-aware, reproducible splits."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import madspatial as mad
from madspatial._constants import OBS_SPLIT


def _adata(n_groups=12, seed=0):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(20, 120, n_groups)
    groups = np.repeat([f"slide{i}" for i in range(n_groups)], sizes)
    return ad.AnnData(
        obs=pd.DataFrame(
            {"slide": pd.Categorical(groups)}, index=[str(i) for i in range(len(groups))]
        )
    )


def test_groups_are_never_split_and_fractions_are_close():
    adata = _adata(n_groups=30)
    mad.pp.split(adata, groupby="slide", fractions=(0.7, 0.15, 0.15), seed=1)
    split = adata.obs[OBS_SPLIT]
    assert list(split.cat.categories) == ["train", "val", "test"]
    per_group = adata.obs.groupby("slide", observed=True)[OBS_SPLIT].nunique()
    assert (per_group == 1).all()
    share = split.value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.7, abs=0.06)
    assert share["val"] == pytest.approx(0.15, abs=0.06) and share["test"] > 0
    info = adata.uns[OBS_SPLIT]
    assert info["groupby"] == "slide" and info["seed"] == 1
    names = [g for gs in info["groups"].values() for g in gs]
    assert sorted(names) == sorted(adata.obs["slide"].cat.categories)
    assert sum(info["n_cells"].values()) == adata.n_obs


def test_reproducible_and_seed_dependent():
    a, b, c = _adata(), _adata(), _adata()
    mad.pp.split(a, groupby="slide", seed=3)
    mad.pp.split(b, groupby="slide", seed=3)
    mad.pp.split(c, groupby="slide", seed=4)
    assert a.obs[OBS_SPLIT].equals(b.obs[OBS_SPLIT])
    assert not a.obs[OBS_SPLIT].equals(c.obs[OBS_SPLIT])


def test_every_split_gets_a_group_even_with_few_groups():
    adata = _adata(n_groups=3)
    mad.pp.split(adata, groupby="slide", fractions={"train": 0.8, "val": 0.1, "test": 0.1})
    assert (adata.obs[OBS_SPLIT].value_counts() > 0).all()
    with pytest.raises(ValueError, match=r"2 group\(s\).*3 splits"):
        mad.pp.split(_adata(n_groups=2), groupby="slide", fractions=(0.6, 0.2, 0.2))


def test_cellwise_split_has_exact_counts_and_copy():
    adata = _adata()
    out = mad.pp.split(adata, fractions=(0.75, 0.25), seed=0, copy=True, key_added="fold")
    assert "fold" not in adata.obs and out is not adata
    counts = out.obs["fold"].value_counts()
    n = adata.n_obs
    assert counts["train"] == round(0.75 * n) and counts.sum() == n


def test_spatialdata_table_and_bad_input():
    sdata = mad.io.sdata_from_arrays(np.zeros((1, 8, 8)), np.arange(64).reshape(8, 8) % 5)
    mad.pp.split(sdata, seed=0)
    assert OBS_SPLIT in sdata.tables["table"].obs
    adata = _adata()
    with pytest.raises(ValueError, match="sum to 1"):
        mad.pp.split(adata, fractions=(0.5, 0.4))
    with pytest.raises(ValueError, match="positive"):
        mad.pp.split(adata, fractions={"a": 1.2, "b": -0.2})
    with pytest.raises(KeyError, match="no column 'donor'"):
        mad.pp.split(adata, groupby="donor")
    adata.obs["slide"] = adata.obs["slide"].astype(object)
    adata.obs.iloc[0, 0] = None
    with pytest.raises(ValueError, match="1 missing values"):
        mad.pp.split(adata, groupby="slide")


def _grid_adata(side=40, spacing=10.0, slides=None):
    xs, ys = np.meshgrid(np.arange(side) * spacing, np.arange(side) * spacing)
    xy = np.stack([xs.ravel(), ys.ravel()], 1)
    obs = pd.DataFrame(index=[str(i) for i in range(len(xy))])
    if slides is not None:
        obs["slide"] = pd.Categorical(np.where(xy[:, 0] < side * spacing / 2, "a", "b"))
    a = ad.AnnData(obs=obs)
    a.obsm["spatial"] = xy
    return a


def test_spatial_blocks_keep_tiles_whole_and_guard_separates_train_from_test():
    from scipy.spatial import cKDTree

    a = _grid_adata()
    mad.pp.split(a, method="spatial_blocks", block_size=80.0, guard=25.0, seed=3)
    split = a.obs[OBS_SPLIT].astype(str).to_numpy()
    assert set(split) == {"train", "test", "guard"}
    xy = a.obsm["spatial"]
    # every 80 x 80 tile holds one split (guard cells are former training cells)
    tile = [tuple(t) for t in np.floor(xy / 80.0).astype(int)]
    per_tile = pd.DataFrame({"t": tile, "s": np.where(split == "guard", "train", split)})
    assert (per_tile.groupby("t")["s"].nunique() == 1).all()
    # no training cell within the guard distance of a test cell, and the band is not wider
    d, _ = cKDTree(xy[split == "test"]).query(xy[split == "train"])
    assert d.min() >= 25.0
    d_guard, _ = cKDTree(xy[split == "test"]).query(xy[split == "guard"])
    assert d_guard.max() < 25.0
    info = a.uns[OBS_SPLIT]
    assert info["method"] == "spatial_blocks" and info["guard"] == 25.0
    assert sum(info["n_blocks"].values()) == 25
    assert info["n_cells"]["guard"] == int((split == "guard").sum())
    assert sum(info["n_cells"].values()) == a.n_obs
    share_test = (split == "test").mean()
    assert 0.15 < share_test < 0.35  # whole tiles: 25% up to one tile's worth


def test_spatial_blocks_reproducible_seeded_and_no_guard_by_default():
    a, b, c = _grid_adata(), _grid_adata(), _grid_adata()
    for x, s in ((a, 0), (b, 0), (c, 1)):
        mad.pp.split(x, method="spatial_blocks", block_size=80.0, seed=s)
    assert (a.obs[OBS_SPLIT] == b.obs[OBS_SPLIT]).all()
    assert not (a.obs[OBS_SPLIT] == c.obs[OBS_SPLIT]).all()
    assert list(a.obs[OBS_SPLIT].cat.categories) == ["train", "test"]


def test_spatial_blocks_within_groups_never_span_two_slides():
    a = _grid_adata(slides=True)
    # tiles of 150 would straddle the slide border at x = 200 if groups were ignored
    mad.pp.split(a, method="spatial_blocks", block_size=150.0, groupby="slide", seed=0)
    tiles = np.floor(a.obsm["spatial"] / 150.0).astype(int)
    key = pd.Series([f"{s}{t[0]}_{t[1]}" for s, t in zip(a.obs["slide"], tiles)])
    assert (
        pd.DataFrame({"k": key, "s": a.obs[OBS_SPLIT].to_numpy()}).groupby("k")["s"].nunique() == 1
    ).all()
    assert sum(a.uns[OBS_SPLIT]["n_blocks"].values()) == 12  # 2 slides x 2 x 3 tiles


def test_spatial_blocks_bad_input():
    a = _grid_adata(side=10)
    with pytest.raises(ValueError, match="needs block_size"):
        mad.pp.split(a, method="spatial_blocks")
    with pytest.raises(ValueError, match="gives 1 block"):
        mad.pp.split(a, method="spatial_blocks", block_size=1e6)
    with pytest.raises(ValueError, match="only apply to method='spatial_blocks'"):
        mad.pp.split(a, block_size=10.0)
    with pytest.raises(ValueError, match="method must be one of"):
        mad.pp.split(a, method="blocks")
    with pytest.raises(ValueError, match="guard must be a number >= 0"):
        mad.pp.split(a, method="spatial_blocks", block_size=30.0, guard=-1)
    del a.obsm["spatial"]
    with pytest.raises(KeyError, match="needs cell coordinates"):
        mad.pp.split(a, method="spatial_blocks", block_size=30.0)
