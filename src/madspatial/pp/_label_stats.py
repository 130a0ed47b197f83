"""Per-cell area, centroid and bounding box of a (possibly huge, dask-backed) label image.

One pass, block by block, so memory stays at one block whatever the image
size. Per block: ``bincount`` for areas and coordinate sums and
``scipy.ndimage.find_objects`` for bounding boxes (both O(pixels), in C);
label ids far larger than the block are first compacted with ``np.unique``.
Blocks are merged by id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Blocks are processed at about this many pixels per side.
BLOCK = 1024


@dataclass
class LabelStats:
    """Statistics of every label id present (> 0 px), sorted by id; coordinates in label pixels."""

    ids: np.ndarray  # (K,) int64
    area: np.ndarray  # (K,) float64
    cy: np.ndarray
    cx: np.ndarray
    ymin: np.ndarray
    ymax: np.ndarray  # inclusive
    xmin: np.ndarray
    xmax: np.ndarray

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index into these stats of each of ``ids``, and whether it is present."""
        pos = np.searchsorted(self.ids, ids)
        pos = np.clip(pos, 0, max(len(self.ids) - 1, 0))
        found = self.ids[pos] == ids if len(self.ids) else np.zeros(len(ids), dtype=bool)
        return pos, found


def _empty():
    e = np.empty(0)
    return np.empty(0, np.int64), e, e, e, e, e, e, e


def block_stats(block: np.ndarray, y0: int, x0: int):
    """Stats of the ids in one block (global coordinates): ids, n, sum_y, sum_x, bbox."""
    from scipy import ndimage

    b = np.asarray(block)
    if b.size == 0:
        return _empty()
    if np.issubdtype(b.dtype, np.signedinteger) and b.min() < 0:
        raise ValueError(
            f"labels hold negative ids (e.g. {int(b.min())}) near pixel (y={y0}, x={x0}); "
            "use 0 for background and positive integers for cells."
        )
    top = int(b.max())
    if top == 0:
        return _empty()
    if top <= max(4 * b.size, 1 << 20):
        lab = b.astype(np.intp, copy=False)
        ids = None
    else:  # sparse huge ids: compact them to 1..k so bincount/find_objects stay small
        ids_all, inv = np.unique(b.ravel(), return_inverse=True)
        lab = inv.reshape(b.shape).astype(np.intp)
        if ids_all[0] != 0:
            lab += 1
            ids_all = np.concatenate([np.zeros(1, ids_all.dtype), ids_all])
        top = len(ids_all) - 1
        ids = ids_all
    h, w = lab.shape
    flat = lab.ravel()
    n = np.bincount(flat, minlength=top + 1)
    sy = np.bincount(flat, weights=np.repeat(np.arange(h, dtype=np.float64), w), minlength=top + 1)
    sx = np.bincount(flat, weights=np.tile(np.arange(w, dtype=np.float64), h), minlength=top + 1)
    objs = ndimage.find_objects(lab, max_label=top)
    present = np.flatnonzero(n[1:]) + 1
    ymin = np.array([objs[i - 1][0].start for i in present], dtype=np.float64)
    ymax = np.array([objs[i - 1][0].stop - 1 for i in present], dtype=np.float64)
    xmin = np.array([objs[i - 1][1].start for i in present], dtype=np.float64)
    xmax = np.array([objs[i - 1][1].stop - 1 for i in present], dtype=np.float64)
    cnt = n[present].astype(np.float64)
    out_ids = present if ids is None else ids[present]
    # uint64 ids >= 2**63 become negative int64 codes with the same bits (lossless; the
    # table's ids are coded the same way, see _inputs.id_codes).
    out_ids = np.asarray(out_ids)
    out_ids = out_ids.view(np.int64) if out_ids.dtype == np.uint64 else out_ids.astype(np.int64)
    return (
        out_ids,
        cnt,
        sy[present] + y0 * cnt,
        sx[present] + x0 * cnt,
        ymin + y0,
        ymax + y0,
        xmin + x0,
        xmax + x0,
    )


def label_stats(labels, *, n_jobs: int = 1) -> LabelStats:
    """Stats of every label of a numpy or dask ``(y, x)`` label image, block by block."""
    import dask
    import dask.array as da

    arr = labels if isinstance(labels, da.Array) else da.from_array(np.asarray(labels))
    cy, cx = arr.chunks
    if max(cy) < BLOCK // 2 or max(cx) < BLOCK // 2:  # many small chunks: fewer, larger tasks
        arr = arr.rechunk((min(BLOCK, arr.shape[0]), min(BLOCK, arr.shape[1])))
    ys = np.concatenate([[0], np.cumsum(arr.chunks[0])])
    xs = np.concatenate([[0], np.cumsum(arr.chunks[1])])
    blocks = arr.to_delayed()
    tasks = [
        dask.delayed(block_stats)(blocks[i, j], int(ys[i]), int(xs[j]))
        for i in range(blocks.shape[0])
        for j in range(blocks.shape[1])
    ]
    parts = []
    wave = max(2, 2 * n_jobs)
    for k in range(0, len(tasks), wave):
        parts.extend(dask.compute(*tasks[k : k + wave], scheduler="threads", num_workers=n_jobs))
    cols = [np.concatenate([p[i] for p in parts]) for i in range(8)]
    ids, inv = np.unique(cols[0], return_inverse=True)
    k = len(ids)

    def add(v):
        return np.bincount(inv, weights=v, minlength=k)

    def red(v, fn, init):
        out = np.full(k, init)
        fn.at(out, inv, v)
        return out

    area = add(cols[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return LabelStats(
            ids=ids.astype(np.int64),
            area=area,
            cy=add(cols[2]) / area,
            cx=add(cols[3]) / area,
            ymin=red(cols[4], np.minimum, np.inf),
            ymax=red(cols[5], np.maximum, -np.inf),
            xmin=red(cols[6], np.minimum, np.inf),
            xmax=red(cols[7], np.maximum, -np.inf),
        )
