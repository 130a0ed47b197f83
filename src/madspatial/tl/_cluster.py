"""Unsupervised clusters of an embedding: Louvain on a kNN graph, and k-means."""

from __future__ import annotations

import contextlib
import random
import warnings
from typing import Literal

import igraph
import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors

from .._constants import OBS_KMEANS, OBS_LOUVAIN, OBSM_MAD
from .._docs import doc_adata_rep, doc_obs_key_copy, doc_params
from .._logging import added
from .._settings import settings
from .._warnings import user_stacklevel as _user_stacklevel
from ._inputs import get_rep

# floor of cosine edge weights: neighbours with similarity <= 0 (rare in a kNN list) stay
# connected, weakly, instead of leaving isolated cells that would become singleton clusters
_MIN_WEIGHT = 1e-3


def knn_graph(
    X: np.ndarray, *, n_neighbors: int = 30, metric: Literal["cosine", "euclidean"] = "cosine"
) -> sparse.csr_matrix:
    """Symmetric similarity-weighted kNN graph of the rows of ``X``.

    ``"cosine"``: edge weight = cosine similarity of the two cells (floored at 1e-3).
    ``"euclidean"``: a self-tuning Gaussian kernel ``exp(-d^2 / (s_i s_j))`` with ``s_i``
    the distance from cell ``i`` to its ``n_neighbors``-th neighbour. The graph is made
    symmetric by keeping the larger weight of ``i -> j`` and ``j -> i``.
    """
    n = X.shape[0]
    if not 1 <= n_neighbors < n:
        raise ValueError(
            f"n_neighbors must be in [1, n_cells - 1] = [1, {n - 1}], got {n_neighbors}."
        )
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}.")
    nn = NearestNeighbors(n_neighbors=n_neighbors, metric=metric)
    nn.fit(X)
    dist, idx = nn.kneighbors()  # without X: each cell's own row is excluded
    if metric == "cosine":
        w = np.clip(1.0 - dist, _MIN_WEIGHT, 1.0)
    else:
        sigma = np.maximum(dist[:, -1], 1e-12)
        w = np.exp(-(dist**2) / (sigma[:, None] * sigma[idx]))
        w = np.maximum(w, _MIN_WEIGHT)
    rows = np.repeat(np.arange(n), n_neighbors)
    graph = sparse.csr_matrix((w.ravel(), (rows, idx.ravel())), shape=(n, n))
    return graph.maximum(graph.T).tocsr()


def multilevel(
    graph: sparse.spmatrix, *, resolution: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, float]:
    """Find igraph's Louvain (multilevel) communities of a weighted graph, reproducibly.

    Returns labels ordered by community size (0 = largest) and the modularity.
    """
    upper = sparse.triu(graph, k=1).tocoo()
    g = igraph.Graph(n=graph.shape[0], edges=np.column_stack([upper.row, upper.col]).tolist())
    with seeded_python_random(seed) as drew:
        parts = g.community_multilevel(weights=upper.data.tolist(), resolution=resolution)
        if not drew() and g.vcount() > 1:
            warnings.warn(
                "igraph draws from a generator set with igraph.set_random_number_generator, "
                f"not from Python's random module, so seed={seed} does not make these "
                "clusters reproducible; call igraph.set_random_number_generator(random) "
                "to let madspatial seed it.",
                UserWarning,
                stacklevel=_user_stacklevel(),
            )
    return order_by_size(np.asarray(parts.membership)), float(parts.modularity)


@contextlib.contextmanager
def seeded_python_random(seed: int):
    """Seed Python's ``random`` module for the block, then put its state back.

    igraph's default generator is Python's ``random`` module (it shuffles the vertex
    order of Louvain with it). Seeding that module and restoring its state leaves all
    global state as it was: igraph's generator (there is no getter, so swapping it, as
    before, could not restore a generator the user had set) and ``random``'s sequence.
    Yields a function telling whether anything drew from ``random`` in the block.
    """
    state = random.getstate()
    random.seed(seed)
    seeded = random.getstate()
    try:
        yield lambda: random.getstate() != seeded
    finally:
        random.setstate(state)


