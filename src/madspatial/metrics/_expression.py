"""Per-gene agreement between predicted and measured expression."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._docs import doc_gene_pair, doc_params
from ._utils import as_dense_2d

if TYPE_CHECKING:
    from numpy.typing import ArrayLike
    from scipy.sparse import spmatrix


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = as_dense_2d(y_true, "y_true")
    p = as_dense_2d(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(
            f"y_true {t.shape} and y_pred {p.shape} must have the same shape (cells x genes)."
        )
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise ValueError(
            "y_true or y_pred holds NaN/inf; keep only the genes that were predicted "
            "(e.g. the decoder's genes) and the cells that were measured."
        )
    return t, p


def _named(values: np.ndarray, gene_names) -> np.ndarray | pd.Series:
    if gene_names is None:
        return values
    names = list(gene_names)
    if len(names) != len(values):
        raise ValueError(f"gene_names has {len(names)} entries for {len(values)} genes.")
    return pd.Series(values, index=pd.Index(names, name="gene"))


def pearson_per_gene(
    y_true: ArrayLike | spmatrix,
    y_pred: ArrayLike | spmatrix,
    *,
    gene_names=None,
) -> np.ndarray | pd.Series:
    """Pearson correlation across cells between measured and predicted expression, per gene.

    Constant genes: when a gene's measured (or predicted) values do not vary across
    the cells scored, the correlation is undefined and is returned as NaN, never as 0
    or 1. Aggregate with ``np.nanmean`` and report how many genes were NaN (as
    :func:`madspatial.tl.evaluate` does).

    Parameters
    ----------
    y_true
        Measured expression, cells x genes (dense or sparse).
    y_pred
        Predicted expression, same shape and order.
    gene_names
        Optional gene names; the result is then a Series indexed by gene.

    Returns
    -------
    Pearson r per gene (NaN for constant genes).
    """
    t, p = _pair(y_true, y_pred)
    tc = t - t.mean(axis=0)
    pc = p - p.mean(axis=0)
    num = (tc * pc).sum(axis=0)
    den = np.sqrt((tc**2).sum(axis=0) * (pc**2).sum(axis=0))
    # exactly constant columns (zero spread) have no correlation; NaN, never 0 or 1
    const = (np.ptp(t, axis=0) == 0) | (np.ptp(p, axis=0) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(const, np.nan, num / np.where(den == 0, 1.0, den))
    return _named(np.clip(r, -1.0, 1.0), gene_names)


@doc_params(doc_gene_pair=doc_gene_pair)
def mae_per_gene(
    y_true: ArrayLike | spmatrix,
    y_pred: ArrayLike | spmatrix,
    *,
    gene_names=None,
) -> np.ndarray | pd.Series:
    """Mean absolute error across cells, per gene.

    Parameters
    ----------
    {doc_gene_pair}

    Returns
    -------
    MAE per gene (in the units of the inputs, e.g. log1p-normalized counts).
    """
    t, p = _pair(y_true, y_pred)
    return _named(np.abs(t - p).mean(axis=0), gene_names)


@doc_params(doc_gene_pair=doc_gene_pair)
def mse_per_gene(
    y_true: ArrayLike | spmatrix,
    y_pred: ArrayLike | spmatrix,
    *,
    gene_names=None,
) -> np.ndarray | pd.Series:
    """Mean squared error across cells, per gene (the paper's Fig. 4e).

    Parameters
    ----------
    {doc_gene_pair}

    Returns
    -------
    MSE per gene.
    """
    t, p = _pair(y_true, y_pred)
    return _named(((t - p) ** 2).mean(axis=0), gene_names)
