import numpy as np
import pytest

from madspatial import metrics
from madspatial.tl import _cluster as cl


def test_louvain_recovers_blobs_and_is_reproducible(toy_embedding_adata):
    adata = toy_embedding_adata()
    cl.louvain(adata, n_neighbors=15, seed=1)
    labels = adata.obs["mad_louvain"]
    assert labels.dtype == "category"
    assert metrics.ari(adata.obs["cell_type"], labels) > 0.95
    info = adata.uns["mad_louvain"]
    assert info["n_clusters"] == labels.nunique() and info["params"]["seed"] == 1
    assert 0 < info["modularity"] < 1
    counts = labels.value_counts().reindex(labels.cat.categories).to_numpy()
    assert (np.diff(counts) <= 0).all()  # "0" is the largest cluster
    again = cl.louvain(adata, n_neighbors=15, seed=1, copy=True)
    np.testing.assert_array_equal(again.obs["mad_louvain"], labels)


def test_louvain_resolution_and_euclidean_kernel(toy_embedding_adata):
    adata = toy_embedding_adata()
    cl.louvain(adata, n_neighbors=15, metric="euclidean", key_added="eu")
    assert metrics.ari(adata.obs["cell_type"], adata.obs["eu"]) > 0.95
    cl.louvain(adata, n_neighbors=15, resolution=5.0, key_added="fine")
    assert adata.obs["fine"].nunique() > adata.obs["eu"].nunique()


def test_knn_graph_is_symmetric_and_weighted():
    rng = np.random.default_rng(0)
    g = cl.knn_graph(rng.normal(size=(30, 4)), n_neighbors=5)
    assert (abs(g - g.T) > 1e-12).nnz == 0
    assert g.diagonal().sum() == 0
    assert (g.data > 0).all() and (g.data <= 1).all()
    assert (np.diff(g.indptr) >= 5).all()


def test_kmeans_fixed_k_and_sweep(toy_embedding_adata):
    adata = toy_embedding_adata(n_types=4)
    cl.kmeans(adata, n_clusters=4, seed=0)
    assert metrics.ari(adata.obs["cell_type"], adata.obs["mad_kmeans"]) > 0.95
    cl.kmeans(adata, k_range=(2, 6), key_added="swept", seed=0)
    sweep = adata.uns["swept"]["sweep"]
    assert sweep["k"] == [2, 3, 4, 5, 6]
    assert adata.uns["swept"]["n_clusters"] == 4 == sweep["k"][int(np.argmax(sweep["silhouette"]))]
    again = cl.kmeans(adata, k_range=(2, 6), key_added="swept", seed=0, copy=True)
    np.testing.assert_array_equal(again.obs["swept"], adata.obs["swept"])


def test_order_by_size():
    np.testing.assert_array_equal(
        cl.order_by_size(np.array([5, 5, 2, 9, 9, 9])), [1, 1, 2, 0, 0, 0]
    )


def test_cluster_bad_input(toy_embedding_adata):
    adata = toy_embedding_adata(n_per=10)
    with pytest.raises(KeyError, match=r"available: \['X_mad', 'X_mad_microenvironment'"):
        cl.louvain(adata, use_rep="X_nope")
    adata.obsm["X_mad"][[2, 5, 7]] = np.nan
    with pytest.raises(ValueError, match="NaN/inf in 3 of 30 rows"):
        cl.kmeans(adata, n_clusters=2)
    with pytest.raises(ValueError, match="n_neighbors must be"):
        cl.louvain(adata, use_rep="X_mad_morphology", n_neighbors=30)