def order_by_size(labels: np.ndarray) -> np.ndarray:
    """Relabel clusters 0..k-1 by decreasing size (ties: by first appearance)."""
    uniq, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    new = np.empty(len(uniq), dtype=np.int64)
    new[order] = np.arange(len(uniq))
    return new[np.searchsorted(uniq, labels)]


def _as_categorical(labels: np.ndarray) -> pd.Categorical:
    k = int(labels.max()) + 1
    return pd.Categorical.from_codes(labels, categories=[str(i) for i in range(k)])


def _maybe_pca(X: np.ndarray, n_pcs: int | None, seed: int) -> np.ndarray:
    if n_pcs is None or n_pcs >= min(X.shape):
        return X
    return PCA(n_components=n_pcs, random_state=seed).fit_transform(X)


@doc_params(doc_adata_rep=doc_adata_rep, doc_obs_key_copy=doc_obs_key_copy)
def louvain(
    adata: AnnData,
    *,
    use_rep: str = OBSM_MAD,
    n_neighbors: int = 30,
    resolution: float = 1.0,
    metric: Literal["cosine", "euclidean"] = "cosine",
    n_pcs: int | None = None,
    seed: int | None = None,
    key_added: str = OBS_LOUVAIN,
    copy: bool = False,
) -> AnnData | None:
    """Louvain clusters of an embedding (igraph multilevel on a kNN similarity graph).

    Each cell is linked to its ``n_neighbors`` nearest cells in ``obsm[use_rep]``,
    edges weighted by a similarity kernel (cosine similarity by default, a
    self-tuning Gaussian for ``metric="euclidean"``), and igraph's multilevel
    modularity optimisation splits the graph. Neither scanpy's neighbours in
    ``.obsp`` nor any extra package is touched.

    Parameters
    ----------
    {doc_adata_rep}
    n_neighbors
        Neighbours per cell in the graph (30 as in the paper's UMAP/graph settings).
    resolution
        Modularity resolution: higher values give more, smaller clusters.
    metric
        ``"cosine"`` or ``"euclidean"`` (see above).
    n_pcs
        Reduce the embedding to this many principal components first (the paper's
        optional denoising step); ``None`` uses it as is.
    seed
        Seed of igraph's vertex shuffling (default ``mad.settings.seed``); the same seed
        gives the same clusters. igraph draws from Python's ``random`` module, which is
        seeded for the call and then restored (its sequence, and igraph's generator, are
        left as they were; with a generator of your own set in igraph, a warning says the
        seed has no effect).
    {doc_obs_key_copy}

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Writes

    - ``.obs[key_added]``: categorical cluster labels ``"0"``, ``"1"``, ... by
      decreasing size;
    - ``.uns[key_added]``: ``{"params": {...}, "modularity": float, "n_clusters": int}``.
    """
    adata = adata.copy() if copy else adata
    seed = settings.seed if seed is None else seed
    X = _maybe_pca(get_rep(adata, use_rep), n_pcs, seed)
    graph = knn_graph(X, n_neighbors=n_neighbors, metric=metric)
    labels, modularity = multilevel(graph, resolution=resolution, seed=seed)
    adata.obs[key_added] = _as_categorical(labels)
    adata.uns[key_added] = {
        "params": {
            "use_rep": use_rep,
            "n_neighbors": n_neighbors,
            "resolution": resolution,
            "metric": metric,
            "n_pcs": n_pcs,
            "seed": seed,
        },
        "modularity": modularity,
        "n_clusters": int(labels.max()) + 1,
    }
    added(key_added, "obs")
    added(key_added, "uns")
    return adata if copy else None


def kmeans_labels(
    X: np.ndarray, n_clusters: int, *, n_init: int = 10, seed: int = 0
) -> tuple[np.ndarray, float]:
    """k-means labels (ordered by size) and inertia: best of ``n_init`` restarts."""
    if not 1 <= n_clusters <= X.shape[0]:
        raise ValueError(
            f"n_clusters must be in [1, n_cells] = [1, {X.shape[0]}], got {n_clusters}."
        )
    km = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed).fit(X)
    return order_by_size(km.labels_), float(km.inertia_)


