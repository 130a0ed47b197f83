"""What each cell looks like (shape, nucleus, stains) and where exactly it sits.

Morphology is drawn per cell from its class (and, for tumour cells, its
subtype) only, never from its niche: the niche-only subtype pairs therefore
share one morphology distribution by construction. The one exception is
fibroblast activation (the trajectory), which grows with closeness to the
nests for stromal fibroblasts; CAFs draw their activation from the stromal
fibroblasts' own values, so even there the two distributions are the same.

Positions are then relaxed so cells do not overlap: fibroblasts, lymphocytes
and macrophages keep their whole intrinsic shape (hard-core repulsion with
their bounding radius), tumour cells are softly spaced and later fill the
remaining space of the nests (a weighted Voronoi partition in the renderer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from . import _tissue_spec as S
from ._tissue_layout import SlideLayout

#: Extracellular gap (px) kept between cells that keep their own shape, so blur does
#: not carry a neighbour's stain into a cell's rim (which would leak its niche).
GAP_PX = 1.5


@dataclass
class CellParams:
    """Per-cell geometry and stain levels (struct of arrays, one row per cell)."""

    a: np.ndarray  # cell semi-axis along theta (px); for tumour cells the fill radius
    b: np.ndarray  # cell semi-axis across theta
    theta: np.ndarray  # cell orientation (rad)
    harm_amp: np.ndarray  # (n, 3) amplitudes of angular harmonics k = 2, 3, 4 (irregular outline)
    harm_phase: np.ndarray  # (n, 3)
    nuc_dx: np.ndarray  # nucleus centre offset from the cell centre (px)
    nuc_dy: np.ndarray
    nuc_a: np.ndarray
    nuc_b: np.ndarray
    nuc_theta: np.ndarray
    notch_r: np.ndarray  # radius of the kidney notch cut from the nucleus (0: none)
    notch_dx: np.ndarray  # notch centre offset from the nucleus centre
    notch_dy: np.ndarray
    nominal_r: np.ndarray  # tumour cells: nominal radius for soft spacing
    excl_r: np.ndarray  # intrinsic cells: radius of a disc holding the whole shape
    priority: np.ndarray  # 0: keeps its shape; 1: fills what is left (tumour cells)
    cyto: np.ndarray  # (n, 4) cytoplasm stain level per channel
    nuc: np.ndarray  # (n, 4) nucleus stain level per channel
    membrane: np.ndarray  # (n,) boundary-channel level at the cell edge
    chromatin: np.ndarray  # (n,) DAPI texture contrast
    granularity: np.ndarray  # (n,) cytoplasmic granule contrast (18S, stromal channels)
    activation: np.ndarray  # (n,) fibroblast activation in [0, 1]; NaN for other classes
    mitotic: np.ndarray  # (n,) bool


def _ln(rng: np.random.Generator, n: int, sd: float = 0.12) -> np.ndarray:
    return np.exp(rng.normal(0.0, sd, n))


def fibroblast_activation(rng: np.random.Generator, layout: SlideLayout) -> np.ndarray:
    """Activation of every fibroblast (NaN for other cells).

    Stromal fibroblasts: ``exp(-d / ACTIVATION_LENGTH_PX)`` of their distance ``d``
    to the nearest nest, plus N(0, 0.04) noise, clipped to [0, 1]. CAFs: a random
    draw from the stromal fibroblasts' values (same distribution, no spatial order).
    """
    n = len(layout.xy)
    act = np.full(n, np.nan)
    ix = np.clip(np.round(layout.xy).astype(int), 0, [layout.shape[1] - 1, layout.shape[0] - 1])
    d = np.maximum(layout.tumour_distance[ix[:, 1], ix[:, 0]], 0.0)
    stromal = layout.cell_type == S.STROMAL_FIBROBLAST
    act[stromal] = np.clip(
        np.exp(-d[stromal] / S.ACTIVATION_LENGTH_PX) + rng.normal(0, 0.04, stromal.sum()), 0, 1
    )
    caf = layout.cell_type == S.CAF
    pool = act[stromal]
    if pool.size == 0:  # no stromal fibroblast on this slide: use the expected distribution
        pool = np.clip(np.exp(-rng.exponential(120.0, 256) / S.ACTIVATION_LENGTH_PX), 0, 1)
    act[caf] = rng.choice(pool, size=caf.sum(), replace=True)
    return act


def sample_cells(rng: np.random.Generator, layout: SlideLayout) -> CellParams:
    """Draw every cell's geometry and stain levels from its class / subtype."""
    # One generator, drawn in a fixed order (shared draws, then class by class): the
    # order is part of what makes a seed reproduce the same tissue.
    p = _unset_params(rng, layout)
    _draw_tumour_cells(rng, p, layout.cell_type)
    _draw_fibroblasts(rng, p, layout)
    _draw_lymphocytes(rng, p, layout.morph_class)
    _draw_macrophages(rng, p, layout.morph_class)
    return p


