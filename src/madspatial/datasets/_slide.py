"""``mad.datasets.synthetic_slide``: a whole-slide synthetic tissue written tile by tile.

The in-memory :func:`~madspatial.datasets.synthetic_tissue` holds the whole image; a real
slide of 10^5-10^6 cells does not fit that way. This generator draws the slide as a grid
of independent tissue tiles (each one :func:`~._tissue_slide.render_slide`, seeded by its
position), writes every tile into chunked zarr arrays as soon as it is drawn, and keeps
only the per-cell table in memory. The result is a zarr-backed SpatialData whose image
and labels are read lazily, the shape of data the scale benchmarks and users' slides have.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._constants import (
    CELL_LABELS_KEY,
    COORDINATE_SYSTEM,
    IMAGE_KEY,
    INSTANCE_KEY,
    LAYER_COUNTS,
    OBS_CELL_TYPE,
    OBS_MORPH_CLASS,
    OBS_NICHE,
    OBS_SAMPLE,
    OBS_SLIDE,
    OBSM_SPATIAL,
    REGION_KEY,
    TABLE_KEY,
    UNS_SYNTHETIC,
)
from .._logging import logger
from . import _tissue_spec as S
from ._gene_sets import panel_genes
from ._synthetic import _check_imaging, _check_int, _check_niche_imprint
from ._tissue_expression import simulate_counts
from ._tissue_layout import _split_counts, nominal_area_per_cell
from ._tissue_render import blank
from ._tissue_slide import render_slide

#: Fewest cells a tile may be drawn with (the layout needs a few of every niche).
_MIN_CELLS_PER_TILE = 50


def _tile_centroids(labels: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (x, y) and areas of ``ids`` in one tile's label image (tile pixels)."""
    from ..io._arrays import label_centroids

    return label_centroids(labels, ids)


def synthetic_slide(
    path: str | Path,
    *,
    n_cells: int = 100_000,
    seed: int = 0,
    noise: float = 1.0,
    n_genes: int | None = None,
    dispersion: float = 4.0,
    pixel_size: float = S.PIXEL_SIZE_UM,
    tile_px: int = 2048,
    chunk_px: int = 1024,
    expression: bool = True,
    niche_imprint: float = 0.0,
    overwrite: bool = False,
):
    """Write a synthetic tissue slide of any size to a zarr SpatialData, tile by tile.

    The slide is a grid of ``tile_px`` x ``tile_px`` tiles; each tile is an independent
    patch of the tissue of :func:`synthetic_tissue` (tumour nests, stroma, immune
    aggregates, the same eight subtypes, trajectory and counts), drawn from a seed derived
    from ``seed`` and the tile's index, with one stain gain for the whole slide. Only one
    tile's pixels are in memory at a time (about ``tile_px^2 x 30`` bytes while it is
    drawn, ~130 MB at the default), so 10^6 cells and more fit on a laptop; the per-cell
    table (ground truth, centroids, counts) is kept in memory and written at the end.
    Tissue is continuous within a tile, not across tile seams.

    Parameters
    ----------
    path
        Folder of the ``.zarr`` SpatialData to write.
    n_cells
        Cells over the whole slide (about 9,500 per tile at the default density and tile
        size; the grid is as square as possible, spare tiles are empty background).
    seed
        Seed of everything; the same seed gives the same slide.
    noise, dispersion, pixel_size
        As in :func:`synthetic_tissue`.
    n_genes
        Keep the first ``n_genes`` genes of the panel (``None``: all 171).
    tile_px
        Side of a tile in pixels; a multiple of ``chunk_px``.
    chunk_px
        Side of the zarr chunks of the image and labels.
    expression
        Simulate counts (``False``: a table with no genes, for pure imaging benchmarks).
    niche_imprint
        As in :func:`synthetic_tissue`: above 0 one subtype of each niche-only pair stains
        brighter, a weak trace of the niche in the cell itself.
    overwrite
        Replace an existing ``path``.

    Returns
    -------
    The SpatialData read back from ``path`` (image ``"morphology"`` (4, H, W) uint16 and
    labels ``"cell_labels"`` backed by zarr, chunks ``chunk_px``; table ``"table"`` with
    ``obs`` ``instance_id``, ``region``, ``area``, ``cell_type``, ``morph_class``,
    ``niche``, ``trajectory``, ``tumour_distance``, ``slide``, ``sample`` and ``tile``,
    ``obsm["spatial"]``, ``X``/``layers["counts"]`` and ``uns["synthetic_tissue"]``).

    Examples
    --------
    >>> import madspatial as mad
    >>> sdata = mad.datasets.synthetic_slide("slide.zarr", n_cells=20_000)  # doctest: +SKIP
    """
    import spatialdata

    t0 = time.perf_counter()
    n_cells = _check_int("n_cells", n_cells, _MIN_CELLS_PER_TILE)
    seed = _check_int("seed", seed, 0)
    chunk_px = _check_int("chunk_px", chunk_px, 64)
    tile_px = _check_int("tile_px", tile_px, chunk_px)
    if tile_px % chunk_px:
        raise ValueError(
            f"tile_px must be a multiple of chunk_px ({chunk_px}) so each tile writes whole "
            f"chunks; got {tile_px} (e.g. {chunk_px * max(1, round(tile_px / chunk_px))})."
        )
    _check_imaging(noise=noise, dispersion=dispersion, pixel_size=pixel_size)
    _check_niche_imprint(niche_imprint)
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
        shutil.rmtree(path)
    genes = panel_genes() if expression else []
    if expression and n_genes is not None:
        genes = genes[: _check_int("n_genes", n_genes, 1)]
    grid = _tile_grid(n_cells, tile_px)

    # Tiles go to raw zarr arrays beside the output; the SpatialData writer then streams
    # them chunk by chunk into the final element layout (no whole-image array anywhere).
    raw_dir = path.with_name(path.name + f".raw-{os.getpid()}")
    shutil.rmtree(raw_dir, ignore_errors=True)
    try:
        raw_img, raw_lab = _raw_arrays(raw_dir, grid, chunk_px)
        drawn = _draw_tiles(
            raw_img,
            raw_lab,
            grid,
            seed=seed,
            noise=noise,
            genes=genes,
            dispersion=dispersion,
            niche_imprint=float(niche_imprint),
        )
        params = {
            "seed": seed,
            "n_cells": len(drawn.obs),
            "n_slides": 1,
            "n_tiles": grid.n_tiles,
            "tile_px": tile_px,
            "slide_shape": np.asarray([grid.H, grid.W]),
            "noise": float(noise),
            "dispersion": float(dispersion),
            "pixel_size": float(pixel_size),
            "niche_imprint": float(niche_imprint),
            "max_overlap_px": float(drawn.max_overlap),
        }
        table = _slide_table(drawn, genes, params)
        _write_sdata(path, raw_img, raw_lab, table, pixel_size=pixel_size)
    finally:
        shutil.rmtree(raw_dir, ignore_errors=True)
    logger.info(
        "synthetic_slide: %d cells, %d x %d px (%d tiles) -> %s in %.1f s",
        len(drawn.obs),
        grid.H,
        grid.W,
        grid.n_tiles,
        path,
        time.perf_counter() - t0,
    )
    return spatialdata.read_zarr(path)


