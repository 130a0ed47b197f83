"""Non-learned baseline embeddings for the science benchmark (no ground truth is used).

- :func:`pixel_pca`: PCA of the raw view pixels (both views, average-pooled), the
  "no learning at all" baseline.
- :func:`handcrafted`: per-cell morphology features from ``skimage.measure.regionprops``
  (shape, per-channel mean intensities in the cell and in its nucleus, nuclear
  fraction) plus squidpy-style neighbourhood features: the composition of the k
  nearest cells' *morphology clusters* (k-means on the cells' own features, not
  labels) and the cells' own features averaged over those spatial neighbours.

Both return float32 ``(n_cells, d)`` arrays in the table's row order.

:func:`ground_truth_features` is not a baseline but a ceiling: the synthetic tissue's
own generating variables (every program activity the counts are drawn from, and the
cell's area), read from its ``obs``. What a probe reads from them is as much of the
expression as any image embedding could explain; what it misses is count noise. Blocks of
different sizes are balanced: every block is z-scored per column and scaled by
``1 / sqrt(n_columns)``, so each block carries the same total variance and no block
dominates cosine/Euclidean neighbour graphs by having more columns.
"""

from __future__ import annotations

import numpy as np


def _zscore_block(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    sd = x.std(axis=0)
    sd[sd == 0] = 1.0
    z = (x - x.mean(axis=0)) / sd
    return (z / np.sqrt(x.shape[1])).astype(np.float32)


def _pool(views: np.ndarray, out: int) -> np.ndarray:
    """Average-pool (N, C, S, S) uint8 views to (N, C * out * out) float32, in row chunks."""
    import torch
    import torch.nn.functional as F

    n = len(views)
    res = np.empty((n, views.shape[1] * out * out), dtype=np.float32)
    for start in range(0, n, 512):
        x = torch.from_numpy(np.asarray(views[start : start + 512], dtype=np.float32) / 255.0)
        res[start : start + len(x)] = F.adaptive_avg_pool2d(x, out).flatten(1).numpy()
    return res


def pixel_pca(
    store, *, n_components: int = 50, morph_px: int = 14, micro_px: int = 16, seed: int = 0
) -> np.ndarray:
    """PCA of average-pooled view pixels; each view reduced on its own, then concatenated.

    Parameters
    ----------
    store
        A :class:`madspatial.io.ViewStore` (rows in table order).
    n_components
        Principal components kept per view.
    morph_px, micro_px
        Side of the pooled morphology / microenvironment views (4 x 14 x 14 = 784 and
        4 x 16 x 16 = 1024 pixel features for 4 channels).
    seed
        Seed of the randomized PCA solver.
    """
    from sklearn.decomposition import PCA

    blocks = []
    for views, px in ((store.morphology, morph_px), (store.microenvironment, micro_px)):
        x = _pool(views, px)
        k = min(n_components, x.shape[0] - 1, x.shape[1])
        pcs = PCA(n_components=k, random_state=seed).fit_transform(x - x.mean(axis=0))
        blocks.append(_zscore_block(pcs))
    return np.concatenate(blocks, axis=1)


def cell_features(
    image: np.ndarray,
    cell_labels: np.ndarray,
    instance_ids: np.ndarray,
    nucleus_labels: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Per-cell regionprops features, rows in ``instance_ids`` order.

    Shape (area, perimeter, eccentricity, solidity, extent, major/minor axis), mean and
    standard deviation of every channel inside the cell, and with ``nucleus_labels``
    the nuclear fraction (nucleus area / cell area) and every channel's mean inside the
    nucleus. Cells absent from the labels get NaN (then the column mean, see
    :func:`handcrafted`).

    Parameters
    ----------
    image
        ``(C, H, W)`` float intensities (normalized image).
    cell_labels
        ``(H, W)`` integer label image of whole cells.
    instance_ids
        Label id of each table row.
    nucleus_labels
        Optional ``(H, W)`` nucleus labels sharing the cell's id.
    """
    from skimage.measure import regionprops

    img = np.moveaxis(np.asarray(image, dtype=np.float32), 0, -1)  # (H, W, C)
    c = img.shape[-1]
    names = ["area", "perimeter", "eccentricity", "solidity", "extent", "major_axis", "minor_axis"]
    names += [f"mean_c{i}" for i in range(c)] + [f"std_c{i}" for i in range(c)]
    if nucleus_labels is not None:
        names += ["nuclear_fraction"] + [f"nuc_mean_c{i}" for i in range(c)]
    row_of = {int(i): r for r, i in enumerate(instance_ids)}
    out = np.full((len(instance_ids), len(names)), np.nan, dtype=np.float64)
    for p in regionprops(np.asarray(cell_labels), intensity_image=img):
        r = row_of.get(int(p.label))
        if r is None:
            continue
        pix = img[p.coords[:, 0], p.coords[:, 1]]
        vals = [
            p.area,
            p.perimeter,
            p.eccentricity,
            p.solidity,
            p.extent,
            p.axis_major_length,
            p.axis_minor_length,
        ]
        vals += list(pix.mean(axis=0)) + list(pix.std(axis=0))
        if nucleus_labels is not None:
            nl = np.asarray(nucleus_labels)[p.coords[:, 0], p.coords[:, 1]]
            inside = nl == p.label
            frac = inside.mean()
            nuc = pix[inside].mean(axis=0) if inside.any() else np.zeros(c)
            vals += [frac, *list(nuc)]
        out[r] = vals
    return out, names


def handcrafted(
    image: np.ndarray,
    cell_labels: np.ndarray,
    instance_ids: np.ndarray,
    spatial: np.ndarray,
    *,
    nucleus_labels: np.ndarray | None = None,
    n_neighbors: int = 25,
    n_morph_clusters: int = 10,
    seed: int = 0,
) -> tuple[np.ndarray, dict]:
    """Own morphology + neighbourhood composition + neighbour-averaged features.

    Parameters
    ----------
    image, cell_labels, instance_ids, nucleus_labels
        See :func:`cell_features`.
    spatial
        ``(N, 2)`` cell centroids (same rows).
    n_neighbors
        Spatial neighbours defining a cell's neighbourhood (the microenvironment view
        holds ~20-30 cells).
    n_morph_clusters
        k of the k-means on the cells' own features whose labels are counted in the
        neighbourhood (squidpy-style composition, without ground-truth labels).
    seed
        Seed of the k-means.

    Returns
    -------
    ``(embedding, info)`` where ``info`` holds the raw feature names and block sizes.
    """
    from sklearn.cluster import KMeans
    from sklearn.neighbors import NearestNeighbors

    feats, names = cell_features(image, cell_labels, instance_ids, nucleus_labels)
    col_mean = np.nanmean(feats, axis=0)
    bad = np.isnan(feats)
    feats[bad] = np.take(col_mean, np.nonzero(bad)[1])
    z = _zscore_block(feats) * np.sqrt(feats.shape[1])  # plain z-scores for clustering
    morph_cl = KMeans(n_morph_clusters, n_init=10, random_state=seed).fit_predict(z)
    k = min(n_neighbors, len(spatial) - 1)
    nn = NearestNeighbors(n_neighbors=k + 1).fit(spatial)
    idx = nn.kneighbors(spatial, return_distance=False)[:, 1:]  # drop the cell itself
    comp = np.zeros((len(spatial), n_morph_clusters))
    for j in range(k):
        comp[np.arange(len(spatial)), morph_cl[idx[:, j]]] += 1.0 / k
    neigh_mean = z[idx].mean(axis=1)
    blocks = [_zscore_block(feats), _zscore_block(comp), _zscore_block(neigh_mean)]
    emb = np.concatenate(blocks, axis=1)
    info = {
        "features": names,
        "blocks": {
            "own": feats.shape[1],
            "composition": comp.shape[1],
            "neighbour_mean": neigh_mean.shape[1],
        },
    }
    return emb, info


#: The ``obs`` columns :func:`ground_truth_features` reads (a synthetic tissue's table).
GROUND_TRUTH_COLUMNS = (
    "cell_type",
    "morph_class",
    "niche",
    "trajectory",
    "tumour_distance",
    "area",
)


def ground_truth_activities(obs) -> dict[str, np.ndarray]:
    """``{program: (n,) activity}`` of the synthetic tissue's count model, from ``obs``.

    The same function the tissue draws its counts with
    (``datasets._tissue_expression.program_activities``). ``obs`` records the activation
    of stromal fibroblasts only, so the CAFs' activation reads as 0: the one program this
    reconstruction misses.

    Parameters
    ----------
    obs
        ``table.obs`` of :func:`madspatial.datasets.synthetic_tissue` (``cell_type``,
        ``morph_class``, ``niche``, ``trajectory``, ``tumour_distance``).
    """
    from madspatial.datasets import _tissue_spec as S
    from madspatial.datasets._tissue_expression import program_activities

    def index(col: str, names) -> np.ndarray:
        values = obs[col].astype(str).to_numpy()
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"obs[{col!r}] holds {unknown}, not synthetic-tissue values")
        code = {name: i for i, name in enumerate(names)}
        return np.array([code[v] for v in values], dtype=int)

    return program_activities(
        index("morph_class", S.MORPH_CLASSES),
        index("cell_type", S.CELL_TYPES),
        index("niche", S.NICHES),
        obs["trajectory"].to_numpy(dtype=float),
        np.maximum(-obs["tumour_distance"].to_numpy(dtype=float), 0.0),
    )


def ground_truth_features(obs) -> np.ndarray:
    """The synthetic tissue's generating variables for its expression, one row per cell.

    :func:`ground_truth_activities` (class, subtype and niche programs, hypoxia depth in
    tumour nests, fibroblast activation), then log area (library size grows with it),
    each block balanced as the baselines are: a ceiling for expression prediction, not a
    baseline.

    Parameters
    ----------
    obs
        As :func:`ground_truth_activities`, with ``area``.
    """
    w = ground_truth_activities(obs)
    act = np.stack([w[k] for k in sorted(w)], axis=1)
    area = np.log(np.maximum(obs["area"].to_numpy(dtype=float), 1.0))[:, None]
    return np.concatenate([_zscore_block(act), _zscore_block(area)], axis=1)