def imprint_niche(p: CellParams, layout: SlideLayout, strength: float) -> None:
    """Brighten the first subtype of each niche-only pair by ``NICHE_IMPRINT_GAIN * strength``.

    Applied after every draw and without a generator, so a tissue with an imprint has the
    same cells, shapes and positions as the one without; only those cells' stain levels
    differ (the imaging noise, drawn from the image, is a new realisation).
    """
    if strength == 0:
        return
    marked = np.isin(layout.cell_type, [S.CELL_TYPES.index(a) for a, _ in S.NICHE_ONLY_PAIRS])
    gain = 1.0 + S.NICHE_IMPRINT_GAIN * float(strength)
    p.cyto[marked] *= gain
    p.nuc[marked] *= gain
    p.membrane[marked] *= gain


def _unset_params(rng: np.random.Generator, layout: SlideLayout) -> CellParams:
    """Parameters with the draws every class shares (orientations, activation), rest zero."""
    n = len(layout.xy)
    cls = layout.morph_class
    z = np.zeros(n)
    p = CellParams(
        a=z.copy(),
        b=z.copy(),
        theta=rng.uniform(0, np.pi, n),
        harm_amp=np.zeros((n, 3)),
        harm_phase=rng.uniform(0, 2 * np.pi, (n, 3)),
        nuc_dx=z.copy(),
        nuc_dy=z.copy(),
        nuc_a=z.copy(),
        nuc_b=z.copy(),
        nuc_theta=rng.uniform(0, np.pi, n),
        notch_r=z.copy(),
        notch_dx=z.copy(),
        notch_dy=z.copy(),
        nominal_r=z.copy(),
        excl_r=z.copy(),
        priority=(cls == S.EPI).astype(np.float32),
        cyto=np.zeros((n, 4)),
        nuc=np.zeros((n, 4)),
        membrane=z.copy(),
        chromatin=z.copy(),
        granularity=z.copy(),
        activation=fibroblast_activation(rng, layout),
        mitotic=np.zeros(n, dtype=bool),
    )
    return p


def _nucleus_ellipse(p: CellParams, idx, radius, aspect) -> None:
    """Set the nucleus semi-axes of cells ``idx`` from a radius and an aspect ratio."""
    p.nuc_a[idx] = radius * np.sqrt(aspect)
    p.nuc_b[idx] = radius / np.sqrt(aspect)


def _draw_tumour_cells(rng: np.random.Generator, p: CellParams, ct: np.ndarray) -> None:
    """Tumour cells: quiescent vs proliferative differ only here."""
    for sub, r_cell, r_nuc, dapi, chrom, rna in (
        (S.QUIESCENT, 10.6, 4.7, 0.55, 0.15, 0.55),
        (S.PROLIFERATIVE, 11.6, 5.9, 0.85, 0.45, 0.70),
    ):
        i = np.flatnonzero(ct == sub)
        m = len(i)
        p.nominal_r[i] = np.clip(rng.normal(r_cell, 0.8, m), r_cell - 2.5, r_cell + 2.5)
        p.a[i] = p.b[i] = 1.3 * p.nominal_r[i]
        _nucleus_ellipse(
            p, i, np.clip(rng.normal(r_nuc, 0.35, m), 3.0, 8.0), rng.uniform(1.0, 1.35, m)
        )
        p.nuc_dx[i], p.nuc_dy[i] = rng.normal(0, 0.6, (2, m)).clip(-1.2, 1.2)
        p.nuc[i, S.CH_DAPI] = dapi * _ln(rng, m)
        p.chromatin[i] = chrom
        p.cyto[i, S.CH_RNA] = rna * _ln(rng, m)
        p.nuc[i, S.CH_RNA] = 0.22 * _ln(rng, m)
        p.cyto[i, S.CH_STROMA] = 0.04
        p.membrane[i] = 0.85 * _ln(rng, m)  # E-cadherin at the junctions
        if sub == S.PROLIFERATIVE:
            mit = i[rng.random(m) < S.MITOTIC_FRACTION]
            p.mitotic[mit] = True
            # Metaphase: chromatin condensed into a bright bar, cell rounded up.
            p.nuc_a[mit] = rng.normal(6.2, 0.4, len(mit))
            p.nuc_b[mit] = rng.normal(1.9, 0.2, len(mit))
            p.nuc_dx[mit] = p.nuc_dy[mit] = 0.0
            p.nuc[mit, S.CH_DAPI] = 1.5 * _ln(rng, len(mit))
            p.chromatin[mit] = 0.3
            p.nuc[mit, S.CH_RNA] = p.cyto[mit, S.CH_RNA]  # no nuclear envelope


