"""Cut the morphology and microenvironment views of the cells of one image region.

Slide-wide windows (the default) use the "rescale once, then crop" path: the
region is resampled onto the global grid of the rescaled slide (see
``_resample``) and every view is a copy of a ``size x size`` block of it, taken
for all cells at once through a sliding-window view. Morphology views take the
labels on the same grid by nearest neighbour and keep only the cell's own
pixels, so "outside the cell is exactly 0" holds in the output pixel grid.

Per-cell windows use ``torchvision.ops.roi_align`` (batched crop-and-resize,
adaptive sampling so shrinking averages) for the image and nearest-neighbour
sampling of the labels at the same bin centres for the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._resample import grid_positions, nearest_indices, resample_to_uint8, resample_weights

#: Cells per roi_align call (bounds the float temporaries of the per-cell path).
ROI_BATCH = 64


@dataclass
class ViewSpec:
    """How views are cut; shared by all tasks of one ``cell_views`` call."""

    morphology_size: int
    microenvironment_size: int
    micro_mode: str  # "slide" | "cell"
    morph_mode: str
    micro_scale: float  # output px per image px (slide mode)
    morph_scale: float
    gain: float  # 255 for [0, 1] float images, 1 for uint8


@dataclass
class Cells:
    """The cells of one region (image pixel frame)."""

    ids: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    micro_w: np.ndarray  # window sides, image px
    morph_w: np.ndarray
    micro_uv: np.ndarray  # (n, 2) top-left of the crop on the rescaled grid (slide mode)
    morph_uv: np.ndarray


def crop_origin(cx: np.ndarray, cy: np.ndarray, scale: float, size: int) -> np.ndarray:
    """Top-left (u, v) on the global rescaled grid of the ``size`` crop centred on each centroid.

    Rescaled pixel ``u`` is centred at image coordinate ``(u + 0.5) / scale - 0.5``;
    the view centre (between its pixels ``size/2 - 1`` and ``size/2``) lands on
    the centroid to within half a rescaled pixel.
    """
    u = np.rint(scale * (cx + 0.5) - size / 2.0).astype(np.int64)
    v = np.rint(scale * (cy + 0.5) - size / 2.0).astype(np.int64)
    return np.stack([u, v], axis=1)


def _rescaled(img, y0, x0, scale, gain, u0, u1, v0, v1):
    """Region resampled onto rescaled-grid pixels ``[v0, v1) x [u0, u1)`` as uint8 (C, ., .)."""
    h, w = img.shape[1:]
    wy = resample_weights(grid_positions(v0, v1, scale, y0), h, scale, gain=gain)
    wx = resample_weights(grid_positions(u0, u1, scale, x0), w, scale)  # gain once, on y
    out = np.empty((img.shape[0], v1 - v0, u1 - u0), dtype=np.uint8)
    return resample_to_uint8(img, wy, wx.T.tocsr(), out)


def _slide_crops(img, y0, x0, uv, scale, size, gain, out):
    u, v = uv[:, 0], uv[:, 1]
    u0, v0 = int(u.min()), int(v.min())
    res = _rescaled(img, y0, x0, scale, gain, u0, int(u.max()) + size, v0, int(v.max()) + size)
    for c in range(res.shape[0]):
        out[:, c] = sliding_window_view(res[c], (size, size))[v - v0, u - u0]
    return u0, v0, res.shape[1:]


def _slide_mask(lab, y0, x0, uv, scale, size, ids, u0, v0, shape):
    """Nearest-neighbour labels on the rescaled grid, cropped per cell, == each cell's id."""
    h, w = lab.shape
    iy, vy = nearest_indices(grid_positions(v0, v0 + shape[0], scale, y0), h)
    ix, vx = nearest_indices(grid_positions(u0, u0 + shape[1], scale, x0), w)
    rs = lab[np.ix_(iy, ix)]
    rs[~vy, :] = 0
    rs[:, ~vx] = 0
    crops = sliding_window_view(rs, (size, size))[uv[:, 1] - v0, uv[:, 0] - u0]
    return crops == ids[:, None, None].astype(crops.dtype)


def _boxes(cells: Cells, w: np.ndarray, y0: int, x0: int):
    import torch

    # roi_align(aligned=True) puts pixel i's centre at box coordinate i + 0.5.
    cx = cells.cx - x0 + 0.5
    cy = cells.cy - y0 + 0.5
    b = np.stack([np.zeros_like(cx), cx - w / 2, cy - w / 2, cx + w / 2, cy + w / 2], axis=1)
    return torch.from_numpy(b.astype(np.float32))


def _roi_crops(img, cells: Cells, w, y0, x0, size, gain, out):
    import torch
    from torchvision.ops import roi_align

    feat = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None]
    boxes = _boxes(cells, w, y0, x0)
    for a in range(0, len(boxes), ROI_BATCH):
        r = roi_align(
            feat, boxes[a : a + ROI_BATCH], output_size=size, sampling_ratio=-1, aligned=True
        )
        r = r.mul_(gain).clamp_(0, 255).add_(0.5)
        out[a : a + ROI_BATCH] = r.to(torch.uint8).numpy()


def _roi_mask(lab, cells: Cells, w, y0, x0, size):
    h, wd = lab.shape
    # Bin j's centre in pixel-centre coordinates (pixel i centred at i): the window start
    # plus (j + 0.5) bin widths; the same points roi_align samples around.
    j = (np.arange(size) + 0.5) / size
    px = (cells.cx - x0 - w / 2)[:, None] + j[None, :] * w[:, None]
    py = (cells.cy - y0 - w / 2)[:, None] + j[None, :] * w[:, None]
    ix, vx = nearest_indices(px, wd)
    iy, vy = nearest_indices(py, h)
    crops = lab[iy[:, :, None], ix[:, None, :]]
    crops = np.where(vy[:, :, None] & vx[:, None, :], crops, 0)
    return crops == cells.ids[:, None, None].astype(crops.dtype)


def extract_views(
    img: np.ndarray,
    lab: np.ndarray,
    origin: tuple[int, int],
    cells: Cells,
    spec: ViewSpec,
    morph_out: np.ndarray,
    micro_out: np.ndarray,
) -> None:
    """Fill ``morph_out`` (n, C, Sm, Sm) and ``micro_out`` (n, C, Se, Se) for ``cells``.

    ``img`` (C, h, w) and ``lab`` (h, w) cover image pixels from ``origin`` = (y0, x0);
    pixels the views need beyond them are zeros (the image border).
    """
    y0, x0 = origin
    if len(cells.ids) == 0:
        return
    se, sm = spec.microenvironment_size, spec.morphology_size
    if spec.micro_mode == "slide":
        _slide_crops(img, y0, x0, cells.micro_uv, spec.micro_scale, se, spec.gain, micro_out)
    else:
        _roi_crops(img, cells, cells.micro_w, y0, x0, se, spec.gain, micro_out)
    if spec.morph_mode == "slide":
        u0, v0, shape = _slide_crops(
            img, y0, x0, cells.morph_uv, spec.morph_scale, sm, spec.gain, morph_out
        )
        mask = _slide_mask(
            lab, y0, x0, cells.morph_uv, spec.morph_scale, sm, cells.ids, u0, v0, shape
        )
    else:
        _roi_crops(img, cells, cells.morph_w, y0, x0, sm, spec.gain, morph_out)
        mask = _roi_mask(lab, cells, cells.morph_w, y0, x0, sm)
    morph_out *= mask[:, None]
