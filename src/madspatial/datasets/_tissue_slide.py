"""One slide of the synthetic tissue: layout, cells, rasterized labels, image, ground truth.

Shared by :func:`~madspatial.datasets.synthetic_tissue` (slides tiled into one in-memory
image) and :func:`~madspatial.datasets.synthetic_slide` (tiles written one at a time to a
zarr-backed SpatialData), so both draw cells the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._constants import (
    INSTANCE_KEY,
    OBS_CELL_TYPE,
    OBS_MORPH_CLASS,
    OBS_NICHE,
    OBS_TRAJECTORY,
    OBS_TUMOUR_DISTANCE,
)
from . import _tissue_spec as S
from ._tissue_cells import imprint_niche, relax_positions, sample_cells
from ._tissue_expression import program_activities
from ._tissue_layout import make_layout
from ._tissue_render import rasterize_all, render_image


@dataclass
class RenderedSlide:
    """A rendered slide; label ids are ``offset + 1 ..`` (0 = background)."""

    image: np.ndarray  # (C, H, W) uint16
    labels: np.ndarray  # (H, W) int32
    nucleus: np.ndarray  # (H, W) int32
    obs: pd.DataFrame  # one row per cell present in `labels`, INSTANCE_KEY first
    activities: dict[str, np.ndarray]  # program activities of those rows
    n_ids: int  # ids drawn (some may be absent from `labels`)
    max_overlap_px: float


def render_slide(
    rngs: list[np.random.Generator],
    shape: tuple[int, int],
    n_cells: int,
    *,
    noise: float,
    offset: int = 0,
    stain_gain: np.ndarray | None = None,
    niche_imprint: float = 0.0,
) -> RenderedSlide:
    """Draw and render one slide from its five generators (layout, cells, relax, image, counts).

    ``stain_gain=None`` draws the slide's own stain gain (a batch effect per slide) from the
    image generator; tiles of one large slide pass a shared gain instead. ``niche_imprint``:
    see :func:`~._tissue_cells.imprint_niche`.
    """
    r_layout, r_cells, r_relax, r_image, _ = rngs
    layout = make_layout(r_layout, shape, int(n_cells))
    params = sample_cells(r_cells, layout)
    imprint_niche(params, layout, niche_imprint)
    relax = relax_positions(r_relax, layout, params)
    labels, nuc = rasterize_all(layout, params)
    gain = np.exp(r_image.normal(0, 0.08, len(S.CHANNEL_NAMES)))
    if stain_gain is not None:
        gain = np.asarray(stain_gain, dtype=float)
    img = render_image(r_image, labels, nuc, params, layout.niche_map, noise=noise, stain_gain=gain)
    h, w = shape
    ix = np.clip(np.round(layout.xy).astype(int), 0, [w - 1, h - 1])
    dist = layout.tumour_distance[ix[:, 1], ix[:, 0]]
    ids = np.arange(1, len(layout.xy) + 1)
    present = np.bincount(labels.ravel(), minlength=len(ids) + 1)[1:] > 0
    traj = np.where(layout.cell_type == S.STROMAL_FIBROBLAST, params.activation, np.nan)
    obs = pd.DataFrame(
        {
            INSTANCE_KEY: ids + offset,
            OBS_CELL_TYPE: np.asarray(S.CELL_TYPES)[layout.cell_type],
            OBS_MORPH_CLASS: np.asarray(S.MORPH_CLASSES)[layout.morph_class],
            OBS_NICHE: np.asarray(S.NICHES)[layout.niche],
            OBS_TRAJECTORY: traj,
            OBS_TUMOUR_DISTANCE: dist.astype(np.float64),
        }
    )[present]
    activities = program_activities(
        layout.morph_class,
        layout.cell_type,
        layout.niche,
        params.activation,
        np.maximum(-dist, 0.0),
    )
    return RenderedSlide(
        image=img,
        labels=np.where(labels > 0, labels + offset, 0).astype(np.int32),
        nucleus=np.where(nuc > 0, nuc + offset, 0).astype(np.int32),
        obs=obs,
        activities={k: v[present] for k, v in activities.items()},
        n_ids=len(ids),
        max_overlap_px=float(relax["hard_overlap_px"]),
    )