def _draw_fibroblasts(rng: np.random.Generator, p: CellParams, layout: SlideLayout) -> None:
    """Fibroblasts: spindles; activation elongates them and raises alphaSMA."""
    cls = layout.morph_class
    i = np.flatnonzero(cls == S.FIB)
    m = len(i)
    act = p.activation[i]
    ab = np.clip(rng.normal(38.0, 3.0, m), 30.0, 46.0)
    elong = np.clip(2.0 + 2.8 * act + rng.normal(0, 0.25, m), 1.4, 5.6)
    p.a[i] = np.minimum(np.sqrt(ab * elong), 14.5)
    p.b[i] = ab / p.a[i]
    ix = np.clip(np.round(layout.xy[i]).astype(int), 0, [layout.shape[1] - 1, layout.shape[0] - 1])
    p.theta[i] = layout.orientation[ix[:, 1], ix[:, 0]] + rng.normal(0, 0.15, m)
    p.nuc_theta[i] = p.theta[i]
    p.nuc_a[i] = 0.5 * p.a[i]
    p.nuc_b[i] = np.maximum(0.75 * p.b[i], 1.6)
    shift = np.clip(rng.normal(0, 0.8, m), -1.5, 1.5)
    p.nuc_dx[i], p.nuc_dy[i] = shift * np.cos(p.theta[i]), shift * np.sin(p.theta[i])
    p.nuc[i, S.CH_DAPI] = 0.5 * _ln(rng, m)
    p.chromatin[i] = 0.12
    p.cyto[i, S.CH_RNA] = 0.3 * _ln(rng, m)
    p.nuc[i, S.CH_RNA] = 0.1
    p.cyto[i, S.CH_STROMA] = (0.3 + 0.75 * act) * _ln(rng, m)
    p.membrane[i] = 0.2 * _ln(rng, m)
    p.excl_r[i] = p.a[i]


def _draw_lymphocytes(rng: np.random.Generator, p: CellParams, cls: np.ndarray) -> None:
    """Lymphocytes: small, round, nucleus fills most of the cell."""
    i = np.flatnonzero(cls == S.LYM)
    m = len(i)
    r = np.clip(rng.normal(5.0, 0.3, m), 4.0, 6.0)
    asp = rng.uniform(1.0, 1.15, m)
    p.a[i], p.b[i] = r * np.sqrt(asp), r / np.sqrt(asp)
    _nucleus_ellipse(p, i, 0.8 * r, asp)
    p.nuc_theta[i] = p.theta[i]
    p.nuc_dx[i], p.nuc_dy[i] = rng.normal(0, 0.3, (2, m)).clip(-0.6, 0.6)
    p.nuc[i, S.CH_DAPI] = 0.95 * _ln(rng, m)
    p.chromatin[i] = 0.35
    p.cyto[i, S.CH_RNA] = 0.2 * _ln(rng, m)
    p.nuc[i, S.CH_RNA] = 0.08
    p.cyto[i, S.CH_STROMA] = 0.05
    p.membrane[i] = 0.5 * _ln(rng, m)  # CD45 ring
    p.excl_r[i] = p.a[i] + 0.3


