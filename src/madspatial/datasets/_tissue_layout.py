"""Where things are on one synthetic slide: niches as regions, then cell seeds in them.

Niches come from smooth random fields (nests: the upper quantile of a Gaussian
random field; immune aggregates: noisy discs placed in the stroma). Seeds are
drawn uniformly inside each niche, as many per niche as its area divided by
its tissue area per cell, and each seed gets a class from the niche's mix and
a subtype from (class, niche).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import ndimage as ndi

from . import _tissue_spec as S


@dataclass
class SlideLayout:
    """Niche map and cell seeds of one slide (pixel coordinates, x = column)."""

    shape: tuple[int, int]
    niche_map: np.ndarray  # (H, W) uint8, values index S.NICHES
    tumour_distance: np.ndarray  # (H, W) float32, px to the nest edge; negative inside nests
    orientation: np.ndarray  # (H, W) float32, local fibre direction (radians, mod pi)
    xy: np.ndarray  # (n, 2) float64 seed positions (x, y)
    niche: np.ndarray  # (n,) int8
    morph_class: np.ndarray  # (n,) int8
    cell_type: np.ndarray  # (n,) int8


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Draw a zero-mean, unit-variance Gaussian random field of correlation length ``sigma`` px.

    Filtered on a coarse grid and upsampled bilinearly, so the cost does not
    grow with ``sigma`` (a full-resolution filter with sigma ~ 40 px would
    dominate the generation time).
    """
    h, w = shape
    step = max(1, int(sigma // 3))
    ch, cw = h // step + 3, w // step + 3
    g = ndi.gaussian_filter(rng.standard_normal((ch, cw)), sigma / step, mode="reflect")
    g = (g - g.mean()) / (g.std() + 1e-12)
    return upsample(g, shape)


def _interp_matrix(n_out: int, n_in: int) -> sp.csr_matrix:
    """Sparse (n_out, n_in) linear-interpolation matrix (pixel centres aligned)."""
    pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    pos = np.clip(pos, 0, n_in - 1)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2) if n_in > 1 else np.zeros(n_out, int)
    frac = pos - lo if n_in > 1 else np.zeros(n_out)
    rows = np.repeat(np.arange(n_out), 2)
    cols = np.stack([lo, np.minimum(lo + 1, n_in - 1)], axis=1).ravel()
    vals = np.stack([1 - frac, frac], axis=1).ravel()
    return sp.csr_matrix((vals, (rows, cols)), shape=(n_out, n_in))


def upsample(g: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a small 2-D array to ``shape`` as two sparse products.

    Cheaper than ``scipy.ndimage.zoom`` by ~10x for the large factors used here.
    """
    ry = _interp_matrix(shape[0], g.shape[0])
    rx = _interp_matrix(shape[1], g.shape[1])
    return np.asarray((rx @ (ry @ g).T).T, dtype=np.float32)


def _aggregates(
    rng: np.random.Generator, tumour: np.ndarray, out_dist: np.ndarray, wobble: np.ndarray
) -> np.ndarray:
    """Immune aggregates: noisy discs in the stroma, covering ~IMMUNE_AREA_FRACTION."""
    h, w = tumour.shape
    target = S.IMMUNE_AREA_FRACTION * h * w
    rmin, rmax = S.AGGREGATE_RADIUS_PX
    mask = np.zeros((h, w), dtype=bool)
    centres: list[tuple[float, float, float]] = []
    # Candidate centres: stroma far enough from nests for the smallest aggregate.
    cand = np.flatnonzero(out_dist.ravel() >= 0.6 * rmin + 10)
    area = 0.0
    for _ in range(400):
        if area >= target or cand.size == 0:
            break
        r = rng.uniform(rmin, rmax)
        i = cand[rng.integers(cand.size)]
        cy, cx = divmod(int(i), w)
        if out_dist[cy, cx] < 0.6 * r + 10:
            continue
        if any(np.hypot(cx - x, cy - y) < r + q + 12 for x, y, q in centres):
            continue
        centres.append((cx, cy, r))
        area += np.pi * r * r
    if not centres:
        # A tiny slide: one small aggregate at the stroma point farthest from the nests.
        cy, cx = np.unravel_index(int(np.argmax(out_dist)), out_dist.shape)
        r = float(np.clip(out_dist[cy, cx], 8.0, rmin))
        centres.append((cx, cy, r))
    for cx, cy, r in centres:
        ext = int(np.ceil(r * 1.4)) + 2
        y0, y1 = max(0, cy - ext), min(h, cy + ext + 1)
        x0, x1 = max(0, cx - ext), min(w, cx + ext + 1)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        d = np.hypot(xx - cx, yy - cy) / r + 0.22 * wobble[y0:y1, x0:x1]
        mask[y0:y1, x0:x1] |= d <= 1.0
    return mask & ~tumour


def _split_counts(n: int, weights: np.ndarray) -> np.ndarray:
    """Integer counts summing to ``n`` in proportion to ``weights`` (largest remainder)."""
    share = n * weights / weights.sum()
    counts = np.floor(share).astype(int)
    rest = n - counts.sum()
    counts[np.argsort(-(share - counts), kind="stable")[:rest]] += 1
    return counts


def nominal_area_per_cell() -> float:
    """Tissue pixels per cell at the default niche fractions and densities."""
    frac = np.array(
        [
            S.TUMOUR_AREA_FRACTION,
            1 - S.TUMOUR_AREA_FRACTION - S.IMMUNE_AREA_FRACTION,
            S.IMMUNE_AREA_FRACTION,
        ]
    )
    return float(1.0 / np.sum(frac / np.asarray(S.NICHE_AREA_PER_CELL)))


def make_layout(rng: np.random.Generator, shape: tuple[int, int], n_cells: int) -> SlideLayout:
    """Niche map, distance/orientation fields and ``n_cells`` typed seeds for one slide."""
    h, w = shape
    nest_field = smooth_field(rng, shape, S.NEST_SIGMA_PX)
    thr = np.quantile(
        nest_field[:: max(1, h // 256), :: max(1, w // 256)], 1 - S.TUMOUR_AREA_FRACTION
    )
    tumour = nest_field > thr
    if not tumour.any():  # a pathological tiny slide: make one nest at the field maximum
        tumour.flat[int(np.argmax(nest_field))] = True
    # Distances on a 2x coarser grid (4x cheaper; +-1 px is irrelevant at nest scale).
    half = tumour[::2, ::2]
    out_dist = np.repeat(np.repeat(ndi.distance_transform_edt(~half), 2, 0), 2, 1)[:h, :w]
    in_dist = np.repeat(np.repeat(ndi.distance_transform_edt(half), 2, 0), 2, 1)[:h, :w]
    out_dist = (2 * out_dist).astype(np.float32)
    in_dist = (2 * in_dist).astype(np.float32)
    wobble = smooth_field(rng, shape, 6.0)
    immune = _aggregates(rng, tumour, out_dist, wobble)
    niche_map = np.full(shape, S.STROMA, dtype=np.uint8)
    niche_map[tumour] = S.TUMOUR
    niche_map[immune] = S.IMMUNE
    tumour_distance = np.where(tumour, -in_dist, out_dist).astype(np.float32)
    # Fibre orientation: the angle of a smooth random vector field, halved (mod pi),
    # stationary over the slide so it says nothing about the niche.
    u = smooth_field(rng, shape, 70.0)
    v = smooth_field(rng, shape, 70.0)
    orientation = (0.5 * np.arctan2(v, u)).astype(np.float32)

    # --- seeds ----------------------------------------------------------------------
    areas = np.bincount(niche_map.ravel(), minlength=len(S.NICHES)).astype(float)
    per_niche = _split_counts(n_cells, areas / np.asarray(S.NICHE_AREA_PER_CELL))
    flat = niche_map.ravel()
    order = np.argsort(flat, kind="stable")
    starts = np.r_[0, np.cumsum(areas.astype(int))]
    xy_parts, niche_parts, class_parts = [], [], []
    for k, m in enumerate(per_niche):
        if m == 0:
            continue
        pix = order[starts[k] : starts[k + 1]][rng.integers(0, int(areas[k]), size=m)]
        py, px = np.divmod(pix, w)
        jitter = rng.uniform(-0.5, 0.5, size=(m, 2))
        xy_parts.append(np.stack([px, py], axis=1) + jitter)
        niche_parts.append(np.full(m, k, dtype=np.int8))
        mix = np.asarray(S.NICHE_CLASS_MIX[k], dtype=float)
        class_parts.append(rng.choice(len(S.MORPH_CLASSES), size=m, p=mix / mix.sum()))
    xy = np.concatenate(xy_parts)
    niche = np.concatenate(niche_parts)
    morph_class = np.concatenate(class_parts).astype(np.int8)
    xy[:, 0] = np.clip(xy[:, 0], 0, w - 1)
    xy[:, 1] = np.clip(xy[:, 1], 0, h - 1)

    # --- subtypes: class x niche, plus the proliferative draw within tumour cells ----
    cell_type = np.empty(n_cells, dtype=np.int8)
    in_nest = niche == S.TUMOUR
    epi = morph_class == S.EPI
    prolif = rng.random(n_cells) < S.PROLIFERATIVE_FRACTION
    cell_type[epi] = np.where(prolif[epi], S.PROLIFERATIVE, S.QUIESCENT)
    fib = morph_class == S.FIB
    cell_type[fib] = np.where(in_nest[fib], S.CAF, S.STROMAL_FIBROBLAST)
    mac = morph_class == S.MAC
    cell_type[mac] = np.where(in_nest[mac], S.TAM, S.STROMAL_MACROPHAGE)
    lym = morph_class == S.LYM
    cell_type[lym] = np.where(niche[lym] == S.IMMUNE, S.B_CELL, S.T_CELL)
    return SlideLayout(
        shape=shape,
        niche_map=niche_map,
        tumour_distance=tumour_distance,
        orientation=orientation,
        xy=xy,
        niche=niche,
        morph_class=morph_class,
        cell_type=cell_type,
    )
