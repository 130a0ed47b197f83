import anndata as ad
import numpy as np
import pandas as pd
import pytest

from madspatial.tl._pseudotime import pseudotime


def _trajectory(n=300, seed=0):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 1, n))
    curve = np.column_stack([np.cos(3 * t), np.sin(3 * t), 2 * t, t**2])
    emb = curve @ rng.normal(size=(4, 10)) + 0.03 * rng.normal(size=(n, 10))
    # 20 genes rising or falling along t, with Poisson noise
    slopes = rng.normal(scale=2.0, size=20)
    expr = rng.poisson(np.exp(3.0 + np.outer(t - 0.5, slopes)))
    stage = np.where(t < 0.15, "early", np.where(t < 0.7, "mid", "late"))
    ref = t.copy()
    ref[::10] = np.nan  # the reference is unknown for some cells
    adata = ad.AnnData(
        expr.astype(np.float32),
        obs=pd.DataFrame({"stage": stage, "truth": ref}, index=[f"c{i}" for i in range(n)]),
    )
    adata.obsm["X_mad"] = emb.astype(np.float32)
    return adata, t


def test_pseudotime_follows_a_planted_trajectory():
    adata, t = _trajectory()
    adata.uns["neighbors"] = {"mine": True}
    pseudotime(adata, root=int(np.argmin(t)), expression="X", reference="truth")
    pt = adata.obs["mad_pseudotime"].to_numpy()
    assert pt.min() == 0 and np.isfinite(pt).all()
    info = adata.uns["mad_pseudotime"]
    assert info["root"] == adata.obs_names[np.argmin(t)]
    assert info["reference"]["spearman"] > 0.9 and info["reference"]["n_cells"] == 270
    assert info["expression"]["spearman"] > 0.8
    assert adata.uns["neighbors"] == {"mine": True}  # the user's graph is untouched
    assert "connectivities" not in adata.obsp


def test_root_group_and_automatic_root():
    adata, t = _trajectory()
    pseudotime(adata, root_group="early", groupby="stage", reference="truth")
    info = adata.uns["mad_pseudotime"]
    assert adata.obs.loc[info["root"], "stage"] == "early"
    assert info["reference"]["spearman"] > 0.9
    auto = pseudotime(adata, root="c5", copy=True)
    assert auto.uns["mad_pseudotime"]["root_index"] == 5
    pseudotime(adata, key_added="auto")
    r = np.corrcoef(np.argsort(np.argsort(adata.obs["auto"])), np.argsort(np.argsort(t)))[0, 1]
    assert abs(r) > 0.9  # an end of the trajectory; the direction is arbitrary


def test_pseudotime_bad_input():
    adata, _ = _trajectory(n=50)
    with pytest.raises(KeyError, match="root_group='nope' is not a value"):
        pseudotime(adata, root_group="nope", groupby="stage")
    with pytest.raises(ValueError, match="root_group needs groupby"):
        pseudotime(adata, root_group="early")
    with pytest.raises(KeyError, match=r"not in adata\.obs_names"):
        pseudotime(adata, root="zzz")
    with pytest.raises(KeyError, match="'stag' is not a column"):
        pseudotime(adata, root_group="early", groupby="stag")