def _draw_macrophages(rng: np.random.Generator, p: CellParams, cls: np.ndarray) -> None:
    """Macrophages: large, irregular outline, eccentric kidney nucleus, granules."""
    i = np.flatnonzero(cls == S.MAC)
    m = len(i)
    r = np.clip(rng.normal(11.2, 0.9, m), 9.0, 13.5)
    p.a[i] = p.b[i] = r
    p.harm_amp[i] = rng.uniform(0.03, 0.09, (m, 3))
    rn = np.clip(rng.normal(4.0, 0.3, m), 3.2, 4.8)
    _nucleus_ellipse(p, i, rn, rng.uniform(1.2, 1.5, m))
    phi = rng.uniform(0, 2 * np.pi, m)
    p.nuc_dx[i], p.nuc_dy[i] = 0.3 * r * np.cos(phi), 0.3 * r * np.sin(phi)
    p.nuc_theta[i] = phi + np.pi / 2  # long axis wraps around the cell centre
    p.notch_r[i] = 0.6 * rn
    p.notch_dx[i], p.notch_dy[i] = -1.05 * rn * np.cos(phi), -1.05 * rn * np.sin(phi)
    p.nuc[i, S.CH_DAPI] = 0.45 * _ln(rng, m)
    p.chromatin[i] = 0.1
    p.cyto[i, S.CH_RNA] = 0.45 * _ln(rng, m)
    p.nuc[i, S.CH_RNA] = 0.15
    p.cyto[i, S.CH_STROMA] = 0.3 * _ln(rng, m)  # vimentin
    p.granularity[i] = 0.8
    p.membrane[i] = 0.4 * _ln(rng, m)
    p.excl_r[i] = r * (1 + p.harm_amp[i].sum(axis=1)) + 0.3


_REBUILD_EVERY = 6
_SKIN_PX = 4.0


