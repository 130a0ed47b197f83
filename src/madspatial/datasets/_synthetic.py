"""``mad.datasets.synthetic_tissue``: a fluorescence tissue where both views matter."""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._constants import (
    INSTANCE_KEY,
    NUCLEUS_LABELS_KEY,
    OBS_CELL_TYPE,
    OBS_MORPH_CLASS,
    OBS_NICHE,
    OBS_SAMPLE,
    OBS_SLIDE,
    TABLE_KEY,
    UNS_COLORS_SUFFIX,
    UNS_SYNTHETIC,
)
from .._logging import logger
from . import _tissue_spec as S
from ._gene_sets import panel_genes, synthetic_gene_sets
from ._tissue_expression import simulate_counts
from ._tissue_layout import _split_counts, nominal_area_per_cell
from ._tissue_render import blank
from ._tissue_slide import render_slide

#: Densest packing accepted when both ``n_cells`` and ``size`` are given, as a
#: multiple of the default density (beyond it intrinsic cells cannot all fit).
_MAX_DENSITY = 1.25
_MIN_CELLS_PER_SLIDE = 50


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def _slide_shape(size, n_per_slide: int) -> tuple[int, int]:
    if size is None:
        side = round(math.sqrt(n_per_slide * nominal_area_per_cell()))
        return side, side
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        shape = (int(size), int(size))
    elif (
        isinstance(size, Sequence)
        and len(size) == 2
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in size)
    ):
        shape = (int(size[0]), int(size[1]))
    else:
        raise TypeError(f"size must be an int or a (height, width) pair of ints, got {size!r}.")
    if min(shape) < 64:
        raise ValueError(f"size must be at least 64 px per side, got {shape}.")
    return shape