@dataclass(frozen=True)
class _Grid:
    """The slide's grid of tiles: ``n_tiles`` drawn, the rest of ``nrow x ncol`` empty."""

    tile_px: int
    n_tiles: int
    per_tile: np.ndarray  # cells per drawn tile
    nrow: int
    ncol: int

    @property
    def H(self) -> int:
        return self.nrow * self.tile_px

    @property
    def W(self) -> int:
        return self.ncol * self.tile_px


def _tile_grid(n_cells: int, tile_px: int) -> _Grid:
    """Tiles at the default density, in a grid as square as possible."""
    per_tile_nominal = tile_px * tile_px / nominal_area_per_cell()
    n_tiles = max(1, math.ceil(n_cells / per_tile_nominal))
    per_tile = _split_counts(n_cells, np.ones(n_tiles))
    if per_tile.min() < _MIN_CELLS_PER_TILE:
        raise ValueError(
            f"{n_cells} cells over {n_tiles} tiles leave fewer than {_MIN_CELLS_PER_TILE} "
            "per tile; give more cells or a smaller tile_px."
        )
    ncol = math.ceil(math.sqrt(n_tiles))
    nrow = math.ceil(n_tiles / ncol)
    return _Grid(tile_px=tile_px, n_tiles=n_tiles, per_tile=per_tile, nrow=nrow, ncol=ncol)


def _raw_arrays(raw_dir: Path, grid: _Grid, chunk_px: int):
    """Create the raw zarr image (C, H, W) uint16 and labels (H, W) uint32 the tiles go to."""
    import zarr

    raw_img = zarr.create_array(
        store=str(raw_dir / "image"),
        shape=(len(S.CHANNEL_NAMES), grid.H, grid.W),
        chunks=(1, chunk_px, chunk_px),
        dtype="uint16",
    )
    raw_lab = zarr.create_array(
        store=str(raw_dir / "labels"),
        shape=(grid.H, grid.W),
        chunks=(chunk_px, chunk_px),
        dtype="uint32",
    )
    return raw_img, raw_lab


@dataclass
class _Drawn:
    """What the tiles drew: the cells' ground truth, centroids and counts."""

    obs: pd.DataFrame
    xy: np.ndarray
    counts: list[sp.csr_matrix]
    max_overlap: float


