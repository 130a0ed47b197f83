"""``mad.tl.umap``: the neighbour graph and UMAP of one embedding, under keys of its own."""

from __future__ import annotations

from anndata import AnnData

from .._constants import OBSM_MAD, OBSM_UMAP_PREFIX, UNS_NEIGHBORS_PREFIX
from .._logging import added

#: The paper's UMAP settings (Methods): cosine kNN graph of 30 neighbours, min_dist 0.1, seed 42.
UMAP_DEFAULTS = {"n_neighbors": 30, "metric": "cosine", "min_dist": 0.1, "seed": 42}


def umap_keys(use_rep: str) -> tuple[str, str]:
    """``(neighbors_key, umap_key)`` where :func:`umap` keeps the graph and UMAP of ``use_rep``."""
    return UNS_NEIGHBORS_PREFIX + use_rep, OBSM_UMAP_PREFIX + use_rep


def umap(
    adata: AnnData,
    *,
    use_rep: str = OBSM_MAD,
    n_neighbors: int = UMAP_DEFAULTS["n_neighbors"],
    metric: str = UMAP_DEFAULTS["metric"],
    min_dist: float = UMAP_DEFAULTS["min_dist"],
    seed: int = UMAP_DEFAULTS["seed"],
    neighbors_key: str | None = None,
    key_added: str | None = None,
    recompute: bool = False,
    copy: bool = False,
) -> AnnData | None:
    """Neighbour graph and UMAP of ``obsm[use_rep]`` with the paper's settings.

    scanpy's :func:`scanpy.pp.neighbors` (cosine kNN graph of 30 neighbours) and
    :func:`scanpy.tl.umap` (``min_dist`` 0.1, seed 42), written under keys specific to
    ``use_rep`` so that the UMAPs of several embeddings (``X_mad``, ``X_mad_morphology``,
    a baseline, ...) coexist in one AnnData; :func:`madspatial.pl.umap` draws them.
    Existing results are kept unless ``recompute``.

    Parameters
    ----------
    adata
        AnnData with the embedding in ``obsm[use_rep]``.
    use_rep
        Embedding to lay out.
    n_neighbors, metric
        Neighbour graph (paper: 30, cosine); at most ``n_obs - 1`` neighbours are used.
    min_dist
        UMAP ``min_dist`` (paper: 0.1).
    seed
        Seed of the graph's approximate search and of the UMAP layout.
    neighbors_key
        Where the graph goes (default ``"neighbors_<use_rep>"``).
    key_added
        Where the UMAP goes (default ``"X_umap_<use_rep>"``).
    recompute
        Recompute the graph and the UMAP even when present.
    copy
        Work on a copy and return it.

    Returns
    -------
    None (or the copy). Writes ``uns["neighbors_<use_rep>"]``,
    ``obsp["neighbors_<use_rep>_distances"]``, ``obsp["neighbors_<use_rep>_connectivities"]``,
    ``obsm["X_umap_<use_rep>"]`` and ``uns["X_umap_<use_rep>"]`` (with the settings used).
    """
    import scanpy as sc

    adata = adata.copy() if copy else adata
    if use_rep not in adata.obsm:
        raise KeyError(
            f"use_rep={use_rep!r} is not in adata.obsm (available: {list(adata.obsm.keys())}); "
            "run mad.tl.embed first or pass the key of another embedding."
        )
    default_nk, default_uk = umap_keys(use_rep)
    neighbors_key = neighbors_key or default_nk
    umap_key = key_added or default_uk
    if umap_key in adata.obsm and not recompute:
        return adata if copy else None
    if neighbors_key not in adata.uns or recompute:
        sc.pp.neighbors(
            adata,
            use_rep=use_rep,
            n_neighbors=min(n_neighbors, adata.n_obs - 1),
            metric=metric,
            random_state=seed,
            key_added=neighbors_key,
        )
        added(neighbors_key, "uns, obsp")
    sc.tl.umap(
        adata, min_dist=min_dist, random_state=seed, neighbors_key=neighbors_key, key_added=umap_key
    )
    # scanpy keeps only a/b; record what the layout was made from, for provenance
    adata.uns[umap_key]["params"].update(
        min_dist=min_dist, use_rep=use_rep, neighbors_key=neighbors_key, seed=seed
    )
    added(umap_key, "obsm")
    return adata if copy else None