def synthetic_tissue(
    *,
    n_cells: int | None = 5000,
    size: int | tuple[int, int] | None = None,
    n_slides: int = 1,
    noise: float = 1.0,
    seed: int = 0,
    n_genes: int | None = None,
    dispersion: float = 4.0,
    pixel_size: float = S.PIXEL_SIZE_UM,
    niche_imprint: float = 0.0,
):
    """Generate a procedural four-channel fluorescence tissue with known ground truth.

    Tumour nests, stroma and immune aggregates, populated by four morphological
    classes of cells whose eight subtypes are designed so that **neither view
    alone recovers them all**: three subtype pairs differ only by where the cell
    lives (identical morphology distributions; the neighbourhood tells them
    apart), one pair differs only by the cell's own morphology (same niche, same
    placement). Stromal fibroblasts carry a continuous activation trajectory.
    Deterministic for a seed; 10,000 cells take ~5-10 s on one core.

    **Niches** (``obs["niche"]``): ``tumour`` (nests: the upper 42 % of a smooth
    random field), ``stroma`` (the rest) and ``immune`` (aggregates: noisy discs
    of radius 34-56 px placed in the stroma, ~9 % of the area). Class mix:
    tumour 68 % epithelial / 12 % fibroblast / 8 % lymphocyte / 12 % macrophage;
    stroma 60 % fibroblast / 22 % lymphocyte / 18 % macrophage; immune 88 %
    lymphocyte / 6 % fibroblast / 6 % macrophage.

    **Morphological classes** (``obs["morph_class"]``; sizes in px, 0.85 um/px):

    ============ ============================ ======= ========================================
    class        shape                        N:C     stains and texture
    ============ ============================ ======= ========================================
    epithelial   polygonal, packed, r ~ 11    0.2-0.3 E-cadherin membrane, bright 18S
    fibroblast   spindle, 17-29 x 5-9,        ~0.38   alphaSMA/vimentin (rises with
                 aligned to a fibre field              activation), faint membrane
    lymphocyte   small round, r ~ 5           ~0.65   bright clumped DAPI, CD45 ring
    macrophage   large irregular, r ~ 11      ~0.12   eccentric kidney nucleus, granular
                                                       18S and vimentin, CD45
    ============ ============================ ======= ========================================

    **Subtypes** (``obs["cell_type"]``):

    ==================== ========== ======= ==================================================
    subtype              class      niche   told apart from its partner by
    ==================== ========== ======= ==================================================
    tumour_proliferative epithelial tumour  MORPHOLOGY only: larger (r 5.9 vs 4.7) brighter
                                            nucleus, coarse chromatin, 20 % in mitosis
                                            (condensed DAPI bar); PROLIFERATION program
    tumour_quiescent     epithelial tumour  (partner; TUMOUR_DIFFERENTIATION program)
    CAF                  fibroblast tumour  NICHE only (inside nests); CAF program
    stromal_fibroblast   fibroblast stroma, NICHE only; STROMAL_FIBROBLAST program;
                                    immune  carries the trajectory
    TAM                  macrophage tumour  NICHE only; TAM program
    stromal_macrophage   macrophage stroma, NICHE only; RESIDENT_MACROPHAGE program
                                    immune
    T_cell               lymphocyte tumour, NICHE only (outside aggregates); T_CELL program
                                    stroma
    B_cell               lymphocyte immune  NICHE only (in aggregates); B_CELL program
    ==================== ========== ======= ==================================================

    Niche-only partners draw every morphology parameter (size, shape, nucleus,
    stain levels, textures) from the same distribution, and cells that keep
    their shape (fibroblasts, lymphocytes, macrophages) are placed without
    overlap so crowding cannot leak the niche into their outline, and with a
    1.5-2 px extracellular cleft around them so the PSF does not carry a
    neighbour's stain into their rim (measured leak: < 3 % of mean intensity);
    only their surroundings differ. Proliferative and quiescent tumour cells are assigned
    at random within the nests, so their surroundings are identical in
    distribution.

    **Trajectory** (``obs["trajectory"]``, NaN for all other cells): fibroblast
    activation of stromal fibroblasts, ``exp(-d / 60 px)`` of the distance ``d``
    to the nearest nest plus N(0, 0.04), in [0, 1], rising towards the nests.
    It elongates the cell (aspect ratio 2 + 2.8 x activation), raises
    alphaSMA/vimentin and drives the MYOFIBROBLAST_ACTIVATION program. CAFs draw
    their activation from the stromal fibroblasts' values (so the pair stays
    morphologically identical) but without spatial order; it is not reported.

    **Expression**: negative-binomial counts (``dispersion`` = NB shape) of a
    panel of real human gene symbols (129 program genes, 12 housekeeping, 30
    markers of absent cell types) around the programs of
    :func:`synthetic_gene_sets` (class + subtype programs at 9-30x, niche
    programs at 0.6 of that log-fold — hypoxia deepening into the nests —, the
    activation program scaled by activation); library size grows with the
    cell's area. Expression therefore depends on morphology and on context.

    **Imaging**: channels ``DAPI``, ``ATP1A1/CD45/E-Cadherin``, ``18S``,
    ``alphaSMA/Vimentin`` (the Xenium morphology stains); Gaussian PSF
    (sigma 1 px), tissue autofluorescence, a smooth multiplicative illumination
    field per channel and slide (vignetting x drift, ~0.45-1.3, so flat-field
    correction matters), a per-slide stain gain (batch effect, ~8 %), Poisson
    shot noise, camera gain 10 ADU/photon, offset 100 ADU and read noise; cells
    touch, and cells are cut by the image border.

    Parameters
    ----------
    n_cells
        Number of cells over all slides (each slide gets an equal share). With
        ``size=None`` the image is sized for the default density (~440 px² per
        cell: 5,000 cells -> ~1,490 x 1,490 px). ``None``: derived from ``size``.
    size
        Side (int) or ``(height, width)`` of each slide in pixels; ``None``:
        from ``n_cells``. When both are given, the density may be at most 1.25x
        the default.
    n_slides
        Number of slides (independent tissues, one ``slide`` and ``sample``
        each), tiled in a grid into one image with 48 px gaps.
    noise
        Scale of the imaging noise: shot-noise variance is ``noise**2`` times
        the signal, read noise ``6 * noise`` ADU. ``0`` gives a noise-free
        image (blur, background and illumination stay). Does not change the
        layout, the cells or the counts.
    seed
        Seed of everything; the same seed gives identical arrays.
    n_genes
        Keep the first ``n_genes`` genes of the panel (program genes first,
        then housekeeping, then absent-type markers). ``None``: all 171.
    dispersion
        Shape ``theta`` of the negative binomial (variance ``mu + mu²/theta``).
    pixel_size
        Microns per pixel recorded in the ``"microns"`` coordinate system.
    niche_imprint
        In ``[0, 1]``; default ``0``: the niche-only partners are identical in the cell
        itself. Above 0 the first subtype of each niche-only pair (``CAF``, ``TAM``,
        ``T_cell``) stains brighter in every channel by ``0.15 * niche_imprint`` (the
        per-channel intensity jitter of pretraining is +-20 %): a weak trace of the niche in
        the cell, for testing whether cross-view distillation moves it into the morphology
        embedding. The cells, shapes, positions and counts stay those of the same seed
        without it (the imaging noise is drawn afresh).

    Returns
    -------
    A :class:`spatialdata.SpatialData` with

    - image ``"morphology"``: ``(4, H, W)`` uint16, channel names as above;
    - labels ``"cell_labels"`` (whole cells) and ``"nucleus_labels"`` (same id
      as the cell; a few cells cut by the border or squeezed have no nucleus);
    - table ``"table"`` annotating ``"cell_labels"`` (``region``/``instance_id``):
      ``X`` and ``layers["counts"]`` (sparse CSR float32 counts),
      ``obs``: ``instance_id``, ``region``, ``area`` (px), ``cell_type``,
      ``morph_class``, ``niche`` (categoricals in the orders of
      ``CELL_TYPES``/``MORPH_CLASSES``/``NICHES``), ``trajectory``,
      ``tumour_distance`` (px from the cell centre to the nearest nest edge,
      negative inside nests), ``slide``, ``sample``; ``obsm["spatial"]``
      (centroid x, y in px); ``uns["cell_type_colors"]``,
      ``uns["morph_class_colors"]``, ``uns["niche_colors"]`` and
      ``uns["synthetic_tissue"]`` (the generation parameters).

    Examples
    --------
    >>> import madspatial as mad
    >>> sdata = mad.datasets.synthetic_tissue(n_cells=2000, seed=1)
    >>> sdata.tables["table"].obs["cell_type"].value_counts()  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    n_slides = _check_int("n_slides", n_slides, 1)
    seed = _check_int("seed", seed, 0)
    _check_imaging(noise=noise, dispersion=dispersion, pixel_size=pixel_size)
    _check_niche_imprint(niche_imprint)
    genes = _panel(n_genes)
    n_cells, per_slide, shape = _slide_plan(n_cells, size, n_slides)
    tiled = _render_tiled(seed, n_slides, shape, per_slide, noise, float(niche_imprint))
    obs = pd.concat(tiled.obs_parts, ignore_index=True)
    ids = obs[INSTANCE_KEY].to_numpy()
    area = np.bincount(tiled.labels.ravel(), minlength=tiled.n_ids + 1)[ids].astype(float)
    X = _simulate_all_counts(tiled, genes, area, dispersion=float(dispersion))
    obs.index = pd.Index([str(i) for i in ids])
    sdata = _build_sdata(tiled, obs, X, genes, pixel_size=float(pixel_size))
    _annotate(
        sdata.tables[TABLE_KEY],
        {
            "seed": seed,
            "n_cells": len(ids),
            "n_slides": n_slides,
            "slide_shape": np.asarray(shape),
            "noise": float(noise),
            "dispersion": float(dispersion),
            "pixel_size": float(pixel_size),
            "niche_imprint": float(niche_imprint),
            "max_overlap_px": float(max(tiled.relax_stats)),
        },
    )
    _add_nucleus_labels(sdata, tiled.nucleus)
    H, W = tiled.labels.shape
    logger.debug(
        "synthetic_tissue: %d cells, %d x %d px, %.1f s", len(ids), H, W, time.perf_counter() - t0
    )
    return sdata


def _check_imaging(*, noise, dispersion, pixel_size) -> None:
    """Check the imaging and count options shared by the synthetic tissue and slide."""
    if not isinstance(noise, numbers.Real) or not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}.")
    if not isinstance(dispersion, numbers.Real) or not dispersion > 0:
        raise ValueError(f"dispersion must be > 0 (negative-binomial shape), got {dispersion!r}.")
    if not isinstance(pixel_size, numbers.Real) or not pixel_size > 0:
        raise ValueError(f"pixel_size must be > 0 (microns per pixel), got {pixel_size!r}.")


def _check_niche_imprint(niche_imprint) -> None:
    """Check ``niche_imprint`` of the synthetic tissue and slide: a number in [0, 1]."""
    if (
        isinstance(niche_imprint, bool)
        or not isinstance(niche_imprint, numbers.Real)
        or not 0 <= niche_imprint <= 1
    ):
        raise ValueError(f"niche_imprint must be a number in [0, 1], got {niche_imprint!r}.")


def _panel(n_genes) -> list[str]:
    """Return the panel's genes, the first ``n_genes`` of them (at least the program genes)."""
    genes = panel_genes()
    if n_genes is None:
        return genes
    n_program = sum(len(v) for v in synthetic_gene_sets().values())
    n_genes = _check_int("n_genes", n_genes, 1)
    if not n_program <= n_genes <= len(genes):
        raise ValueError(
            f"n_genes must be between {n_program} (the program genes) and {len(genes)} "
            f"(the whole panel), got {n_genes}."
        )
    return genes[:n_genes]


