from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import madspatial as mad
from madspatial.tl._umap import umap_keys


def test_umap_computes_per_rep_keys_and_shows_ari(embedded_adata):
    a = embedded_adata
    with pytest.raises(KeyError, match=r"run mad\.tl\.umap\(adata, use_rep='X_mad'\) first"):
        mad.pl.umap(a, color="cell_type", show=False)  # plots do not compute
    assert mad.tl.umap(a) is None
    axes = mad.pl.umap(
        a, color=["cell_type", "mad_louvain", "score"], ari_against="cell_type", show=False
    )
    nk, uk = umap_keys("X_mad")
    assert uk == "X_umap_X_mad" and uk in a.obsm and a.obsm[uk].shape == (a.n_obs, 2)
    params = a.uns[nk]["params"]
    assert params["metric"] == "cosine" and params["n_neighbors"] == 30
    assert a.uns[uk]["params"]["min_dist"] == 0.1
    assert a.uns[uk]["params"]["seed"] == 42
    assert len(axes) == 3
    expected = adjusted_rand_score(a.obs["cell_type"], a.obs["mad_louvain"])
    assert axes[1].get_title() == f"mad_louvain\nARI vs cell_type = {expected:.2f}"
    assert "ARI" not in axes[0].get_title()  # the reference itself
    assert "ARI" not in axes[2].get_title()  # continuous: no partition
    assert axes[0].get_xlabel() == "UMAP 1 (X_mad)"
    # the three groups are far apart in X_mad; their UMAP clouds do not overlap
    emb = a.obsm[uk]
    cents = np.stack([emb[a.obs["cell_type"] == t].mean(0) for t in ("T", "B", "epi")])
    spread = max(emb[a.obs["cell_type"] == t].std(0).max() for t in ("T", "B", "epi"))
    d = np.linalg.norm(cents[:, None] - cents[None], axis=-1)[np.triu_indices(3, 1)]
    assert d.min() > 2 * spread

    # a second representation coexists; an existing UMAP is reused, not recomputed
    first = a.obsm[uk].copy()
    mad.tl.umap(a, use_rep="X_mad_morphology")
    mad.tl.umap(a)  # kept, not recomputed
    ax = mad.pl.umap(a, use_rep="X_mad_morphology", color="cell_type", show=False)
    assert "X_umap_X_mad_morphology" in a.obsm and "neighbors_X_mad_morphology" in a.uns
    assert ax.get_xlabel() == "UMAP 1 (X_mad_morphology)"
    fig = mad.pl.umap(a, color="cell_type", return_fig=True)
    assert isinstance(fig, plt.Figure)
    np.testing.assert_array_equal(a.obsm[uk], first)


def test_umap_bad_keys(embedded_adata):
    a = embedded_adata
    a.obsm["X_umap_X_mad"] = np.zeros((a.n_obs, 2))  # no computation needed for these checks
    with pytest.raises(KeyError, match=r"X_nope.*mad\.tl\.embed"):
        mad.pl.umap(a, use_rep="X_nope", color="cell_type", show=False)
    with pytest.raises(KeyError, match=r"X_nope.*mad\.tl\.embed"):
        mad.tl.umap(a, use_rep="X_nope")
    with pytest.raises(KeyError, match="'nope' is neither"):
        mad.pl.umap(a, color="nope", show=False)
    with pytest.raises(KeyError, match="ari_against"):
        mad.pl.umap(a, color="mad_louvain", ari_against="truth", show=False)
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="single colour"):
        mad.pl.umap(a, color=["cell_type", "mad_louvain"], ax=ax, show=False)
    # draws into a given Axes
    out = mad.pl.umap(a, color="mad_louvain", ari_against="cell_type", ax=ax, show=False)
    assert out is ax and "ARI" in ax.get_title()


def test_tl_umap_copy_and_seed(embedded_adata):
    a = embedded_adata.copy()
    b = mad.tl.umap(a, use_rep="X_mad_morphology", seed=1, copy=True)
    assert "X_umap_X_mad_morphology" not in a.obsm and "X_umap_X_mad_morphology" in b.obsm
    c = mad.tl.umap(a, use_rep="X_mad_morphology", seed=1, copy=True)
    np.testing.assert_array_equal(
        b.obsm["X_umap_X_mad_morphology"], c.obsm["X_umap_X_mad_morphology"]
    )
    d = mad.tl.umap(a, use_rep="X_mad_morphology", seed=2, copy=True)
    assert not np.array_equal(b.obsm["X_umap_X_mad_morphology"], d.obsm["X_umap_X_mad_morphology"])
    assert b.uns["X_umap_X_mad_morphology"]["params"]["use_rep"] == "X_mad_morphology"
