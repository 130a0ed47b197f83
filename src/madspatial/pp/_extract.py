"""Cut the morphology and microenvironment views of a group of neighbouring cells.

Slide-wide windows (the default) take the "rescale once, then crop" path: the
image around the cells is rescaled onto the global grid of the rescaled slide
(see ``_resample``) and every view is a plain copy of a ``size x size`` block
of it, written straight into its destination row. Morphology views sample the
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

from ._resample import (
    aligned_range,
    nearest_indices,
    padded,
    resize_uint8,
    to_uint8,
)

#: Cells per roi_align call (bounds the float temporaries of the per-cell path).
ROI_BATCH = 64
#: Most float32 values of the per-cell crops of one roi_align call.
ROI_PIXELS = 2**23


@dataclass
class ViewSpec:
    """How views are cut; shared by all tasks of one ``cell_views`` call."""

    morphology_size: int
    microenvironment_size: int
    micro_mode: str  # "slide" | "cell"
    morph_mode: str
    micro_pq: tuple[int, int]  # rational rescaling factor p / q (slide mode)
    morph_pq: tuple[int, int]
    gain: float  # 255 for [0, 1] float images, 1 for uint8

    @property
    def micro_scale(self) -> float:
        return self.micro_pq[0] / self.micro_pq[1]

    @property
    def morph_scale(self) -> float:
        return self.morph_pq[0] / self.morph_pq[1]


@dataclass
class Cells:
    """Some cells (image pixel frame)."""

    ids: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    micro_w: np.ndarray  # window sides, image px
    morph_w: np.ndarray
    micro_uv: np.ndarray  # (n, 2) top-left of the crop on the rescaled grid (slide mode)
    morph_uv: np.ndarray

    def take(self, sel) -> Cells:
        return Cells(*(getattr(self, f)[sel] for f in self.__dataclass_fields__))


def crop_origin(cx: np.ndarray, cy: np.ndarray, scale: float, size: int) -> np.ndarray:
    """Top-left (u, v) on the global rescaled grid of the ``size`` crop centred on each centroid.

    Rescaled pixel ``u`` is centred at image coordinate ``(u + 0.5) / scale - 0.5``;
    the view centre (between its pixels ``size/2 - 1`` and ``size/2``) lands on
    the centroid to within half a rescaled pixel.
    """
    u = np.rint(scale * (cx + 0.5) - size / 2.0).astype(np.int64)
    v = np.rint(scale * (cy + 0.5) - size / 2.0).astype(np.int64)
    return np.stack([u, v], axis=1)


def _slide_need(uv: np.ndarray, size: int, pq: tuple[int, int]):
    """Aligned image and rescaled ranges (y then x) covering the crops at ``uv``."""
    p, q = pq
    ry = aligned_range(int(uv[:, 1].min()), int(uv[:, 1].max()) + size, p, q)
    rx = aligned_range(int(uv[:, 0].min()), int(uv[:, 0].max()) + size, p, q)
    return ry, rx


def _roi_need(cells: Cells, w: np.ndarray):
    y0 = int(np.floor((cells.cy - w / 2).min())) - 2
    y1 = int(np.ceil((cells.cy + w / 2).max())) + 3
    x0 = int(np.floor((cells.cx - w / 2).min())) - 2
    x1 = int(np.ceil((cells.cx + w / 2).max())) + 3
    return (y0, y1), (x0, x1)


def _slide_rescaled(reg, origin, ry, rx):
    sub = padded(reg, origin, ry[0], ry[1], rx[0], rx[1])
    return resize_uint8(sub, (ry[3] - ry[2], rx[3] - rx[2]))


def _roi_views(reg, origin, cells: Cells, w: np.ndarray, size: int, out, dest) -> None:
    """Per-cell crop-and-resize (``roi_align``) of each cell's own window.

    Every cell is sampled from its own small crop whose origin depends on that cell only
    (``floor(centre - w/2) - 2``), so the float32 box coordinates, and hence the pixels,
    are the same whichever other cells are cut with it (a tile, a batch, one cell).
    """
    import torch
    from torchvision.ops import roi_align

    n = len(cells.ids)
    x0 = np.floor(cells.cx - w / 2).astype(np.int64) - 2
    y0 = np.floor(cells.cy - w / 2).astype(np.int64) - 2
    side = int(np.ceil(w.max())) + 6
    c = reg.shape[0]
    # bounded float32 crops: about ROI_PIXELS values per roi_align call
    step = int(max(1, min(ROI_BATCH, ROI_PIXELS // max(1, c * side * side))))
    for a in range(0, n, step):
        sl = slice(a, min(n, a + step))
        crops = np.stack(
            [
                padded(reg, origin, int(y), int(y) + side, int(x), int(x) + side)
                for y, x in zip(y0[sl], x0[sl])
            ]
        )
        feat = torch.from_numpy(crops).float()
        # roi_align(aligned=True) puts pixel i's centre at box coordinate i + 0.5.
        cx, cy, ww = cells.cx[sl] - x0[sl] + 0.5, cells.cy[sl] - y0[sl] + 0.5, w[sl]
        k = len(ww)
        boxes = np.stack(
            [np.arange(k, dtype=np.float64), cx - ww / 2, cy - ww / 2, cx + ww / 2, cy + ww / 2], 1
        )
        r = roi_align(
            feat,
            torch.from_numpy(boxes.astype(np.float32)),
            output_size=size,
            sampling_ratio=-1,
            aligned=True,
        )
        out[dest[sl]] = r.clamp_(0, 255).add_(0.5).to(torch.uint8).numpy()


def _roi_masks(labels, offset, cells: Cells, w: np.ndarray, size: int) -> np.ndarray:
    """Each cell's mask at its own view's bin centres (nearest label == id), (n, size, size)."""
    dy, dx = offset
    j = (np.arange(size) + 0.5) / size
    # Bin j's centre in image coordinates (pixel i centred at i): the window start plus
    # (j + 0.5) bin widths; the same points roi_align samples around.
    px = (cells.cx - w / 2)[:, None] + j[None, :] * w[:, None] - dx
    py = (cells.cy - w / 2)[:, None] + j[None, :] * w[:, None] - dy
    iy, vy = nearest_indices(py, labels.shape[0])
    ix, vx = nearest_indices(px, labels.shape[1])
    ly0, ly1, lx0, lx1 = iy.min(), iy.max() + 1, ix.min(), ix.max() + 1
    lab = labels.read(ly0, ly1, lx0, lx1)
    crops = lab[(iy - ly0)[:, :, None], (ix - lx0)[:, None, :]]
    crops = np.where(vy[:, :, None] & vx[:, None, :], crops, 0)
    return crops == cells.ids[:, None, None].astype(crops.dtype)


def _slide_label_crops(labels, offset, uv, size, scale):
    """Each cell's labels on its morphology crop of the rescaled grid (nearest), (n, size, size).

    Only the crops' pixels are sampled (not the whole rescaled region), from one
    read of the label region they cover.
    """
    dy, dx = offset
    j = np.arange(size)
    iy, vy = nearest_indices((uv[:, 1:2] + j + 0.5) / scale - 0.5 - dy, labels.shape[0])
    ix, vx = nearest_indices((uv[:, 0:1] + j + 0.5) / scale - 0.5 - dx, labels.shape[1])
    ly0, lx0 = int(iy.min()), int(ix.min())
    lab = labels.read(ly0, int(iy.max()) + 1, lx0, int(ix.max()) + 1)
    crops = lab[(iy - ly0)[:, :, None], (ix - lx0)[:, None, :]]
    outside = ~(vy[:, :, None] & vx[:, None, :])
    if outside.any():
        crops[outside] = 0
    return crops


def extract_views(
    image,
    labels,
    offset: tuple[int, int],
    cells: Cells,
    spec: ViewSpec,
    morph_out: np.ndarray | None,
    micro_out: np.ndarray | None,
    dest: np.ndarray,
    check=None,
) -> np.ndarray:
    """Write the views of ``cells`` into rows ``dest`` of ``morph_out`` and ``micro_out``.

    ``image`` and ``labels`` are region readers (image pixel frame; the labels are
    offset by ``offset`` = (dy, dx)). ``check(region, origin)`` validates the raw
    pixels. An output of ``None`` skips that view (nothing of it is read or cut).
    Returns, per cell, whether its morphology mask came out empty.
    """
    n = len(cells.ids)
    empty = np.zeros(n, dtype=bool)
    if n == 0 or (morph_out is None and micro_out is None):
        return empty
    se, sm = spec.microenvironment_size, spec.morphology_size

    def need(mode, uv, size, pq, roi_w):
        return _slide_need(uv, size, pq) if mode == "slide" else _roi_need(cells, roi_w)

    need_e = need_m = None
    if micro_out is not None:
        need_e = need(spec.micro_mode, cells.micro_uv, se, spec.micro_pq, cells.micro_w)
    if morph_out is not None:
        need_m = need(spec.morph_mode, cells.morph_uv, sm, spec.morph_pq, cells.morph_w)
    needs = [nd for nd in (need_e, need_m) if nd is not None]
    h, w = image.shape[-2:]
    y0 = max(0, min(nd[0][0] for nd in needs))
    y1 = min(h, max(nd[0][1] for nd in needs))
    x0 = max(0, min(nd[1][0] for nd in needs))
    x1 = min(w, max(nd[1][1] for nd in needs))
    raw = image.read(y0, max(y0, y1), x0, max(x0, x1))
    if check is not None:
        check(raw, (y0, x0))
    reg = to_uint8(raw, spec.gain)
    del raw
    origin = (y0, x0)
    dest_l = dest.tolist()

    # --- microenvironment ---------------------------------------------------------------
    if micro_out is None:
        pass
    elif spec.micro_mode == "slide":
        ry, rx = need_e
        res = _slide_rescaled(reg, origin, ry, rx)
        vs = (cells.micro_uv[:, 1] - ry[2]).tolist()
        us = (cells.micro_uv[:, 0] - rx[2]).tolist()
        for r, v, u in zip(dest_l, vs, us):
            micro_out[r] = res[:, v : v + se, u : u + se]
        del res
    else:
        _roi_views(reg, origin, cells, cells.micro_w, se, micro_out, dest)

    # --- morphology ---------------------------------------------------------------------
    if morph_out is None:
        pass
    elif spec.morph_mode == "slide":
        ry, rx = need_m
        res = _slide_rescaled(reg, origin, ry, rx)
        crops = _slide_label_crops(labels, offset, cells.morph_uv, sm, spec.morph_scale)
        vs = cells.morph_uv[:, 1] - ry[2]
        us = cells.morph_uv[:, 0] - rx[2]
        # The mask as 0/255 bytes turns masking into a bitwise AND (SIMD) instead of a
        # multiply with a boolean; the image crops come through sliding-window views.
        keep = np.negative((crops == cells.ids.astype(crops.dtype)[:, None, None]).view(np.uint8))
        empty = ~keep.reshape(n, -1).any(axis=1)
        for c in range(res.shape[0]):
            morph_out[dest, c] = sliding_window_view(res[c], (sm, sm))[vs, us] & keep
    else:
        _roi_views(reg, origin, cells, cells.morph_w, sm, morph_out, dest)
        masks = _roi_masks(labels, offset, cells, cells.morph_w, sm)
        for i, r in enumerate(dest_l):
            morph_out[r] *= masks[i]
        empty = ~masks.reshape(n, -1).any(axis=1)
    return empty