def _slide_plan(n_cells, size, n_slides: int) -> tuple[int, np.ndarray, tuple[int, int]]:
    """Total cells, cells per slide and the slide shape, checked against the densest packing."""
    if n_cells is None:
        if size is None:
            raise ValueError("give n_cells, size, or both.")
        h, w = _slide_shape(size, 1)
        n_cells = n_slides * max(_MIN_CELLS_PER_SLIDE, round(h * w / nominal_area_per_cell()))
    n_cells = _check_int("n_cells", n_cells, _MIN_CELLS_PER_SLIDE * n_slides)
    per_slide = _split_counts(n_cells, np.ones(n_slides))
    shape = _slide_shape(size, int(per_slide.max()))
    max_cells = int(_MAX_DENSITY * shape[0] * shape[1] / nominal_area_per_cell())
    if per_slide.max() > max_cells:
        raise ValueError(
            f"{per_slide.max()} cells do not fit on a {shape[0]} x {shape[1]} px slide "
            f"(at most {max_cells}); give a larger size, fewer cells, or size=None."
        )
    return n_cells, per_slide, shape


@dataclass
class _Tiled:
    """The slides rendered and tiled into one image, with what each slide drew."""

    image: np.ndarray  # (C, H, W) uint16
    labels: np.ndarray  # (H, W) int32
    nucleus: np.ndarray  # (H, W) int32
    obs_parts: list[pd.DataFrame]
    activities_parts: list[dict[str, np.ndarray]]
    relax_stats: list[float]
    slide_rngs: list[list[np.random.Generator]]
    n_ids: int  # label ids drawn over all slides