def _draw_tiles(
    raw_img, raw_lab, grid: _Grid, *, seed, noise, genes, dispersion, niche_imprint=0.0
) -> _Drawn:
    """Draw every tile from its own seed, write its pixels, keep its cells' table rows."""
    tile_px, ncol = grid.tile_px, grid.ncol
    seeds = np.random.SeedSequence(seed).spawn(grid.nrow * ncol + 1)
    gain = np.exp(np.random.default_rng(seeds[-1]).normal(0, 0.08, len(S.CHANNEL_NAMES)))
    obs_parts: list[pd.DataFrame] = []
    xy_parts: list[np.ndarray] = []
    counts: list[sp.csr_matrix] = []
    offset = 0
    max_overlap = 0.0
    for t in range(grid.nrow * ncol):
        y0, x0 = (t // ncol) * tile_px, (t % ncol) * tile_px
        win = (slice(y0, y0 + tile_px), slice(x0, x0 + tile_px))
        rngs = [np.random.default_rng(s) for s in seeds[t].spawn(5)]
        if t >= grid.n_tiles:  # spare tiles of the grid: an empty field
            raw_img[(slice(None), *win)] = blank(rngs[3], (tile_px, tile_px), noise)
            raw_lab[win] = 0
            continue
        sl = render_slide(
            rngs,
            (tile_px, tile_px),
            int(grid.per_tile[t]),
            noise=noise,
            offset=offset,
            stain_gain=gain,
            niche_imprint=niche_imprint,
        )
        raw_img[(slice(None), *win)] = sl.image
        raw_lab[win] = sl.labels.astype(np.uint32)
        ids = sl.obs[INSTANCE_KEY].to_numpy()
        local = np.where(sl.labels > 0, sl.labels - offset, 0)
        cent, area = _tile_centroids(local, ids - offset)
        obs_parts.append(sl.obs.assign(area=area, tile=t))
        xy_parts.append(cent + np.array([x0, y0]))
        if genes:
            counts.append(
                sp.csr_matrix(
                    simulate_counts(
                        rngs[4], genes, sl.activities, area, dispersion=float(dispersion)
                    )
                )
            )
        offset += sl.n_ids
        max_overlap = max(max_overlap, sl.max_overlap_px)
        logger.debug("synthetic_slide: tile %d/%d (%d cells)", t + 1, grid.n_tiles, len(ids))
    obs = pd.concat(obs_parts, ignore_index=True)
    return _Drawn(
        obs=obs, xy=np.concatenate(xy_parts, axis=0), counts=counts, max_overlap=max_overlap
    )


def _slide_table(drawn: _Drawn, genes: list[str], params: dict):
    """Build the table of the slide's cells (categoricals, counts, centroids, parameters)."""
    import anndata as ad
    from spatialdata.models import TableModel

    obs = drawn.obs
    ids = obs[INSTANCE_KEY].to_numpy().astype(np.int64)
    obs.index = pd.Index([str(i) for i in ids])
    obs.insert(0, REGION_KEY, pd.Categorical([CELL_LABELS_KEY] * len(obs)))
    obs[OBS_SLIDE] = pd.Categorical(["slide_0"] * len(obs))
    obs[OBS_SAMPLE] = pd.Categorical(["sample_0"] * len(obs))
    for key, cats in (
        (OBS_CELL_TYPE, S.CELL_TYPES),
        (OBS_MORPH_CLASS, S.MORPH_CLASSES),
        (OBS_NICHE, S.NICHES),
    ):
        obs[key] = pd.Categorical(obs[key].astype(str), categories=list(cats))
    if genes:
        X = sp.vstack(drawn.counts, format="csr").astype(np.float32)
        var = pd.DataFrame(index=pd.Index(list(genes)))
    else:
        X = sp.csr_matrix((len(obs), 0), dtype=np.float32)
        var = pd.DataFrame(index=pd.Index([], dtype=str))
    adata = ad.AnnData(X=X, obs=obs, var=var)
    if genes:
        adata.layers[LAYER_COUNTS] = adata.X.copy()
    adata.obsm[OBSM_SPATIAL] = drawn.xy
    adata.uns[UNS_SYNTHETIC] = params
    return TableModel.parse(
        adata, region=CELL_LABELS_KEY, region_key=REGION_KEY, instance_key=INSTANCE_KEY
    )


def _write_sdata(path: Path, raw_img, raw_lab, table, *, pixel_size: float) -> None:
    """Stream the raw arrays and the table into the SpatialData at ``path``."""
    import dask.array as da
    from spatialdata import SpatialData
    from spatialdata.models import Image2DModel, Labels2DModel
    from spatialdata.transformations import Identity, Scale

    transforms = {
        COORDINATE_SYSTEM: Identity(),
        "microns": Scale([pixel_size, pixel_size], axes=("y", "x")),
    }
    image_el = Image2DModel.parse(
        da.from_zarr(raw_img),
        dims=("c", "y", "x"),
        c_coords=list(S.CHANNEL_NAMES),
        transformations=dict(transforms),
    )
    labels_el = Labels2DModel.parse(
        da.from_zarr(raw_lab), dims=("y", "x"), transformations=dict(transforms)
    )
    SpatialData(
        images={IMAGE_KEY: image_el},
        labels={CELL_LABELS_KEY: labels_el},
        tables={TABLE_KEY: table},
    ).write(path)
