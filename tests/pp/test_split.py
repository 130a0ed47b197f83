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
