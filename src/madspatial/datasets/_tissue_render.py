"""Pixels: cell and nucleus label images, then the four-channel fluorescence image.

Rasterization is vectorized over cells: every cell evaluates its normalized
shape distance ``d`` (``d <= 1`` inside) on a small patch around its centre, in
batches of whole-array numpy. A pixel goes to the cell of smallest
``priority + d``: cells with priority 0 (fibroblasts, lymphocytes,
macrophages) keep their intrinsic shape, tumour cells (priority 1) share the
rest of the nest as a weighted Voronoi partition limited by their fill radius.

Imaging follows a widefield microscope: stain levels per compartment
(nucleus, cytoplasm, membrane) with chromatin and granule textures, then
tissue autofluorescence, a Gaussian PSF, a smooth multiplicative illumination
field per channel (so flat-field correction matters), Poisson shot noise,
camera gain/offset and Gaussian read noise, quantised to uint16.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label as connected_components

from . import _tissue_spec as S
from ._tissue_cells import CellParams
from ._tissue_layout import SlideLayout, smooth_field

_PATCH_SIZES = (13, 19, 25, 31, 37, 45)
_BATCH_PIXELS = 4_000_000
#: Extracellular gap (px) kept between tumour cells and fibroblasts/immune cells.
CLEFT_PX = 2  # patch pixels per batch: bounds memory to ~100 MB


def _extent(p: CellParams) -> np.ndarray:
    """Radius (px) of a disc around the centre that holds the whole cell."""
    return np.maximum(p.a, p.b) * (1 + p.harm_amp.sum(axis=1)) + 1.0


def rasterize(
    xy: np.ndarray, p: CellParams, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Cell labels (ids 1..n in row order of ``xy``) and a nucleus mask, both (H, W)."""
    h, w = shape
    n = len(xy)
    need = 2 * np.ceil(_extent(p)).astype(int) + 1
    sizes = np.asarray(_PATCH_SIZES)
    size_of = sizes[np.minimum(np.searchsorted(sizes, need), len(sizes) - 1)]
    best = np.full(h * w, np.inf, dtype=np.float32)
    chunks = []  # (pix, key, cell, in_nucleus) of candidate pixels
    for size in np.unique(size_of):
        cells = np.flatnonzero(size_of == size)
        step = max(1, _BATCH_PIXELS // (size * size))
        for start in range(0, len(cells), step):
            c = cells[start : start + step]
            chunks.append(_patch_candidates(xy[c], p, c, int(size), shape))
            pix, key = chunks[-1][0], chunks[-1][1]
            np.minimum.at(best, pix, key)
    labels = np.zeros(h * w, dtype=np.int32)
    nucleus = np.zeros(h * w, dtype=bool)
    for pix, key, cell, in_nuc in chunks:
        win = key == best[pix]
        labels[pix[win]] = cell[win] + 1
        nucleus[pix[win]] = in_nuc[win]
    labels = labels.reshape(shape)
    nucleus = nucleus.reshape(shape)
    # A thin cleft of extracellular space between tumour cells and the cells they pack
    # around: without it, blur carries the bright E-cadherin/18S of tumour cells into
    # the rim of a CAF, TAM or T cell and leaks its niche into its own pixels.
    intrinsic = np.r_[False, p.priority == 0][labels]
    near = ndi.binary_dilation(intrinsic, iterations=CLEFT_PX)
    labels[near & ~intrinsic] = 0
    seeds = np.clip(np.round(xy).astype(int), 0, [w - 1, h - 1])
    labels = keep_seed_component(labels, seeds, n)
    nucleus &= labels > 0
    nuc_labels = keep_largest_component(np.where(nucleus, labels, 0), n)
    return labels, nuc_labels


def rasterize_all(
    layout: SlideLayout, p: CellParams, *, min_area: int = 20, tries: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rasterize`, re-seating tumour cells that came out (nearly) empty.

    A tumour cell pinned against the slide edge by a macrophage or fibroblast can
    lose all its pixels. Such cells move (``layout.xy`` is updated) to the spot of
    their own niche farthest from every intrinsic cell and every other seed, where
    they take a fair share of the space, and the slide is drawn again.
    """
    h, w = layout.shape
    labels, nuc = rasterize(layout.xy, p, layout.shape)
    for _ in range(tries):
        area = np.bincount(labels.ravel(), minlength=len(layout.xy) + 1)[1:]
        lost = np.flatnonzero((area < min_area) & (p.priority == 1))
        if lost.size == 0:
            break
        occupied = np.r_[False, p.priority == 0][labels]
        seeds = np.clip(np.round(layout.xy).astype(int), 0, [w - 1, h - 1])
        occupied[seeds[:, 1], seeds[:, 0]] = True
        room = ndi.distance_transform_edt(~occupied)
        for c in lost:
            spot = np.where(layout.niche_map == layout.niche[c], room, -1.0)
            y, x = np.unravel_index(int(np.argmax(spot)), spot.shape)
            layout.xy[c] = (x, y)
            r = int(p.nominal_r[c])  # no second lost cell on the same spot
            room[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1] = 0
        labels, nuc = rasterize(layout.xy, p, layout.shape)
    return labels, nuc


def _patch_candidates(xy, p: CellParams, idx, size, shape):
    h, w = shape
    half = size // 2
    ox = np.round(xy[:, 0]).astype(np.int64) - half
    oy = np.round(xy[:, 1]).astype(np.int64) - half
    off = np.arange(size)
    gx = ox[:, None] + off  # (m, size)
    gy = oy[:, None] + off
    dx = (gx - xy[:, :1]).astype(np.float32)[:, None, :]  # (m, 1, size)
    dy = (gy - xy[:, 1:]).astype(np.float32)[:, :, None]  # (m, size, 1)

    def col(v):
        return v[idx].astype(np.float32)[:, None, None]

    c, s = np.cos(col(p.theta)), np.sin(col(p.theta))
    d = np.hypot((dx * c + dy * s) / col(p.a), (dy * c - dx * s) / col(p.b))
    amp = p.harm_amp[idx]
    if np.any(amp):
        phi = np.arctan2(dy, dx)
        factor = np.ones_like(d)
        for k in range(3):
            factor += amp[:, k, None, None].astype(np.float32) * np.cos(
                (k + 2) * phi + p.harm_phase[idx, k, None, None].astype(np.float32)
            )
        d = d / factor
    nx, ny = dx - col(p.nuc_dx), dy - col(p.nuc_dy)
    c, s = np.cos(col(p.nuc_theta)), np.sin(col(p.nuc_theta))
    dn = np.hypot((nx * c + ny * s) / col(p.nuc_a), (ny * c - nx * s) / col(p.nuc_b))
    notch = col(p.notch_r)
    if np.any(notch):
        in_notch = np.hypot(nx - col(p.notch_dx), ny - col(p.notch_dy)) < notch
        dn = np.where(in_notch, np.float32(2.0), dn)
    inside = (
        (d <= 1.0)
        & (gx >= 0)[:, None, :]
        & (gx < w)[:, None, :]
        & (gy >= 0)[:, :, None]
        & (gy < h)[:, :, None]
    )
    m_i, y_i, x_i = np.nonzero(inside)
    pix = gy[m_i, y_i] * w + gx[m_i, x_i]
    key = (d + col(p.priority))[m_i, y_i, x_i]
    return pix, key, idx[m_i].astype(np.int32), dn[m_i, y_i, x_i] <= 1.0


def keep_seed_component(labels: np.ndarray, seeds_xy: np.ndarray, n: int) -> np.ndarray:
    """Keep, for each cell, only the connected piece holding its seed (drop fragments).

    Cells whose seed pixel went to another cell keep their largest piece instead.
    """
    comp = connected_components(labels, background=0, connectivity=1)
    ids = np.arange(1, n + 1)
    at_seed = labels[seeds_xy[:, 1], seeds_xy[:, 0]] == ids
    keep = np.zeros(n + 1, dtype=comp.dtype)
    keep[ids[at_seed]] = comp[seeds_xy[at_seed, 1], seeds_xy[at_seed, 0]]
    out = np.where(comp == keep[labels], labels, 0)
    lost = ids[~at_seed]
    if len(lost):
        mask = np.isin(labels, lost)
        out[mask] = keep_largest_component(np.where(mask, labels, 0), n)[mask]
    return out


def keep_largest_component(labels: np.ndarray, n: int) -> np.ndarray:
    """For each label id, keep its largest 4-connected piece."""
    comp = connected_components(labels, background=0, connectivity=1)
    fg = comp > 0
    if not fg.any():
        return labels
    sizes = np.bincount(comp[fg])
    owner = np.zeros(len(sizes), dtype=np.int64)
    owner[comp[fg]] = labels[fg]
    # The largest component of each owner: sort components by (owner, -size).
    cids = np.arange(1, len(sizes))
    order = np.lexsort((-sizes[1:], owner[1:]))
    first = np.r_[True, owner[1:][order][1:] != owner[1:][order][:-1]]
    best = np.zeros(n + 1, dtype=comp.dtype)
    best[owner[1:][order][first]] = cids[order][first]
    return np.where(fg & (comp == best[labels]), labels, 0)


def _edges(labels: np.ndarray) -> np.ndarray:
    """Pixels of a cell touching another cell or background (4-neighbourhood), 2 px wide."""
    e = np.zeros(labels.shape, dtype=bool)
    dy = labels[1:, :] != labels[:-1, :]
    dx = labels[:, 1:] != labels[:, :-1]
    e[1:, :] |= dy
    e[:-1, :] |= dy
    e[:, 1:] |= dx
    e[:, :-1] |= dx
    return e & (labels > 0)


def render_image(
    rng: np.random.Generator,
    labels: np.ndarray,
    nucleus: np.ndarray,
    p: CellParams,
    niche_map: np.ndarray,
    *,
    noise: float,
    stain_gain: np.ndarray,
) -> np.ndarray:
    """Render the (4, H, W) uint16 image of one slide."""
    h, w = labels.shape
    in_nuc = nucleus > 0
    fine = ndi.gaussian_filter(rng.standard_normal((h, w), dtype=np.float32), 0.7)
    fine /= fine.std() + 1e-6
    gran = np.maximum(ndi.gaussian_filter(rng.standard_normal((h, w), dtype=np.float32), 1.2), 0)
    gran /= gran.mean() + 1e-6
    edges = _edges(labels)

    def lut(v):
        return np.r_[0.0, v].astype(np.float32)[labels]

    chrom = np.maximum(1 + lut(p.chromatin) * fine, 0)
    g = lut(p.granularity)
    granules = 1 - g + g * gran
    # Extracellular matrix: faint textured autofluorescence between cells, the same in
    # every niche (a niche-specific level would bleed into cell rims through the PSF).
    ecm = 0.03 * np.maximum(1 + 0.6 * fine, 0) * (labels == 0)

    out = np.empty((len(S.CHANNEL_NAMES), h, w), dtype=np.uint16)
    for ch in range(len(S.CHANNEL_NAMES)):
        level = np.where(in_nuc, lut(p.nuc[:, ch]), lut(p.cyto[:, ch]))
        if ch == S.CH_DAPI:
            level *= chrom
        elif ch in (S.CH_RNA, S.CH_STROMA):
            level = np.where(in_nuc, level, level * granules)
        if ch == S.CH_MEMBRANE:
            level += edges * lut(p.membrane)
        level += ecm
        scale = np.float32(S.PEAK_PHOTONS[ch] * stain_gain[ch])
        photons = ndi.gaussian_filter(level * scale, S.PSF_SIGMA_PX)
        photons += np.float32(S.BACKGROUND_PHOTONS[ch])
        photons *= illumination(rng, (h, w))
        out[ch] = camera(rng, photons, noise)
    return out


def illumination(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Draw a smooth multiplicative flat field: vignetting times a random low-frequency tilt."""
    h, w = shape
    cy, cx = rng.uniform(-0.3, 0.3, 2)
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None] - np.float32(cy)
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :] - np.float32(cx)
    vignette = 1 - np.float32(0.15) * (xx * xx + yy * yy)
    drift = np.exp(np.float32(0.15) * smooth_field(rng, shape, max(h, w) / 4))
    return vignette * drift


def camera(rng: np.random.Generator, photons: np.ndarray, noise: float) -> np.ndarray:
    """Shot noise (variance ``noise**2`` x mean), gain, offset, read noise -> uint16."""
    if noise > 0:
        k = np.float32(noise * noise)
        lam = np.maximum(photons, 0) / k
        # Exact Poisson where counts are low; its normal limit elsewhere (identical in
        # practice above ~8 photons, and 5-10x faster than numpy's Poisson sampler there).
        low = lam < 8
        signal = lam + np.sqrt(lam) * rng.standard_normal(lam.shape, dtype=np.float32)
        signal[low] = rng.poisson(lam[low])
        signal *= k
        adu = np.float32(S.CAMERA_GAIN) * signal + np.float32(S.CAMERA_OFFSET)
        adu += np.float32(S.READ_NOISE_ADU * noise) * rng.standard_normal(
            photons.shape, dtype=np.float32
        )
    else:
        adu = np.float32(S.CAMERA_GAIN) * photons + np.float32(S.CAMERA_OFFSET)
    return np.clip(np.round(adu), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def blank(rng: np.random.Generator, shape: tuple[int, int], noise: float) -> np.ndarray:
    """Camera frames of an empty field (the gap between tiled slides)."""
    out = np.empty((len(S.CHANNEL_NAMES), *shape), dtype=np.uint16)
    for ch in range(len(S.CHANNEL_NAMES)):
        out[ch] = camera(rng, np.full(shape, 0.5 * S.BACKGROUND_PHOTONS[ch], np.float32), noise)
    return out
