"""Rescale image regions onto the global grid of the rescaled slide, tile by tile.

"Rescale the slide once, then crop" is the fast way to make views: every crop
is then a plain copy. To do it tile by tile without ever holding the rescaled
slide, each tile computes exactly the rescaled pixels it needs, on the
*global* grid: pixel ``u`` of the rescaled slide has its centre at image
coordinate ``(u + 0.5) / scale - 0.5`` (pixel centres at integers), whatever
tile computes it.

The scale is a fraction ``p / q`` (``p >= 128``, so it is within 0.4% of the
requested one). A region starting at an image pixel that is a multiple of
``q`` then starts at rescaled pixel ``x0 * p / q``, an integer, and resizing
it with ``torch.nn.functional.interpolate`` (bilinear, antialiased when
shrinking, uint8 SIMD kernel) reproduces the global grid exactly: the filter
weights depend only on the position modulo ``p``. Regions carry a margin of
the filter support, so filters never see a region edge, and pixels beyond the image are
zeros (zero padding).
"""

from __future__ import annotations

import math

import numpy as np

#: Smallest numerator of the rational scale (sets the precision of the scale).
MIN_NUMERATOR = 128


def rational_scale(scale: float) -> tuple[int, int]:
    """``(p, q)`` with ``p / q`` within 0.4% of ``scale`` (``p >= 128``)."""
    if not scale > 0 or not math.isfinite(scale):
        raise ValueError(f"scale must be positive and finite, got {scale}.")
    q = max(1, math.ceil(MIN_NUMERATOR / scale))
    p = max(1, round(scale * q))
    g = math.gcd(p, q)
    return p // g, q // g


def aligned_range(u0: int, u1: int, p: int, q: int) -> tuple[int, int, int, int]:
    """Return the image and rescaled ranges that cover rescaled pixels ``[u0, u1)``.

    The image range ``[x0, x1)`` (multiples of ``q``) and rescaled range ``[U0, U1)`` cover
    ``[u0, u1)`` plus a margin of the filter's support on each side.
    """
    support = max(1.0, q / p) + 1.0  # in image pixels: the bilinear (antialiased) kernel
    margin = math.ceil(support * p / q) + 1
    k0 = (u0 - margin) // p
    k1 = -(-(u1 + margin) // p)
    return k0 * q, k1 * q, k0 * p, k1 * p


def padded(region: np.ndarray, origin: tuple[int, int], y0: int, y1: int, x0: int, x1: int):
    """``region[..., y0:y1, x0:x1]`` in image coordinates, zeros where the region does not reach."""
    ry, rx = origin
    h, w = region.shape[-2:]
    out = np.zeros((*region.shape[:-2], y1 - y0, x1 - x0), dtype=region.dtype)
    a, b = max(y0, ry), min(y1, ry + h)
    c, d = max(x0, rx), min(x1, rx + w)
    if a < b and c < d:
        out[..., a - y0 : b - y0, c - x0 : d - x0] = region[..., a - ry : b - ry, c - rx : d - rx]
    return out


def resize_uint8(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (antialiased) resize of a uint8 ``(C, h, w)`` array to ``(C, *size)``.

    torch's uint8 kernel is fast for 3-4 channels in channels-last layout, so
    channels go through in groups of 4 (a group of 1-2 is padded to 3).
    """
    import torch
    import torch.nn.functional as F

    c = img.shape[0]
    out = np.empty((c, *size), dtype=np.uint8)
    for a in range(0, c, 4):
        grp = img[a : a + 4]
        k = len(grp)
        if k < 3:
            grp = np.concatenate([grp, np.zeros((3 - k, *grp.shape[1:]), dtype=np.uint8)])
        t = torch.from_numpy(np.ascontiguousarray(grp.transpose(1, 2, 0)))  # h, w, c
        t = t.permute(2, 0, 1)[None]  # a channels-last view of (1, c, h, w), no copy
        r = F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)
        out[a : a + k] = r[0, :k].numpy()
    return out


def to_uint8(region: np.ndarray, gain: float) -> np.ndarray:
    """``round(region * gain)`` as uint8 (the input itself when it is uint8 and gain is 1).

    Callers have checked the range ([0, 1] up to 1e-3 for gain 255), so
    ``x * 255 + 0.5`` lies in (-0.3, 255.8) and truncation rounds without clipping.
    """
    if region.dtype == np.uint8 and gain == 1.0:
        return region
    import torch

    t = torch.from_numpy(np.ascontiguousarray(region, dtype=np.float32))
    return t.mul(gain).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8).numpy()


def nearest_indices(positions: np.ndarray, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest input index of each position, and whether it falls inside ``[0, n_in)``."""
    idx = np.floor(np.asarray(positions) + 0.5).astype(np.int64)
    valid = (idx >= 0) & (idx < n_in)
    return np.clip(idx, 0, max(n_in - 1, 0)), valid
