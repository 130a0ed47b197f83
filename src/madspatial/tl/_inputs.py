"""Reading embeddings, labels and expression out of AnnData, with errors that say the fix.

Shared by the downstream tools (clustering, decoders, CCA, pseudotime, DE, evaluate).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._logging import logger

EXPRESSION = "expression"  # the target/expression name meaning ".X (or the given layer)"


def get_rep(adata: AnnData, use_rep: str) -> np.ndarray:
    """``adata.obsm[use_rep]`` (or ``.X`` for ``"X"``) as a dense, finite float array."""
    if not isinstance(adata, AnnData):
        raise TypeError(
            f"expected an AnnData, got {type(adata).__name__}; for a SpatialData pass its "
            "table, e.g. sdata.tables['table']."
        )
    if use_rep == "X":
        x = adata.X
    elif use_rep in adata.obsm:
        x = adata.obsm[use_rep]
    else:
        raise KeyError(
            f"use_rep={use_rep!r} is not in adata.obsm (available: {sorted(adata.obsm)}); "
            "run mad.tl.embed(...) first or pass use_rep= one of those keys."
        )
    x = x.to_numpy() if isinstance(x, pd.DataFrame) else x
    x = x.toarray() if sparse.issparse(x) else np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"adata.obsm[{use_rep!r}] must be 2-D, got shape {x.shape}.")
    x = x.astype(np.float32 if x.dtype != np.float64 else np.float64, copy=False)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError(
            f"adata.obsm[{use_rep!r}] has NaN/inf in {int(bad.sum())} of {len(x)} rows "
            f"(e.g. cells {adata.obs_names[bad][:5].tolist()}); drop them "
            "(adata = adata[np.isfinite(adata.obsm[use_rep]).all(1)].copy()) or re-embed."
        )
    return x


def get_obs(adata: AnnData, key: str) -> pd.Series:
    """Return an ``.obs`` column, or raise a KeyError listing the columns there are."""
    if key not in adata.obs.columns:
        raise KeyError(
            f"{key!r} is not a column of adata.obs (available: {list(adata.obs.columns)})."
        )
    return adata.obs[key]


def looks_like_counts(x) -> bool:
    """Whether a matrix holds raw counts (non-negative integers), judged on up to 2000 rows."""
    sub = x[: min(x.shape[0], 2000)]
    vals = sub.data if sparse.issparse(sub) else np.asarray(sub)
    vals = np.asarray(vals, dtype=np.float64)
    if vals.size == 0:
        return False
    return bool((vals >= 0).all() and np.all(vals == np.round(vals)) and vals.max() > 1)


def log_normalize(x, *, target_sum: float = 1e4) -> np.ndarray:
    """Scale every cell to ``target_sum`` total counts, then ``log1p`` (dense float32)."""
    x = x.toarray() if sparse.issparse(x) else np.asarray(x, dtype=np.float64)
    total = x.sum(axis=1, keepdims=True)
    # cells without counts stay at zero instead of dividing by zero
    scale = np.divide(
        target_sum, total, out=np.zeros_like(total, dtype=np.float64), where=total > 0
    )
    return np.log1p(x * scale).astype(np.float32)


def get_expression(
    adata: AnnData,
    *,
    layer: str | None = None,
    genes: Sequence[str] | None = None,
    normalize: str | None = "auto",
    target_sum: float = 1e4,
) -> tuple[np.ndarray, list[str], str]:
    """Expression as dense float32 (cells x genes), its gene names and the transform applied.

    ``normalize``: ``"auto"`` applies :func:`log_normalize` when the values look like
    raw counts (non-negative integers) and leaves them alone otherwise (already
    log-normalized, or predictions); ``"log1p"`` always applies it; ``None`` never.
    Normalization uses all genes of the matrix; the ``genes`` subset comes after.
    """
    if layer is None or layer == "X":
        x, where = adata.X, "adata.X"
    elif layer in adata.layers:
        x, where = adata.layers[layer], f"adata.layers[{layer!r}]"
    else:
        raise KeyError(
            f"layer={layer!r} is not in adata.layers (available: {list(adata.layers)}); pass "
            "layer=None for adata.X."
        )
    if x is None:
        raise ValueError("adata.X is empty; pass layer= the layer holding expression.")
    if normalize not in ("auto", "log1p", None, "none"):
        raise ValueError(f"normalize must be 'auto', 'log1p' or None, got {normalize!r}.")
    applied = "none"
    if normalize == "log1p" or (normalize == "auto" and looks_like_counts(x)):
        if normalize == "auto":
            logger.info(
                "    %s looks like raw counts: normalizing to %g per cell and log1p",
                where,
                target_sum,
            )
        x, applied = log_normalize(x, target_sum=target_sum), "log1p"
    else:
        x = (x.toarray() if sparse.issparse(x) else np.asarray(x)).astype(np.float32)
    names = adata.var_names.astype(str)
    if genes is not None:
        genes = [genes] if isinstance(genes, str) else list(genes)
        missing = [g for g in genes if g not in names]
        if missing:
            raise KeyError(
                f"{len(missing)} gene(s) not in adata.var_names: {missing[:10]}"
                f"{' ...' if len(missing) > 10 else ''} (var_names start {names[:5].tolist()})."
            )
        idx = names.get_indexer(genes)
        x, names = x[:, idx], pd.Index(genes)
    return x, names.tolist(), applied
