"""Window sizes of the two views and the tiling plan, from cell centroids and extents.

Microenvironment window
    For every cell, ``d_i`` is the Chebyshev (L-infinity) distance from its
    centroid to the centroid of its ``n_neighbors``-th nearest other cell. A
    square window of side ``2 * d_i`` centred on the cell holds exactly
    ``n_neighbors`` neighbouring centroids. The slide-wide window is
    ``2 * median(d_i)``: the median cell's window holds ``n_neighbors``
    neighbours, denser regions more, sparser fewer. Equivalently, the window is
    ``sqrt(n_neighbors / rho)`` for the local cell density ``rho`` of the median
    cell, which unlike a density over a convex hull is not fooled by holes,
    tissue borders or empty slide. The per-cell option uses ``2 * d_i`` itself,
    clipped to a quarter..four times the slide-wide window.

Morphology window
    The side of the smallest square centred on the centroid that contains the
    cell's bounding box (``extent``); slide-wide it is the ``quantile`` (0.99)
    of the extents times a ``margin`` (1.1), so 99% of cells fit whole and cell
    size stays visible in the view. The per-cell option uses the cell's own
    extent times the margin.

Tiling
    Cells are ordered along a Hilbert curve through their centroids, so any run
    of consecutive cells lies in a compact patch of tissue. Runs of whole store
    chunks form the tasks; each task reads the image around its cells with a
    margin of one window (tiles overlap by a window, a cell belongs to the one
    task holding its centroid).
"""

from __future__ import annotations

import numpy as np


def neighbor_distance(
    points_xy: np.ndarray, query_xy: np.ndarray, n_neighbors: int, *, self_included: bool = True
) -> np.ndarray:
    """Chebyshev distance from each query point to its ``n_neighbors``-th nearest other point."""
    from scipy.spatial import cKDTree

    tree = cKDTree(points_xy)
    k = n_neighbors + (1 if self_included else 0)
    d, _ = tree.query(query_xy, k=[k], p=np.inf)
    return d[:, 0]


def centred_extent(
    cx: np.ndarray,
    cy: np.ndarray,
    xmin: np.ndarray,
    xmax: np.ndarray,
    ymin: np.ndarray,
    ymax: np.ndarray,
) -> np.ndarray:
    """Side of the square centred on the centroid that covers the whole bounding box (pixels)."""
    half = np.maximum.reduce(
        [cx - xmin, xmax - cx, cy - ymin, ymax - cy]
    )  # centre-to-pixel-centre distance
    return 2.0 * half + 1.0  # + one pixel: the outer pixels' own width


def hilbert_index(x: np.ndarray, y: np.ndarray, order: int) -> np.ndarray:
    """Position along a Hilbert curve of side ``2**order`` of integer points (vectorised)."""
    n = 1 << order
    x = np.asarray(x, dtype=np.int64).copy()
    y = np.asarray(y, dtype=np.int64).copy()
    d = np.zeros_like(x)
    s = n >> 1
    while s > 0:
        rx = ((x & s) > 0).astype(np.int64)
        ry = ((y & s) > 0).astype(np.int64)
        d += s * s * ((3 * rx) ^ ry)
        flip = (ry == 0) & (rx == 1)
        x = np.where(flip, n - 1 - x, x)
        y = np.where(flip, n - 1 - y, y)
        swap = ry == 0
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        s >>= 1
    return d


def storage_order(cx: np.ndarray, cy: np.ndarray, cell_px: float) -> np.ndarray:
    """Permutation of cells along a Hilbert curve on a grid of ``cell_px`` pixels."""
    if len(cx) == 0:
        return np.zeros(0, dtype=np.int64)
    gx = np.floor((cx - cx.min()) / cell_px).astype(np.int64)
    gy = np.floor((cy - cy.min()) / cell_px).astype(np.int64)
    order = max(1, int(np.ceil(np.log2(max(gx.max(), gy.max()) + 1))))
    order = min(order, 30)
    d = hilbert_index(gx, gy, order)
    return np.lexsort((np.arange(len(cx)), d))


def plan_tasks(n_cells: int, chunk_size: int, cells_per_task: int) -> list[tuple[int, int]]:
    """Storage row ranges of the tasks: runs of whole chunks of about ``cells_per_task`` cells."""
    chunks_per_task = max(1, round(cells_per_task / chunk_size))
    step = chunks_per_task * chunk_size
    return [(a, min(n_cells, a + step)) for a in range(0, n_cells, step)]


def split_region(
    lo_y: np.ndarray,
    hi_y: np.ndarray,
    lo_x: np.ndarray,
    hi_x: np.ndarray,
    shape: tuple[int, int],
    max_side: float,
) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """Regions (clipped to the image) covering each cell's needs; split on a grid if too large.

    ``lo_*``/``hi_*`` are per-cell bounds (image pixels) of the pixels each
    cell's views read. A task whose cells are spread out (a Hilbert run that
    crosses empty slide) is cut into grid tiles of ``max_side`` so that memory
    stays bounded.
    """
    h, w = shape

    def region(sel):
        y0 = int(np.clip(np.floor(lo_y[sel].min()), 0, h))
        y1 = int(np.clip(np.ceil(hi_y[sel].max()) + 1, 0, h))
        x0 = int(np.clip(np.floor(lo_x[sel].min()), 0, w))
        x1 = int(np.clip(np.ceil(hi_x[sel].max()) + 1, 0, w))
        return y0, max(y0, y1), x0, max(x0, x1)

    allsel = np.arange(len(lo_y))
    y0, y1, x0, x1 = region(allsel)
    if (y1 - y0) <= max_side and (x1 - x0) <= max_side:
        return [(allsel, (y0, y1, x0, x1))]
    cy = (lo_y + hi_y) / 2
    cx = (lo_x + hi_x) / 2
    ty = np.floor(cy / max_side).astype(np.int64)
    tx = np.floor(cx / max_side).astype(np.int64)
    key = ty * (int(tx.max()) + 2) + tx
    groups = []
    for k in np.unique(key):
        sel = np.flatnonzero(key == k)
        groups.append((sel, region(sel)))
    return groups
