"""The plan of a ``cell_views`` run: cells, windows, scales, storage order and tiles.

:func:`plan_views` turns the resolved inputs (image, labels, table) and the view
parameters into a :class:`ViewPlan`: which table rows have views, their centroids
and windows, the rational rescaling factors, the :class:`ViewSpec`, the Hilbert
storage order, the tiles (dask tasks) and the fingerprint. The plan is the one
place views are cut from: ``cell_views`` runs it tile by tile into a store, and
:class:`~madspatial.pp.OnTheFlyViews` runs it for the cells of each batch
(:meth:`ViewPlan.cut`), so both give the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._version import __version__
from ._extract import Cells, ViewSpec, crop_origin, extract_views
from ._geometry import centred_extent, neighbor_distance, plan_tasks, split_region, storage_order
from ._inputs import IdMatch, id_codes, table_ids
from ._label_stats import label_stats
from ._reader import RegionReader
from ._resample import rational_scale

#: Record entries the plan derives from the arguments (window sizes, scales): a store
#: mismatch names them after the arguments, and each region of a multi-region store keeps
#: its own.
DERIVED_VIEW_KEYS = (
    "window_px",
    "morphology_window_px",
    "microenvironment_scale",
    "morphology_scale",
    "microenvironment_scale_pq",
    "morphology_scale_pq",
)


def check_region(img: np.ndarray, origin: tuple[int, int], image_key: str, gain: float) -> None:
    """Raise on NaN/inf pixels or values outside [0, 1] in one region read for views."""
    if np.issubdtype(img.dtype, np.floating):
        if not np.isfinite(img).all():
            y, x = np.argwhere(~np.isfinite(img))[0, 1:]
            raise ValueError(
                f"image {image_key!r} holds NaN/inf pixels, e.g. at (y={origin[0] + y}, "
                f"x={origin[1] + x}); fill them and run mad.pp.normalize again."
            )
        if gain == 255.0 and img.size and (img.min() < -1e-3 or img.max() > 1 + 1e-3):
            raise ValueError(
                f"image {image_key!r} holds values outside [0, 1] near (y={origin[0]}, "
                f"x={origin[1]}); run mad.pp.normalize first."
            )


@dataclass
class ViewPlan:
    """Everything needed to cut any cell's views, in table row order (after ``keep``).

    ``cells`` are the kept table rows; ``order`` is their storage (Hilbert) order and
    ``ranges`` the storage row ranges of the tiles; ``lo_*``/``hi_*`` the image pixels
    each cell's views read; ``attrs`` the parameters recorded with the views.
    """

    image: RegionReader
    labels: RegionReader
    offset: tuple[int, int]
    image_key: str
    spec: ViewSpec
    cells: Cells
    rows_ids: np.ndarray
    order: np.ndarray
    ranges: list[tuple[int, int]]
    bounds: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # lo_y, hi_y, lo_x, hi_x
    max_side: float
    shape: tuple[int, int]
    border: np.ndarray
    n_cut: int
    attrs: dict[str, Any]
    match: IdMatch
    keep: np.ndarray
    extents: tuple[np.ndarray, ...] = field(repr=False, default=())

    @property
    def n(self) -> int:
        return len(self.rows_ids)

    @property
    def n_channels(self) -> int:
        return int(self.image.shape[0])

    @property
    def position(self) -> np.ndarray:
        """Storage position of every table row."""
        pos = np.empty(self.n, dtype=np.int64)
        pos[self.order] = np.arange(self.n, dtype=np.int64)
        return pos

    def groups(self, rows: np.ndarray) -> list:
        """Regions covering ``rows`` (one, or several grid tiles when they are spread out)."""
        lo_y, hi_y, lo_x, hi_x = self.bounds
        return split_region(
            lo_y[rows], hi_y[rows], lo_x[rows], hi_x[rows], self.shape, self.max_side
        )

    def check(self, region: np.ndarray, origin: tuple[int, int]) -> None:
        check_region(region, origin, self.image_key, self.spec.gain)

    def cut(
        self,
        rows: np.ndarray,
        morph_out: np.ndarray | None,
        micro_out: np.ndarray | None,
        dest: np.ndarray,
        groups: list | None = None,
    ) -> np.ndarray:
        """Cut the views of table rows ``rows`` into rows ``dest`` of the outputs.

        ``None`` for an output skips that view. Returns, per row, whether its
        morphology view came out empty (all False when it was skipped).
        """
        rows = np.asarray(rows, dtype=np.int64)
        dest = np.asarray(dest, dtype=np.int64)
        empty = np.zeros(len(rows), dtype=bool)
        if groups is None:
            groups = self.groups(rows)
        for sel, _region in groups:
            empty[sel] = extract_views(
                self.image,
                self.labels,
                self.offset,
                self.cells.take(rows[sel]),
                self.spec,
                morph_out,
                micro_out,
                dest[sel],
                self.check,
            )
        return empty


def plan_views(
    *,
    image,
    labels,
    offset: tuple[int, int],
    table,
    table_key: str,
    labels_key: str,
    image_key: str,
    instance_key: str,
    channel_names: list[str],
    gain: float,
    n_neighbors: int,
    morphology_size: int,
    microenvironment_size: int,
    microenvironment_window: str,
    morphology_window: str,
    window_px: float | None,
    morphology_window_px: float | None,
    morphology_quantile: float,
    morphology_margin: float,
    chunk_size: int,
    cells_per_tile: int,
    missing: str,
    label_id_key: str | None,
    cache_mb: float,
    max_rescaled_side: float,
    key_added: str,
    n_jobs: int,
) -> ViewPlan:
    """Plan the views of ``cell_views`` for resolved inputs (see its docstring)."""
    from .._logging import logger

    h, w = image.shape[1:]
    dy, dx = offset
    # --- cells: label statistics and the table's ids ------------------------------------
    stats = label_stats(labels, n_jobs=n_jobs)
    ids, id_column = table_ids(
        table, instance_key, table_key, labels_key, stats.ids, label_id_key=label_id_key
    )
    codes = id_codes(ids)  # int64 with the ids' bits: uint64 ids >= 2**63 stay exact
    pos, found = stats.lookup(codes)
    in_table = np.isin(stats.ids, codes)
    label_ids = stats.ids.view(np.uint64) if ids.dtype == np.uint64 else stats.ids
    match = IdMatch(ids[~found], label_ids[~in_table])
    keep = np.ones(len(ids), dtype=bool)
    if not match.ok:
        msg = match.describe(labels_key, table_key)
        if missing == "raise":
            raise ValueError(
                msg + ". Fix the table or the segmentation so they describe the same cells, or "
                "pass missing='intersect' to continue with the cells present in both (recorded "
                f"in uns[{key_added!r}]['missing'])."
            )
        logger.warning("cell_views (missing='intersect'): %s; continuing with the rest.", msg)
        keep = found
    rows_ids, rows_codes, pos = ids[keep], codes[keep], pos[keep]
    n = len(rows_ids)
    if len(stats.ids) < n_neighbors + 1 or n == 0:
        raise ValueError(
            f"labels {labels_key!r} hold {len(stats.ids)} cells ({n} in the table), fewer than "
            f"n_neighbors + 1 = {n_neighbors + 1}; lower n_neighbors or pass window_px=."
        )
    cx_all, cy_all = stats.cx + dx, stats.cy + dy
    cx, cy = cx_all[pos], cy_all[pos]

    # --- windows -------------------------------------------------------------------------
    dk = neighbor_distance(np.c_[cx_all, cy_all], np.c_[cx, cy], n_neighbors)
    w_e = float(window_px) if window_px is not None else float(2.0 * np.median(dk))
    if not np.isfinite(w_e) or w_e <= 0:
        raise ValueError(
            f"the microenvironment window came out as {w_e} px (cells share centroids?); "
            "pass window_px=."
        )
    micro_w = (
        np.clip(2.0 * dk, w_e / 4, 4 * w_e)
        if microenvironment_window == "cell"
        else np.full(n, w_e)
    )
    extent = centred_extent(
        cx,
        cy,
        stats.xmin[pos] + dx,
        stats.xmax[pos] + dx,
        stats.ymin[pos] + dy,
        stats.ymax[pos] + dy,
    )
    if morphology_window_px is not None:
        w_m = float(morphology_window_px)
    else:
        w_m = float(np.quantile(extent, morphology_quantile) * morphology_margin)
    morph_w = extent * morphology_margin if morphology_window == "cell" else np.full(n, w_m)
    # Rational rescaling factors (within 0.4% of the exact ones) make tiles agree exactly;
    # the windows actually used follow from them.
    pq_e = rational_scale(microenvironment_size / w_e)
    pq_m = rational_scale(morphology_size / w_m)
    s_e, s_m = pq_e[0] / pq_e[1], pq_m[0] / pq_m[1]
    w_e, w_m = microenvironment_size / s_e, morphology_size / s_m
    if microenvironment_window == "slide":
        micro_w = np.full(n, w_e)
    if morphology_window == "slide":
        morph_w = np.full(n, w_m)
    n_cut = int((extent > w_m).sum()) if morphology_window == "slide" else 0
    spec = ViewSpec(
        morphology_size,
        microenvironment_size,
        microenvironment_window,
        morphology_window,
        pq_e,
        pq_m,
        gain,
    )
    micro_uv = crop_origin(cx, cy, s_e, microenvironment_size)
    morph_uv = crop_origin(cx, cy, s_m, morphology_size)
    half = np.maximum(micro_w, morph_w) / 2
    border = (cx - half < -0.5) | (cx + half > w - 0.5) | (cy - half < -0.5) | (cy + half > h - 0.5)

    # --- plan ----------------------------------------------------------------------------
    order = storage_order(cx, cy, w_e / 2)
    cells = Cells(rows_codes, cx, cy, micro_w, morph_w, micro_uv, morph_uv)
    # Pixels each cell's views read (image px): the window plus the resampling support.
    reach = np.maximum(micro_w / 2 + 2 + max(1.0, 1 / s_e), morph_w / 2 + 2 + max(1.0, 1 / s_m))
    bounds = (cy - reach, cy + reach, cx - reach, cx + reach)
    max_side = max(max_rescaled_side / max(s_e, s_m), 4 * float(reach.max()))
    ranges = plan_tasks(n, chunk_size, cells_per_tile)

    attrs = {
        "channel_names": channel_names,
        "morphology_size": morphology_size,
        "microenvironment_size": microenvironment_size,
        "n_neighbors": int(n_neighbors),
        "image_key": image_key,
        "labels_key": labels_key,
        "table_key": table_key,
        "microenvironment_window": microenvironment_window,
        "morphology_window": morphology_window,
        "window_px": w_e,
        "morphology_window_px": w_m,
        "microenvironment_scale": s_e,
        "morphology_scale": s_m,
        "microenvironment_scale_pq": list(pq_e),
        "morphology_scale_pq": list(pq_m),
        "morphology_quantile": float(morphology_quantile),
        "morphology_margin": float(morphology_margin),
        "image_shape": [int(h), int(w)],
        "labels_offset_yx": [int(dy), int(dx)],
        "label_id_key": id_column,
        "instance_id_dtype": str(rows_ids.dtype),
        "madspatial_version": __version__,
    }
    return ViewPlan(
        image=RegionReader(image, cache_bytes=int(cache_mb * 2**20)),
        labels=RegionReader(labels, cache_bytes=int(cache_mb * 2**20) // 4),
        offset=(int(dy), int(dx)),
        image_key=image_key,
        spec=spec,
        cells=cells,
        rows_ids=rows_ids,
        order=order,
        ranges=ranges,
        bounds=bounds,
        max_side=max_side,
        shape=(int(h), int(w)),
        border=border,
        n_cut=n_cut,
        attrs=attrs,
        match=match,
        keep=keep,
        extents=(
            stats.area[pos],
            stats.xmin[pos],
            stats.xmax[pos],
            stats.ymin[pos],
            stats.ymax[pos],
        ),
    )
