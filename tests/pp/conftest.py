"""Procedural tissues for the pp tests: disks on a grid with exactly known centres and values."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from madspatial.io import sdata_from_arrays


def disk_tissue(
    *,
    shape: tuple[int, int] = (260, 260),
    spacing: int = 20,
    radius: int = 6,
    jitter: int = 3,
    margin: int = 12,
    background: float = 0.05,
    shuffle_table: bool = True,
    radii: np.ndarray | None = None,
    seed: int = 0,
):
    """A SpatialData of disk cells on a jittered grid.

    Channel 0 holds a distinct value per cell (``values``) on ``background``;
    channel 1 a horizontal ramp (so no channel is constant). Centres are
    integers, so each disk's centroid is exactly its centre. The table's rows
    are shuffled (views must follow the table, not the label order).
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    lab = np.zeros(shape, dtype=np.int32)
    centres = []
    for y in range(margin, h - margin + 1, spacing):
        for x in range(margin, w - margin + 1, spacing):
            centres.append(
                (x + rng.integers(-jitter, jitter + 1), y + rng.integers(-jitter, jitter + 1))
            )
    centres = np.array(centres, dtype=np.float64)
    n = len(centres)
    r = np.full(n, radius) if radii is None else np.asarray(radii)[:n]
    values = np.round(rng.uniform(0.25, 1.0, n), 3)
    img = np.zeros((2, h, w), dtype=np.float32)
    img[0] = background
    img[1] = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    for i, ((x, y), rad) in enumerate(zip(centres, r)):
        rr, cc = disk((y, x), rad + 0.5, shape=shape)
        lab[rr, cc] = i + 1
        img[0, rr, cc] = values[i]
    ids = np.arange(1, n + 1)
    order = rng.permutation(n) if shuffle_table else np.arange(n)
    sdata = sdata_from_arrays(img, lab, instance_ids=ids[order], channel_names=["value", "ramp"])
    truth = {
        "ids": ids,
        "centres": centres,
        "values": values,
        "radii": r,
        "labels": lab,
        "image": img,
    }
    return sdata, truth


@pytest.fixture
def make_disks():
    return disk_tissue
