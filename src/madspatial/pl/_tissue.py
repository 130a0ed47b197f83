"""The tissue at a glance: image channels as a composite, segmentation outlines by category."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .._constants import CELL_LABELS_KEY, IMAGE_KEY, INSTANCE_KEY, OBS_CELL_TYPE, TABLE_KEY
from .._docs import doc_ax_show_returns, doc_params
from ._utils import composite, finish, new_axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from spatialdata import SpatialData


def _as_2d(element) -> np.ndarray:
    """Full-resolution numpy array of an image/labels element (multiscale: scale0)."""
    if hasattr(element, "children") and "scale0" in getattr(element, "children", {}):
        element = next(iter(element["scale0"].values()))
    return np.asarray(element.values if hasattr(element, "values") else element)


@doc_params(doc_ax_show_returns=doc_ax_show_returns)
def tissue_overview(
    sdata: SpatialData,
    *,
    image_key: str = IMAGE_KEY,
    labels_key: str = CELL_LABELS_KEY,
    table_key: str = TABLE_KEY,
    color: str | None = OBS_CELL_TYPE,
    channels: Sequence[int] | None = None,
    crop: tuple[slice, slice] | None = None,
    palette: dict | None = None,
    title: str | None = None,
    legend: bool = True,
    ax=None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | Axes | None:
    """Draw the image channels as a colour composite with cell outlines coloured by a category.

    Parameters
    ----------
    sdata
        SpatialData with the image, labels and table.
    image_key, labels_key, table_key
        Elements to draw.
    color
        Categorical ``obs`` column of the table colouring the outlines (``None``: white).
    channels
        Channel indices to composite (default all; blue, green, red, magenta, ...).
    crop
        ``(slice_y, slice_x)`` to zoom in.
    palette
        Category -> colour; default ``tab10``/``tab20``.
    title
        Axes title.
    legend
        Draw a legend of the categories.
    {doc_ax_show_returns}
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch
    from skimage.segmentation import find_boundaries

    img = _as_2d(sdata.images[image_key])
    lab = _as_2d(sdata.labels[labels_key])
    if crop is not None:
        img, lab = img[(slice(None), *crop)], lab[crop]
    rgb = composite(img, channels=channels)
    edges = find_boundaries(lab, mode="inner")
    handles = []
    if color is None:
        rgb[edges] = 1.0
    else:
        table = sdata.tables[table_key]
        if color not in table.obs:
            raise KeyError(
                f"{color!r} is not a column of the table's obs; available: {list(table.obs.columns)}"
            )
        cats = table.obs[color].astype("category")
        names = list(cats.cat.categories)
        cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
        palette = palette or {n: cmap(i % cmap.N) for i, n in enumerate(names)}
        lut = np.zeros((int(lab.max()) + 1, 3), dtype=np.float32)
        known = np.zeros(int(lab.max()) + 1, dtype=bool)
        ids = table.obs[INSTANCE_KEY].to_numpy()
        ok = ids <= lab.max()
        codes = cats.cat.codes.to_numpy()
        colours = np.array([to_rgb(palette[n]) for n in names], dtype=np.float32)
        lut[ids[ok]] = colours[codes[ok]]
        known[ids[ok]] = True
        e = edges & known[lab]
        rgb[e] = lut[lab[e]]
        handles = [Patch(color=palette[n], label=str(n)) for n in names]
    fig, ax = new_axes(ax, figsize=(8, 8 * img.shape[1] / max(img.shape[2], 1) + 0.5))
    ax.imshow(rgb, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    if legend and handles:
        ax.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.01, 1),
            frameon=False,
            fontsize=8,
            title=color,
        )
    return finish(fig, ax, show=show, return_fig=return_fig)
