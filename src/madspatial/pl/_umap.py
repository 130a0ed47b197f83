"""UMAP of an embedding, computed with the paper's settings when missing, per representation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._constants import OBSM_MAD, OBSM_UMAP_PREFIX, UNS_NEIGHBORS_PREFIX
from .._logging import added
from ._utils import finish

#: The paper's UMAP settings (Methods): cosine kNN graph of 30 neighbours, min_dist 0.1, seed 42.
UMAP_DEFAULTS = {"n_neighbors": 30, "metric": "cosine", "min_dist": 0.1, "random_state": 42}


def umap_keys(use_rep: str) -> tuple[str, str]:
    """``(neighbors_key, umap_key)`` where :func:`umap` keeps the graph and UMAP of ``use_rep``."""
    return UNS_NEIGHBORS_PREFIX + use_rep, OBSM_UMAP_PREFIX + use_rep


def compute_umap(
    adata,
    *,
    use_rep: str = OBSM_MAD,
    neighbors_key: str | None = None,
    umap_key: str | None = None,
    n_neighbors: int = UMAP_DEFAULTS["n_neighbors"],
    metric: str = UMAP_DEFAULTS["metric"],
    min_dist: float = UMAP_DEFAULTS["min_dist"],
    random_state: int = UMAP_DEFAULTS["random_state"],
    recompute: bool = False,
) -> str:
    """Make sure ``obsm[umap_key]`` holds a UMAP of ``obsm[use_rep]``; returns ``umap_key``.

    The neighbour graph goes to ``uns[neighbors_key]`` / ``obsp[neighbors_key + "_*"]`` and the
    UMAP to ``obsm[umap_key]`` (defaults from :func:`umap_keys`), so that the UMAPs of several
    embeddings (``X_mad``, ``X_mad_morphology``, a baseline, ...) coexist in one AnnData.
    Existing results are reused unless ``recompute``.
    """
    import scanpy as sc

    if use_rep not in adata.obsm:
        raise KeyError(
            f"use_rep={use_rep!r} is not in adata.obsm (available: {list(adata.obsm.keys())}); "
            "run mad.tl.embed first or pass the key of another embedding."
        )
    default_nk, default_uk = umap_keys(use_rep)
    neighbors_key = neighbors_key or default_nk
    umap_key = umap_key or default_uk
    if umap_key in adata.obsm and not recompute:
        return umap_key
    if neighbors_key not in adata.uns or recompute:
        sc.pp.neighbors(
            adata,
            use_rep=use_rep,
            n_neighbors=min(n_neighbors, adata.n_obs - 1),
            metric=metric,
            random_state=random_state,
            key_added=neighbors_key,
        )
        added(neighbors_key, "uns, obsp")
    sc.tl.umap(
        adata,
        min_dist=min_dist,
        random_state=random_state,
        neighbors_key=neighbors_key,
        key_added=umap_key,
    )
    # scanpy keeps only a/b; record what the layout was made from, for provenance
    adata.uns[umap_key]["params"].update(
        min_dist=min_dist, use_rep=use_rep, neighbors_key=neighbors_key
    )
    added(umap_key, "obsm")
    return umap_key


def _check_color(adata, color: str) -> None:
    if color in adata.obs or color in adata.var_names:
        return
    raise KeyError(
        f"color={color!r} is neither an obs column nor a gene of adata; obs columns: "
        f"{list(adata.obs.columns)}"
    )


def ari_title(adata, color: str, against: str) -> str | None:
    """``"ARI vs <against> = 0.52"`` for a categorical ``obs[color]``; None when not applicable."""
    from sklearn.metrics import adjusted_rand_score

    if color == against or color not in adata.obs:
        return None
    col = adata.obs[color]
    if not (isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object):
        return None  # continuous colours (genes, pseudotime) have no partition to compare
    ref = adata.obs[against]
    ok = (~pd.isna(col) & ~pd.isna(ref)).to_numpy()
    if ok.sum() < 2:
        return None
    score = adjusted_rand_score(np.asarray(ref.astype(str))[ok], np.asarray(col.astype(str))[ok])
    return f"ARI vs {against} = {score:.2f}"


def umap(
    adata,
    *,
    use_rep: str = OBSM_MAD,
    color: str | Sequence[str] | None = None,
    ari_against: str | None = None,
    neighbors_key: str | None = None,
    umap_key: str | None = None,
    n_neighbors: int = UMAP_DEFAULTS["n_neighbors"],
    min_dist: float = UMAP_DEFAULTS["min_dist"],
    metric: str = UMAP_DEFAULTS["metric"],
    random_state: int = UMAP_DEFAULTS["random_state"],
    recompute: bool = False,
    title: str | Sequence[str] | None = None,
    ncols: int = 3,
    ax=None,
    show: bool | None = None,
    return_fig: bool = False,
    **kwargs,
):
    """UMAP of an embedding coloured by obs columns or genes, with the ARI in the title on request.

    When missing, the neighbour graph and UMAP are computed with the paper's settings (cosine
    kNN graph of 30 neighbours, ``min_dist`` 0.1, seed 42) and stored under keys specific to
    ``use_rep`` (``uns``/``obsp["neighbors_<use_rep>..."]``, ``obsm["X_umap_<use_rep>"]``), so
    UMAPs of several embeddings coexist. Drawing is scanpy's :func:`scanpy.pl.embedding`.

    Parameters
    ----------
    adata
        AnnData with the embedding in ``obsm[use_rep]``. The graph and UMAP are written into it.
    use_rep
        Embedding to lay out (``X_mad``, ``X_mad_morphology``, ``X_mad_microenvironment``, ...).
    color
        obs column(s) or gene(s) to colour by; one panel each.
    ari_against
        obs column with reference labels (e.g. ``"cell_type"``): panels coloured by another
        categorical column (e.g. a Louvain clustering) get the adjusted Rand index in the title.
    neighbors_key, umap_key
        Where the graph and the UMAP live (default ``"neighbors_<use_rep>"``,
        ``"X_umap_<use_rep>"``); an existing UMAP under ``umap_key`` is reused.
    n_neighbors, min_dist, metric, random_state
        UMAP settings used when computing (paper: 30, 0.1, cosine, 42).
    recompute
        Recompute the graph and UMAP even when present.
    title
        Panel title(s); default the colour key (plus the ARI).
    ncols
        Panels per row when several colours are given.
    ax
        Axes to draw into (a single colour only).
    show
        Show the figure (default: when the backend is interactive).
    return_fig
        Return the Figure instead of the Axes.
    **kwargs
        Passed to :func:`scanpy.pl.embedding` (``palette``, ``size``, ``legend_loc``, ...).

    Returns
    -------
    The Axes (one colour) or list of Axes (``show=False``), the Figure (``return_fig=True``) or
    None. Writes ``obsm["X_umap_<use_rep>"]``, ``uns["X_umap_<use_rep>"]``,
    ``uns["neighbors_<use_rep>"]`` and ``obsp["neighbors_<use_rep>_{distances,connectivities}"]``
    when computed, and scanpy's ``uns["<color>_colors"]`` palettes.
    """
    import scanpy as sc

    colors = [color] if isinstance(color, str) or color is None else list(color)
    if not colors:
        raise ValueError("color is an empty list; pass an obs column or gene name.")
    for c in colors:
        if c is not None:
            _check_color(adata, c)
    if ari_against is not None and ari_against not in adata.obs:
        raise KeyError(
            f"ari_against={ari_against!r} is not an obs column; available: "
            f"{list(adata.obs.columns)}"
        )
    if ax is not None and len(colors) > 1:
        raise ValueError(f"ax= takes a single colour, got {len(colors)}: {colors}")
    key = compute_umap(
        adata,
        use_rep=use_rep,
        neighbors_key=neighbors_key,
        umap_key=umap_key,
        n_neighbors=n_neighbors,
        metric=metric,
        min_dist=min_dist,
        random_state=random_state,
        recompute=recompute,
    )
    titles = [title] * len(colors) if isinstance(title, str) else title
    if titles is None:
        titles = []
        for c in colors:
            t = c or use_rep
            extra = ari_title(adata, c, ari_against) if (ari_against and c) else None
            titles.append(f"{t}\n{extra}" if extra else t)
    elif len(titles) != len(colors):
        raise ValueError(f"{len(titles)} titles for {len(colors)} colours.")
    kwargs.setdefault("frameon", True)
    axes = sc.pl.embedding(
        adata,
        basis=key,
        color=colors if len(colors) > 1 else colors[0],
        title=list(titles) if len(colors) > 1 else titles[0],
        ncols=ncols,
        ax=ax,
        show=False,
        **kwargs,
    )
    axes_list = axes if isinstance(axes, list) else [axes]
    for a in axes_list:
        a.set_xlabel(f"UMAP 1 ({use_rep})")
        a.set_ylabel(f"UMAP 2 ({use_rep})")
    fig = axes_list[0].figure
    return finish(fig, axes, show=show, return_fig=return_fig)
