"""Shared plotting plumbing: scanpy's ``show`` / ``ax`` / ``return_fig`` convention."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

#: Colours for channels in composites (blue nuclear first, as microscopists expect).
CHANNEL_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.20, 0.40, 1.00),  # blue
    (0.10, 1.00, 0.30),  # green
    (1.00, 0.25, 0.25),  # red
    (1.00, 0.20, 1.00),  # magenta
    (1.00, 0.85, 0.10),  # yellow
    (0.10, 0.95, 0.95),  # cyan
)


def finish(fig, axes, *, show: bool | None, return_fig: bool):
    """End a plot the scanpy way: show it, or hand back the Figure/Axes."""
    if return_fig:
        return fig
    if show is None:
        show = plt.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo")
    if show:
        plt.show()
        return None
    return axes


def new_axes(ax, *, figsize: tuple[float, float]):
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


def composite(
    image: np.ndarray,
    *,
    channels: Sequence[int] | None = None,
    percentiles: tuple[float, float] = (1.0, 99.5),
    colors: Sequence[tuple[float, float, float]] = CHANNEL_COLORS,
    limits: tuple[float, float] | None = None,
) -> np.ndarray:
    """Compose an RGB image (y, x, 3 in [0, 1]) of a (c, y, x) image.

    Each channel is contrast-stretched between the given percentiles and tinted with its
    colour. ``limits=(lo, hi)`` uses one fixed range for every channel instead (e.g.
    ``(0, 255)`` for uint8 views, so that brightness is comparable between images).
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[None]
    channels = list(range(img.shape[0])) if channels is None else list(channels)
    if img.shape[0] == 3 and channels == [0, 1, 2] and colors is CHANNEL_COLORS:
        colors = [(1, 0, 0), (0, 1, 0), (0, 0, 1)]  # an RGB image shows as RGB
    out = np.zeros((*img.shape[1:], 3), dtype=np.float32)
    for k, c in enumerate(channels):
        ch = img[c]
        if limits is None:
            lo, hi = np.percentile(ch[:: max(1, ch.shape[0] // 512)], percentiles)
        else:
            lo, hi = limits
        ch = np.clip((ch - lo) / max(hi - lo, 1e-12), 0, 1)
        out += ch[..., None] * np.asarray(colors[k % len(colors)], dtype=np.float32)
    return np.clip(out, 0, 1)
