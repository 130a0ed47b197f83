"""External clustering scores: adjusted Rand index and cluster purity."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import sparse

from ._utils import as_label_pair

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


def ari(labels_true: ArrayLike, labels_pred: ArrayLike) -> float:
    """Compute the adjusted Rand index between reference labels and a clustering.

    ``(RI - E[RI]) / (max(RI) - E[RI])`` on pairwise co-assignment: 1 for identical
    partitions (up to renaming), about 0 for random ones.

    Parameters
    ----------
    labels_true
        Reference labels, one per cell (array-like, any hashable values).
    labels_pred
        Cluster assignments, same length.

    Returns
    -------
    The adjusted Rand index (float in [-0.5, 1]).
    """
    t, p = as_label_pair(labels_true, labels_pred)
    # same formula as sklearn.metrics.adjusted_rand_score, without its input validation,
    # which dominates the cost when bootstrap CIs call this hundreds of times
    table = _contingency(t, p)
    n = len(t)
    comb = lambda x: x * (x - 1) / 2.0  # noqa: E731 - pairs among x items
    sum_cells = comb(table.data).sum()
    sum_rows = comb(np.asarray(table.sum(axis=1)).ravel()).sum()
    sum_cols = comb(np.asarray(table.sum(axis=0)).ravel()).sum()
    expected = sum_rows * sum_cols / comb(n) if n > 1 else 0.0
    maximum = (sum_rows + sum_cols) / 2.0
    if maximum == expected:  # one cluster and one class, or all singletons: a perfect match
        return 1.0
    return float((sum_cells - expected) / (maximum - expected))


def _contingency(t: np.ndarray, p: np.ndarray) -> sparse.csr_matrix:
    """Sparse (classes x clusters) count table from integer codes."""
    _, ti = np.unique(t, return_inverse=True)
    _, pi = np.unique(p, return_inverse=True)
    return sparse.csr_matrix(
        (np.ones(len(t)), (ti.ravel(), pi.ravel())), shape=(ti.max() + 1, pi.max() + 1)
    )


def purity(labels_true: ArrayLike, labels_pred: ArrayLike) -> float:
    """Cluster purity: the share of cells carrying the majority label of their cluster.

    ``purity = (1 / N) * sum_k max_j |C_k ∩ L_j|`` (the paper's definition: a
    cell-weighted average over clusters). 1 when every cluster holds a single
    label; it also reaches 1 trivially with one cluster per cell, so read it
    together with the ARI.

    Parameters
    ----------
    labels_true
        Reference labels, one per cell.
    labels_pred
        Cluster assignments, same length.

    Returns
    -------
    Purity in (0, 1].
    """
    t, p = as_label_pair(labels_true, labels_pred)
    # rows: true classes, columns: predicted clusters
    table = _contingency(t, p)
    return float(table.max(axis=0).toarray().sum() / len(t))


def contingency_table(labels_true: ArrayLike, labels_pred: ArrayLike) -> pd.DataFrame:
    """Cells per (reference label, cluster) pair, as a labelled table.

    Parameters
    ----------
    labels_true
        Reference labels, one per cell (rows of the table).
    labels_pred
        Cluster assignments (columns of the table).

    Returns
    -------
    A DataFrame of counts, reference labels as index, clusters as columns.
    """
    t, p = as_label_pair(labels_true, labels_pred)
    return pd.crosstab(pd.Series(t, name="label"), pd.Series(p, name="cluster"))
