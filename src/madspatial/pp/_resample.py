"""Separable, antialiased resampling of an image region onto a slice of a global scaled grid.

"Rescale the slide once, then crop" is the fast way to make views: every crop
is then a plain copy. To do it tile by tile without ever holding the rescaled
slide, each tile computes exactly the rescaled pixels it needs, on the *global*
grid of the rescaled slide: pixel ``u`` of the rescaled slide has its centre at
original coordinate ``(u + 0.5) / scale - 0.5`` (pixel centres at integers),
whatever tile computes it. Tiles therefore agree to the last bit, and the
result equals resizing the whole slide.

The filter is the triangle (bilinear) kernel, widened by ``1 / scale`` when
shrinking so that every input pixel contributes (the antialiasing of PIL and of
``torch.nn.functional.interpolate(..., antialias=True)``). Samples falling
outside the region read zeros (zero padding beyond the image).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def resample_weights(
    positions: np.ndarray, n_in: int, scale: float, *, gain: float = 1.0
) -> sp.csr_matrix:
    """Sparse ``(len(positions), n_in)`` interpolation matrix.

    Parameters
    ----------
    positions
        Sample positions in input pixel coordinates (pixel ``i`` centred at ``i``).
    n_in
        Input length; weights on indices outside ``[0, n_in)`` are dropped
        after normalisation, which is zero padding.
    scale
        Output pixels per input pixel; below 1 the kernel widens to ``1 / scale``.
    gain
        Multiplies every weight (e.g. 255 to produce 0..255 from a [0, 1] image).
    """
    x = np.asarray(positions, dtype=np.float64)
    support = max(1.0, 1.0 / scale)
    k = int(np.ceil(support)) * 2 + 1
    start = np.floor(x - support).astype(np.int64) + 1
    idx = start[:, None] + np.arange(k)[None, :]
    w = np.maximum(0.0, 1.0 - np.abs(idx - x[:, None]) / support)
    w /= w.sum(axis=1, keepdims=True)
    w *= gain
    keep = (idx >= 0) & (idx < n_in) & (w > 0)
    rows = np.broadcast_to(np.arange(len(x))[:, None], idx.shape)
    return sp.csr_matrix(
        (w[keep].astype(np.float32), (rows[keep], idx[keep])), shape=(len(x), n_in)
    )


def grid_positions(start: int, stop: int, scale: float, origin: float) -> np.ndarray:
    """Input coordinates (relative to a region starting at ``origin``) of global grid pixels."""
    u = np.arange(start, stop, dtype=np.float64)
    return (u + 0.5) / scale - 0.5 - origin


def resample_to_uint8(
    region: np.ndarray, wy: sp.csr_matrix, wx_t: sp.csr_matrix, out: np.ndarray
) -> np.ndarray:
    """Resample each channel of ``region`` (C, h, w) with ``wy @ img @ wx_t`` into uint8 ``out``.

    The weights already carry the gain to 0..255; values are rounded half up
    and clipped. One channel at a time keeps the float temporaries small.
    """
    for c in range(region.shape[0]):
        plane = region[c]
        if plane.dtype != np.float32:
            plane = plane.astype(np.float32)
        tmp = wy @ plane
        res = np.asarray(tmp @ wx_t)
        np.clip(res, 0.0, 255.0, out=res)
        res += 0.5
        out[c] = res  # float -> uint8 cast truncates; +0.5 made it round half up
    return out


def nearest_indices(positions: np.ndarray, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest input index of each position, and whether it falls inside ``[0, n_in)``."""
    idx = np.floor(np.asarray(positions) + 0.5).astype(np.int64)
    valid = (idx >= 0) & (idx < n_in)
    return np.clip(idx, 0, max(n_in - 1, 0)), valid
