"""Label images on an image's pixel grid: from labels in another grid, or from shapes.

Pixel ``i`` of a spatialdata raster covers ``[i, i + 1)`` in its intrinsic coordinates,
so its centre is ``i + 0.5``. Resampling takes, for each image pixel, the label pixel
under its centre (nearest neighbour: ids are never blended); rasterizing fills the image
pixels whose centres lie inside a polygon (or circle) with the shape's id.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Output chunk side of resampled / rasterized labels.
CHUNK = 2048
#: Labels up to this many bytes are read once for resampling; larger ones block by block.
IN_MEMORY_BYTES = 256 * 2**20


def _describe(rel: np.ndarray) -> str:
    return f"labels px -> image px affine {np.round(rel[:2], 4).tolist()}"


def labels_onto_image(
    labels: Any, rel: np.ndarray, image_shape: tuple[int, int], name: str, image_key: str, cs: str
) -> tuple[Any, tuple[int, int], str | None]:
    """``(labels, (dy, dx), how)``: the labels on the image grid (up to an integer offset).

    ``rel`` maps label pixels (x, y) to image pixels. The identity or an integer
    translation keeps the labels as they are (``how`` is ``None``; cropped to the image
    when they reach beyond it); anything else resamples them by nearest neighbour onto the
    image pixels they cover.
    """
    import dask.array as da

    lin, shift = rel[:2, :2], rel[:2, 2]
    det = float(np.linalg.det(lin))
    if not np.isfinite(det) or abs(det) < 1e-12:
        raise ValueError(
            f"labels {name!r} map to image {image_key!r} (coordinate system {cs!r}) by a "
            f"transformation that is not invertible ({_describe(rel)}, determinant {det:.3g}); "
            "views need labels that cover an area of the image. Fix the labels' "
            "transformation (spatialdata.transformations.set_transformation)."
        )
    h, w = image_shape
    lh, lw = labels.shape
    if np.allclose(lin, np.eye(2), atol=1e-9) and np.allclose(shift, np.round(shift), atol=1e-6):
        # kept as they are: the single-region checks name a shape mismatch or labels
        # reaching beyond the image (a sign of the wrong image or transformation)
        dx, dy = (int(np.rint(v)) for v in shift)
        return labels, (dy, dx), None
    box = _footprint(rel, (lh, lw), (h, w))
    if box is None:
        raise ValueError(
            f"labels {name!r} do not overlap image {image_key!r} in coordinate system {cs!r} "
            f"({_describe(rel)})."
        )
    Y0, X0, Y1, X1 = box
    inv = np.linalg.inv(rel)
    src = labels
    if labels.dtype.itemsize * lh * lw <= IN_MEMORY_BYTES:
        src = np.asarray(labels.compute() if hasattr(labels, "compute") else labels)
    template = da.zeros((Y1 - Y0, X1 - X0), dtype=labels.dtype, chunks=CHUNK)
    out = da.map_blocks(
        _resample_block,
        template,
        src=src,
        inv=inv,
        origin=(Y0, X0),
        dtype=labels.dtype,
        meta=np.empty((0, 0), dtype=labels.dtype),
    )
    return out, (Y0, X0), _describe(rel)


def _footprint(rel, lab_shape, image_shape) -> tuple[int, int, int, int] | None:
    lh, lw = lab_shape
    h, w = image_shape
    corners = np.array([[0, 0, 1], [lw, 0, 1], [0, lh, 1], [lw, lh, 1]], float).T
    xy = (rel @ corners)[:2]
    X0, Y0 = np.floor(xy.min(axis=1)).astype(int)
    X1, Y1 = np.ceil(xy.max(axis=1)).astype(int)
    X0, Y0, X1, Y1 = max(X0, 0), max(Y0, 0), min(X1, w), min(Y1, h)
    if X1 <= X0 or Y1 <= Y0:
        return None
    return int(Y0), int(X0), int(Y1), int(X1)


def _resample_block(block, src, inv, origin, block_info=None):
    (y0, y1), (x0, x1) = block_info[None]["array-location"]
    Y = np.arange(y0, y1) + origin[0] + 0.5
    X = np.arange(x0, x1) + origin[1] + 0.5
    lh, lw = src.shape
    if abs(inv[0, 1]) < 1e-12 and abs(inv[1, 0]) < 1e-12:  # axis-aligned: separable
        ix = np.floor(inv[0, 0] * X + inv[0, 2]).astype(np.int64)
        iy = np.floor(inv[1, 1] * Y + inv[1, 2]).astype(np.int64)
        okx, oky = (ix >= 0) & (ix < lw), (iy >= 0) & (iy < lh)
        out = np.zeros((len(Y), len(X)), dtype=src.dtype)
        if okx.any() and oky.any():
            ixs, iys = ix[okx], iy[oky]
            part = _read(src, iys.min(), iys.max() + 1, ixs.min(), ixs.max() + 1)
            out[np.ix_(oky, okx)] = part[np.ix_(iys - iys.min(), ixs - ixs.min())]
        return out
    xx, yy = np.meshgrid(X, Y)
    ix = np.floor(inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]).astype(np.int64)
    iy = np.floor(inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]).astype(np.int64)
    ok = (ix >= 0) & (ix < lw) & (iy >= 0) & (iy < lh)
    out = np.zeros(xx.shape, dtype=src.dtype)
    if ok.any():
        a, b, c, d = iy[ok].min(), iy[ok].max() + 1, ix[ok].min(), ix[ok].max() + 1
        part = _read(src, a, b, c, d)
        out[ok] = part[iy[ok] - a, ix[ok] - c]
    return out


def _read(src, y0, y1, x0, x1) -> np.ndarray:
    part = src[y0:y1, x0:x1]
    if hasattr(part, "compute"):
        part = part.compute(scheduler="sync")
    return np.asarray(part)


# --- shapes -------------------------------------------------------------------------------


def _shape_label_values(index: Any) -> tuple[np.ndarray, bool]:
    """Label value of every shape: its id when ids are positive integers, else its position + 1."""
    from ..io._ids import _as_id_array

    try:
        ids = _as_id_array(np.asarray(index), "shapes index")
    except ValueError:
        ids = None
    if ids is not None and ids.dtype == np.int64 and len(ids) and ids.min() > 0:
        return ids, True
    return np.arange(1, len(index) + 1, dtype=np.int64), False


def rasterize_shapes(
    shapes: Any,
    obs: Any,
    instance_key: str,
    label_id_key: str | None,
    to_image: np.ndarray,
    image_shape: tuple[int, int],
    name: str,
) -> tuple[Any, tuple[int, int], np.ndarray | None]:
    """``(labels, (dy, dx), codes)``: the polygons / circles of ``shapes`` filled on the image grid.

    ``to_image`` maps the shapes' coordinates (x, y) to image pixels. Each shape is filled
    with its id when the ids (the index) are positive integers, else with its position + 1;
    then ``codes`` holds the label value of each row of ``obs`` (0: no such shape), matched
    by ``obs[label_id_key or instance_key]`` against the index.
    """
    import dask.array as da
    import pandas as pd
    import shapely

    if np.linalg.det(to_image[:2, :2]) == 0:
        raise ValueError(
            f"shapes {name!r} map to the image by a transformation that is not invertible "
            f"({np.round(to_image[:2], 4).tolist()})."
        )
    values, are_ids = _shape_label_values(shapes.index)
    geoms = np.asarray(shapes.geometry.values)
    kinds = shapely.get_type_id(geoms)
    if (kinds == 0).any():  # points: circles of the 'radius' column (Visium HD, Xenium)
        if "radius" not in shapes:
            raise ValueError(
                f"shapes {name!r} hold points without a 'radius' column; cell views need "
                "polygons or circles (spatialdata ShapesModel with radius=)."
            )
        radius = np.asarray(shapes["radius"], dtype=float)
        pts = kinds == 0
        geoms = geoms.copy()
        geoms[pts] = shapely.buffer(geoms[pts], radius[pts], quad_segs=8)
    # every polygon part (a MultiPolygon's too) with its exterior and interior rings: the
    # rings of one part are filled together (even-odd), so the pixels of a hole stay empty
    parts, part_of = shapely.get_parts(geoms, return_index=True)
    rings, group_of_ring = shapely.get_rings(parts, return_index=True)
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    h, w = image_shape
    xy = coords @ to_image[:2, :2].T + to_image[:2, 2] - 0.5  # pixel centres at integers
    if not len(xy):
        raise ValueError(f"shapes {name!r} hold no polygons.")
    x0 = int(np.clip(np.floor(xy[:, 0].min()), 0, w))
    y0 = int(np.clip(np.floor(xy[:, 1].min()), 0, h))
    x1 = int(np.clip(np.ceil(xy[:, 0].max()) + 1, 0, w))
    y1 = int(np.clip(np.ceil(xy[:, 1].max()) + 1, 0, h))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"shapes {name!r} lie outside the image of shape {image_shape}.")
    dtype = np.uint32 if values.max() < 2**32 else np.int64
    out = np.zeros((y1 - y0, x1 - x0), dtype=dtype)
    bounds = np.r_[0, np.flatnonzero(np.diff(ring_of)) + 1, len(ring_of)]
    groups = group_of_ring[ring_of[bounds[:-1]]]  # the polygon part of each ring
    fill_rings(out, xy - [x0, y0], bounds, values[part_of], groups=groups)
    labels = da.from_array(out, chunks=out.shape)  # in memory already: one chunk, no assembling
    codes = None
    if not are_ids:
        col = label_id_key or instance_key
        pos = pd.Index(pd.Index(shapes.index).astype(str)).get_indexer(obs[col].astype(str))
        codes = np.where(pos >= 0, values[np.maximum(pos, 0)], 0)
    return labels, (y0, x0), codes


def fill_rings(
    out: np.ndarray,
    xy: np.ndarray,
    bounds: np.ndarray,
    labels: np.ndarray,
    *,
    groups: np.ndarray | None = None,
) -> None:
    """Fill closed rings into ``out`` (scanline, even-odd, all rings at once, in numpy).

    Parameters
    ----------
    out
        ``(H, W)`` label image, filled in place.
    xy
        Vertices of ring ``k`` at rows ``bounds[k]:bounds[k + 1]``, in pixel coordinates
        with pixel centres at integers. A pixel is filled when its centre is inside
        (edges are half-open in y, spans half-open in x, so shared edges fill once).
    bounds
        Start of every ring in ``xy``, then ``len(xy)``.
    labels
        Value of every group (of every ring when ``groups`` is ``None``).
    groups
        Group (polygon) of every ring, increasing: the rings of one group are filled
        together by the even-odd rule, so a polygon's interior rings (holes) stay
        empty. Default: every ring its own group.

    Later groups overwrite earlier ones where they overlap.
    """
    h, w = out.shape
    nxt = np.arange(1, len(xy) + 1)
    nxt[bounds[1:] - 1] = bounds[:-1]  # each ring closes on its first vertex
    n_rings = len(bounds) - 1
    group = np.arange(n_rings) if groups is None else np.asarray(groups, dtype=np.int64)
    ring = np.repeat(group, np.diff(bounds))
    xa, ya, xb, yb = xy[:, 0], xy[:, 1], xy[nxt, 0], xy[nxt, 1]
    r0 = np.ceil(np.minimum(ya, yb)).astype(np.int64)
    r1 = np.ceil(np.maximum(ya, yb)).astype(np.int64)  # rows r0 .. r1 - 1 cross the edge
    r0, r1 = np.clip(r0, 0, h), np.clip(r1, 0, h)
    count = np.maximum(r1 - r0, 0)
    keep = count > 0
    edge = np.repeat(np.flatnonzero(keep), count[keep])
    if not len(edge):
        return
    start = np.repeat(np.cumsum(count[keep]) - count[keep], count[keep])
    row = r0[edge] + (np.arange(len(edge)) - start)
    t = (row - ya[edge]) / (yb[edge] - ya[edge])
    x = xa[edge] + t * (xb[edge] - xa[edge])
    order = np.lexsort((x, row, ring[edge]))
    row, x, rg = row[order], x[order], ring[edge][order]
    c0 = np.clip(np.ceil(x[0::2]), 0, w).astype(np.int64)
    c1 = np.clip(np.ceil(x[1::2]), 0, w).astype(np.int64)
    rows, lab = row[0::2], labels[rg[0::2]]
    n = np.maximum(c1 - c0, 0)
    total = int(n.sum())
    if not total:
        return
    off = np.repeat(np.cumsum(n) - n, n)
    cols = np.repeat(c0, n) + (np.arange(total) - off)
    out[np.repeat(rows, n), cols] = np.repeat(lab, n)
