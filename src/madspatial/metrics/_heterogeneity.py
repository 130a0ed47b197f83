"""Within-patch heterogeneity: how mixed the expression around each cell is."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse
from sklearn.neighbors import NearestNeighbors

from ._utils import as_dense_2d, check_finite

if TYPE_CHECKING:
    from numpy.typing import ArrayLike
    from scipy.sparse import spmatrix


def within_patch_heterogeneity(
    expression: ArrayLike | spmatrix,
    spatial: ArrayLike,
    *,
    n_neighbors: int = 25,
    radius: float | None = None,
    ddof: int = 0,
) -> np.ndarray:
    """Sum over genes of the expression variance among the cells of each cell's window.

    ``H_i = sum_g Var{e_{c,g} : c in window(i)}`` (the paper's Fig. 4e-g). The window
    stands in for the microenvironment view: by default the cell itself plus its
    ``n_neighbors`` nearest cells by centroid distance (25 matches the ~20-30 cells a
    microenvironment view holds); with ``radius`` all cells whose centroid lies
    within that distance (in the units of ``spatial``, e.g. pixels), the cell
    included. Low values: a homogeneous neighbourhood; high values: a mixed one.

    Parameters
    ----------
    expression
        Expression, cells x genes (dense or sparse). The paper uses absolute levels;
        pass counts or log-normalized values as you wish to compare.
    spatial
        Cell centroids, cells x 2 (e.g. ``adata.obsm["spatial"]``).
    n_neighbors
        Neighbours in each window besides the cell itself (ignored with ``radius``).
    radius
        Window radius; when given, overrides ``n_neighbors``.
    ddof
        Delta degrees of freedom of the variance: 0 (population variance, default) or
        1 (sample variance; a window holding one cell then gives NaN).

    Returns
    -------
    Heterogeneity per cell, shape ``(n_cells,)``.
    """
    xy = as_dense_2d(spatial, "spatial")
    check_finite(xy, "spatial")
    n = xy.shape[0]
    X = expression if sparse.issparse(expression) else as_dense_2d(expression, "expression")
    if X.shape[0] != n:
        raise ValueError(f"expression has {X.shape[0]} rows but spatial has {n}; one per cell.")
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 or 1, got {ddof}.")
    if radius is not None:
        if radius <= 0:
            raise ValueError(f"radius must be positive, got {radius}.")
        graph = NearestNeighbors(radius=radius).fit(xy).radius_neighbors_graph(xy)
    else:
        if not 1 <= n_neighbors < n:
            raise ValueError(
                f"n_neighbors must be in [1, n_cells - 1] = [1, {n - 1}], got {n_neighbors}."
            )
        # querying the fitted points returns each cell as its own first neighbour
        graph = NearestNeighbors(n_neighbors=n_neighbors + 1).fit(xy).kneighbors_graph(xy)
    graph = sparse.csr_matrix(graph, dtype=np.float64)
    graph.data[:] = 1.0
    size = np.asarray(graph.sum(axis=1)).ravel()
    W = sparse.diags(1.0 / size) @ graph  # row i averages over window(i)
    X = sparse.csr_matrix(X, dtype=np.float64) if sparse.issparse(X) else X.astype(np.float64)
    mean = np.asarray(W @ X if not sparse.issparse(X) else (W @ X).toarray())
    sq = X.multiply(X) if sparse.issparse(X) else X**2
    mean_sq = np.asarray(W @ sq if not sparse.issparse(sq) else (W @ sq).toarray())
    var = np.clip(mean_sq - mean**2, 0.0, None)  # E[x^2] - E[x]^2 can dip below 0 by round-off
    total = var.sum(axis=1)
    if ddof == 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            total = np.where(size > 1, total * size / (size - 1), np.nan)
    return total
