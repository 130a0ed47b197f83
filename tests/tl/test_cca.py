import anndata as ad
import numpy as np
import pandas as pd
import pytest

from madspatial.tl._cca import cca


def _planted(n=400, shared=True, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    emb = z @ rng.normal(size=(2, 12)) + 0.3 * rng.normal(size=(n, 12))
    z2 = z if shared else rng.normal(size=(n, 2))
    expr = z2 @ rng.normal(size=(2, 15)) + 0.3 * rng.normal(size=(n, 15))
    group = np.digitize(z[:, 0], [-1, 0, 1])  # groups ordered along a shared axis
    adata = ad.AnnData(
        expr.astype(np.float32),
        obs=pd.DataFrame({"g": [f"g{i}" for i in group]}, index=[f"c{i}" for i in range(n)]),
    )
    adata.obsm["X_mad"] = emb.astype(np.float32)
    return adata


def test_cca_finds_a_planted_correlation():
    adata = _planted()
    cca(adata, n_components=3, groupby="g", seed=0)
    res = adata.uns["mad_cca"]
    assert res["correlations"][:2].min() > 0.9  # two shared latent dimensions
    assert res["correlations"][2] < 0.5
    assert res["params"]["normalize"] == "none" and res["params"]["n_test"] == 120
    assert adata.obsm["X_mad_cca"].shape == (400, 3) == adata.obsm["X_mad_cca_expression"].shape
    assert res["groups"]["correlations"][0] > 0.95
    assert res["groups"]["embedding"].shape == (4, 3)
    r = np.corrcoef(adata.obsm["X_mad_cca"][:, 0], adata.obsm["X_mad_cca_expression"][:, 0])[0, 1]
    assert r > 0.9


def test_cca_held_out_correlation_is_low_for_unrelated_spaces():
    adata = _planted(shared=False)
    out = cca(adata, n_components=2, copy=True)
    assert "mad_cca" not in adata.uns
    res = out.uns["mad_cca"]
    assert abs(res["correlations"][0]) < 0.3
    assert res["correlations_train"][0] > res["correlations"][0]  # in-sample optimism


def test_cca_bad_input():
    adata = _planted(n=60)
    with pytest.raises(KeyError, match="available"):
        cca(adata, use_rep="X_nope")
    with pytest.raises(KeyError, match=r"layer=.counts. is not in adata\.layers"):
        cca(adata, layer="counts")
    adata.X[:] = 1.0
    with pytest.raises(ValueError, match="all genes are constant"):
        cca(adata)