def _render_tiled(
    seed: int,
    n_slides: int,
    shape: tuple[int, int],
    per_slide: np.ndarray,
    noise: float,
    niche_imprint: float = 0.0,
) -> _Tiled:
    """Render every slide from its own generators and tile them in a grid with gaps."""
    slide_rngs = [
        [np.random.default_rng(s) for s in ss.spawn(5)]
        for ss in np.random.SeedSequence(seed).spawn(n_slides)
    ]
    ncol = math.ceil(math.sqrt(n_slides))
    nrow = math.ceil(n_slides / ncol)
    gap = S.SLIDE_GAP_PX
    H = nrow * shape[0] + (nrow - 1) * gap
    W = ncol * shape[1] + (ncol - 1) * gap
    if n_slides == 1:
        image = np.empty((len(S.CHANNEL_NAMES), H, W), dtype=np.uint16)
    else:  # the gaps between slides: camera frames of an empty field
        gap_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(n_slides + 1)[-1])
        image = blank(gap_rng, (H, W), noise)
    out = _Tiled(
        image=image,
        labels=np.zeros((H, W), dtype=np.int32),
        nucleus=np.zeros((H, W), dtype=np.int32),
        obs_parts=[],
        activities_parts=[],
        relax_stats=[],
        slide_rngs=slide_rngs,
        n_ids=0,
    )
    for s in range(n_slides):
        sl = render_slide(
            slide_rngs[s],
            shape,
            int(per_slide[s]),
            noise=noise,
            offset=out.n_ids,
            niche_imprint=niche_imprint,
        )
        y0 = (s // ncol) * (shape[0] + gap)
        x0 = (s % ncol) * (shape[1] + gap)
        win = (slice(y0, y0 + shape[0]), slice(x0, x0 + shape[1]))
        out.image[(slice(None), *win)] = sl.image
        out.labels[win] = sl.labels
        out.nucleus[win] = sl.nucleus
        out.obs_parts.append(sl.obs.assign(**{OBS_SLIDE: f"slide_{s}", OBS_SAMPLE: f"sample_{s}"}))
        out.activities_parts.append(sl.activities)
        out.relax_stats.append(sl.max_overlap_px)
        out.n_ids += sl.n_ids
    return out


def _simulate_all_counts(
    tiled: _Tiled, genes: list[str], area: np.ndarray, *, dispersion: float
) -> sp.csr_matrix:
    """Simulate every slide's counts from the slide's count generator, stacked."""
    counts = []
    start = 0
    for s, act in enumerate(tiled.activities_parts):
        m = len(next(iter(act.values())))
        counts.append(
            simulate_counts(
                tiled.slide_rngs[s][4], genes, act, area[start : start + m], dispersion=dispersion
            )
        )
        start += m
    return sp.csr_matrix(np.concatenate(counts, axis=0))


def _build_sdata(tiled: _Tiled, obs: pd.DataFrame, X, genes: list[str], *, pixel_size: float):
    """Build the SpatialData of the tiled image, the cell labels and the table."""
    from ..io import sdata_from_arrays

    return sdata_from_arrays(
        tiled.image,
        tiled.labels,
        X,
        channel_names=list(S.CHANNEL_NAMES),
        gene_names=genes,
        instance_ids=obs[INSTANCE_KEY].to_numpy(),
        obs=obs.drop(columns=[INSTANCE_KEY]),
        pixel_size=pixel_size,
    )


def _annotate(table, params: dict) -> None:
    """Categoricals in the spec's orders, their colours and the generation parameters."""
    n_slides = params["n_slides"]
    cats = {
        OBS_CELL_TYPE: S.CELL_TYPES,
        OBS_MORPH_CLASS: S.MORPH_CLASSES,
        OBS_NICHE: S.NICHES,
        OBS_SLIDE: [f"slide_{s}" for s in range(n_slides)],
        OBS_SAMPLE: [f"sample_{s}" for s in range(n_slides)],
    }
    for key, categories in cats.items():
        table.obs[key] = pd.Categorical(table.obs[key].astype(str), categories=list(categories))
    for key, colors in (
        (OBS_CELL_TYPE, S.CELL_TYPE_COLORS),
        (OBS_MORPH_CLASS, S.MORPH_CLASS_COLORS),
        (OBS_NICHE, S.NICHE_COLORS),
    ):
        table.uns[key + UNS_COLORS_SUFFIX] = np.asarray([colors[c] for c in cats[key]])
    table.uns[UNS_SYNTHETIC] = params


def _add_nucleus_labels(sdata, nucleus: np.ndarray) -> None:
    """Add the nucleus labels with the cell labels' transformations."""
    from spatialdata.models import Labels2DModel
    from spatialdata.transformations import get_transformation

    transforms = get_transformation(sdata.labels[next(iter(sdata.labels))], get_all=True)
    sdata[NUCLEUS_LABELS_KEY] = Labels2DModel.parse(
        nucleus.astype(np.uint32), dims=("y", "x"), transformations=dict(transforms)
    )