def _near_pairs(pos: np.ndarray, radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) closer than ``radius[i] + radius[j]``."""
    pairs = cKDTree(pos).query_pairs(2 * float(radius.max()), output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    i, j = pairs[:, 0], pairs[:, 1]
    keep = np.hypot(*(pos[i] - pos[j]).T) < radius[i] + radius[j]
    return i[keep], j[keep]


def _push(n: int, i: np.ndarray, j: np.ndarray, vec: np.ndarray, amount: np.ndarray, w_i, w_j):
    """Displacements moving i and j apart along ``vec`` (unit, i -> j) by shares of ``amount``."""
    dx = np.bincount(i, -vec[:, 0] * amount * w_i, n) + np.bincount(j, vec[:, 0] * amount * w_j, n)
    dy = np.bincount(i, -vec[:, 1] * amount * w_i, n) + np.bincount(j, vec[:, 1] * amount * w_j, n)
    return np.stack([dx, dy], axis=1)


def _unit(d: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    dist = np.hypot(d[:, 0], d[:, 1])
    zero = dist < 1e-9
    if zero.any():  # coincident seeds: separate in a random direction
        ang = rng.uniform(0, 2 * np.pi, zero.sum())
        d = d.copy()
        d[zero] = np.stack([np.cos(ang), np.sin(ang)], axis=1)
        dist = np.where(zero, 1.0, dist)
    return d / dist[:, None], np.where(zero, 0.0, dist)


def _accept(xy, new, layout: SlideLayout) -> np.ndarray:
    """Take moves that stay on the slide and in the cell's own niche.

    A move that would leave the niche is halved, then turned by +-90 degrees
    (sliding along the niche edge) before it is dropped.
    """
    h, w = layout.shape
    out = xy.copy()
    todo = np.arange(len(xy))
    step = new - xy
    turn_l = np.stack([-step[:, 1], step[:, 0]], axis=1)
    for trial in (step, 0.5 * step, turn_l, -turn_l, 0.5 * turn_l, -0.5 * turn_l):
        cand = xy[todo] + trial[todo]
        cand[:, 0] = np.clip(cand[:, 0], 0, w - 1)
        cand[:, 1] = np.clip(cand[:, 1], 0, h - 1)
        ix = np.round(cand).astype(int)
        ok = layout.niche_map[ix[:, 1], ix[:, 0]] == layout.niche[todo]
        out[todo[ok]] = cand[ok]
        todo = todo[~ok]
        if todo.size == 0:
            break
    return out


def relax_positions(
    rng: np.random.Generator, layout: SlideLayout, p: CellParams, *, n_iter: int = 80
) -> dict[str, float]:
    """Move seeds (in place) so intrinsic shapes do not overlap and tumour cells spread evenly.

    Returns a few convergence numbers (residual overlaps), for tests and logs.
    """
    intr = np.flatnonzero(p.priority == 0)
    epi = np.flatnonzero(p.priority == 1)
    residual_hard = _relax_intrinsic(rng, layout, p, intr, n_iter=n_iter) if len(intr) > 1 else 0.0
    residual_soft = _relax_tumour(rng, layout, p, intr, epi, n_iter=n_iter) if len(epi) else 0.0
    return {"hard_overlap_px": residual_hard, "tumour_margin_deficit_px": residual_soft}


#: Added to every push so that touching cells end strictly apart.
_TINY = 1e-3


def _relax_intrinsic(
    rng: np.random.Generator, layout: SlideLayout, p: CellParams, intr: np.ndarray, *, n_iter: int
) -> float:
    """Phase 1: hard-core discs for cells that keep their own shape; the residual overlap."""
    xy = layout.xy
    residual_hard = 0.0
    rho = p.excl_r[intr]
    sub = _SubLayout(layout, intr)
    pos = xy[intr].copy()
    for it in range(n_iter):
        if it % _REBUILD_EVERY == 0:  # Verlet list: pairs that can meet within a few steps
            i, j = _near_pairs(pos, rho + 0.5 * GAP_PX + _SKIN_PX)
            if len(i) == 0:
                break
        u, dist = _unit(pos[j] - pos[i], rng)
        over = rho[i] + rho[j] + GAP_PX - dist
        hit = over > 0
        residual_hard = float(over[hit].max()) if hit.any() else 0.0
        if residual_hard < 0.25:
            break
        disp = _push(len(pos), i[hit], j[hit], u[hit], over[hit] + _TINY, 0.5, 0.5)
        pos = _accept(pos, pos + disp, sub)
    xy[intr] = pos
    return residual_hard


def _relax_tumour(
    rng: np.random.Generator,
    layout: SlideLayout,
    p: CellParams,
    intr: np.ndarray,
    epi: np.ndarray,
    *,
    n_iter: int,
) -> float:
    """Phase 2: tumour cells keep a margin from the fixed intrinsic shapes, softly spaced.

    The margin is kept from the (now fixed) intrinsic shapes, the soft spacing among the
    tumour cells themselves; returns the residual margin deficit.
    """
    xy = layout.xy
    sub = _SubLayout(layout, epi)
    pos = xy[epi].copy()
    rn = p.nominal_r[epi]
    margin = 0.55 * rn
    tree_x = cKDTree(xy[intr]) if len(intr) else None
    reach = (p.excl_r[intr].max() if len(intr) else 0.0) + margin.max()
    for it in range(n_iter):
        disp = np.zeros_like(pos)
        if it % _REBUILD_EVERY == 0:
            i, j = _near_pairs(pos, 0.8 * rn + _SKIN_PX)
            if tree_x is not None:
                sdm = cKDTree(pos).sparse_distance_matrix(
                    tree_x, reach + _SKIN_PX, output_type="ndarray"
                )
                e, x = sdm["i"], intr[sdm["j"]]
        worst = 0.0
        if len(i):
            u, dist = _unit(pos[j] - pos[i], rng)
            over = 0.8 * (rn[i] + rn[j]) - dist
            hit = over > 0
            disp += _push(len(pos), i[hit], j[hit], u[hit], over[hit], 0.5, 0.5)
        if tree_x is not None and len(e):
            u, rho = _unit(pos[e] - xy[x], rng)
            c, s = np.cos(p.theta[x]), np.sin(p.theta[x])
            along = rho * (u[:, 0] * c + u[:, 1] * s)
            across = rho * (-u[:, 0] * s + u[:, 1] * c)
            dn = np.hypot(along / p.a[x], across / p.b[x])
            # Gap from the shape's edge along the ray (discs: excl_r).
            is_fib = layout.morph_class[x] == S.FIB
            gap = np.where(is_fib, rho - rho / np.maximum(dn, _TINY), rho - p.excl_r[x])
            deficit = margin[e] - gap
            hit = deficit > 0
            worst = float(deficit[hit].max()) if hit.any() else 0.0
            # Only the tumour cell moves, straight away from the shape.
            step = deficit[hit] + _TINY
            disp[:, 0] += np.bincount(e[hit], u[hit, 0] * step, len(pos))
            disp[:, 1] += np.bincount(e[hit], u[hit, 1] * step, len(pos))
        if np.abs(disp).max(initial=0.0) < 0.05:
            break
        pos = _accept(pos, pos + disp, sub)
    xy[epi] = pos
    return worst


class _SubLayout:
    """The niche map and the niches of a subset of cells, for :func:`_accept`."""

    def __init__(self, layout: SlideLayout, idx: np.ndarray):
        self.shape = layout.shape
        self.niche_map = layout.niche_map
        self.niche = layout.niche[idx]
