"""External clustering scores: adjusted Rand index and cluster purity."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score
from sklearn.metrics.cluster import contingency_matrix

from ._utils import as_label_pair


def ari(labels_true, labels_pred) -> float:
    """Adjusted Rand index between reference labels and a clustering.

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
    return float(adjusted_rand_score(t, p))


def purity(labels_true, labels_pred) -> float:
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
    table = contingency_matrix(t, p)
    return float(np.asarray(table.max(axis=0)).sum() / len(t))


def contingency_table(labels_true, labels_pred) -> pd.DataFrame:
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
