"""UMAP of an embedding coloured by obs columns or genes (the layout comes from ``tl.umap``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._constants import OBSM_MAD
from .._docs import doc_params, doc_show
from ..tl._umap import umap_keys
from ._utils import finish

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


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


@doc_params(doc_show=doc_show)
def umap(
    adata: AnnData,
    *,
    use_rep: str = OBSM_MAD,
    color: str | Sequence[str] | None = None,
    ari_against: str | None = None,
    umap_key: str | None = None,
    title: str | Sequence[str] | None = None,
    ncols: int = 3,
    ax=None,
    show: bool | None = None,
    return_fig: bool = False,
    **kwargs,
) -> Figure | Axes | list[Axes] | None:
    """UMAP of an embedding coloured by obs columns or genes, with the ARI in the title on request.

    Plots only: the layout is ``obsm["X_umap_<use_rep>"]`` written by
    :func:`madspatial.tl.umap` (the paper's settings: cosine kNN graph of 30 neighbours,
    ``min_dist`` 0.1, seed 42), so UMAPs of several embeddings coexist. Drawing is
    scanpy's :func:`scanpy.pl.embedding`.

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
    umap_key
        Where the UMAP lives (default ``"X_umap_<use_rep>"``, as ``tl.umap`` writes it).
    title
        Panel title(s); default the colour key (plus the ARI).
    ncols
        Panels per row when several colours are given.
    ax
        Axes to draw into (a single colour only).
    {doc_show}
    **kwargs
        Passed to :func:`scanpy.pl.embedding` (``palette``, ``size``, ``legend_loc``, ...).

    Returns
    -------
    The Axes (one colour) or list of Axes (``show=False``), the Figure (``return_fig=True``) or
    None. scanpy stores its palettes in ``uns["<color>_colors"]``.
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
    key = umap_key or umap_keys(use_rep)[1]
    if key not in adata.obsm:
        if use_rep not in adata.obsm:
            raise KeyError(
                f"use_rep={use_rep!r} is not in adata.obsm (available: "
                f"{list(adata.obsm.keys())}); run mad.tl.embed first or pass the key of "
                "another embedding."
            )
        raise KeyError(
            f"no UMAP of {use_rep!r} in adata.obsm[{key!r}]: run "
            f"mad.tl.umap(adata, use_rep={use_rep!r}) first (plots do not compute)."
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