@doc_params(doc_adata_rep=doc_adata_rep, doc_obs_key_copy=doc_obs_key_copy)
def kmeans(
    adata: AnnData,
    *,
    use_rep: str = OBSM_MAD,
    n_clusters: int | None = None,
    k_range: tuple[int, int] = (2, 15),
    n_init: int = 10,
    n_pcs: int | None = None,
    silhouette_sample: int | None = 2000,
    seed: int | None = None,
    key_added: str = OBS_KMEANS,
    copy: bool = False,
) -> AnnData | None:
    """k-means clusters of an embedding, with k given or chosen by silhouette.

    The best of ``n_init`` restarts (lowest within-cluster sum of squares) is kept.
    With ``n_clusters=None``, every k in ``k_range`` is fitted and the k with the
    highest silhouette score (Euclidean, on a random sample of cells for speed)
    is used; the whole sweep is recorded.

    Parameters
    ----------
    {doc_adata_rep}
    n_clusters
        Number of clusters, or ``None`` to pick it by silhouette.
    k_range
        Smallest and largest k of the sweep (inclusive; capped at ``n_cells - 1``).
    n_init
        Random restarts per k.
    n_pcs
        Reduce the embedding to this many principal components first; ``None``: as is.
    silhouette_sample
        Cells the silhouette is computed on (``None``: all; it costs O(n^2)).
    seed
        Seed of the initialisations and of the silhouette sample (default
        ``mad.settings.seed``).
    {doc_obs_key_copy}

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Writes

    - ``.obs[key_added]``: categorical labels ``"0"``, ``"1"``, ... by decreasing size;
    - ``.uns[key_added]``: ``{"params": {...}, "n_clusters": int, "inertia": float}`` and,
      for a sweep, ``"sweep": {"k": [...], "silhouette": [...], "inertia": [...]}``.
    """
    adata = adata.copy() if copy else adata
    seed = settings.seed if seed is None else seed
    X = _maybe_pca(get_rep(adata, use_rep), n_pcs, seed)
    info: dict = {}
    if n_clusters is None:
        lo, hi = int(k_range[0]), min(int(k_range[1]), X.shape[0] - 1)
        if lo < 2 or hi < lo:
            raise ValueError(
                f"k_range={tuple(k_range)} gives no k to try with {X.shape[0]} cells; the "
                "silhouette needs 2 <= k <= n_cells - 1."
            )
        sweep = {"k": [], "silhouette": [], "inertia": []}
        fits = {}
        for k in range(lo, hi + 1):
            labels, inertia = kmeans_labels(X, k, n_init=n_init, seed=seed)
            sample = None if silhouette_sample is None else min(silhouette_sample, X.shape[0])
            sil = (
                silhouette_score(X, labels, sample_size=sample, random_state=seed)
                if len(np.unique(labels)) > 1
                else float("nan")
            )
            sweep["k"].append(k)
            sweep["silhouette"].append(float(sil))
            sweep["inertia"].append(inertia)
            fits[k] = (labels, inertia)
        best = sweep["k"][int(np.nanargmax(sweep["silhouette"]))]
        labels, inertia = fits[best]
        info["sweep"] = sweep
    else:
        labels, inertia = kmeans_labels(X, n_clusters, n_init=n_init, seed=seed)
    adata.obs[key_added] = _as_categorical(labels)
    adata.uns[key_added] = {
        "params": {
            "use_rep": use_rep,
            "n_clusters": n_clusters,
            "k_range": list(k_range),
            "n_init": n_init,
            "n_pcs": n_pcs,
            "seed": seed,
        },
        "n_clusters": int(labels.max()) + 1,
        "inertia": inertia,
        **info,
    }
    added(key_added, "obs")
    added(key_added, "uns")
    return adata if copy else None
