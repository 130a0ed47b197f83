"""The two views MAD learns from, for chosen cells: morphology next to microenvironment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .._constants import TABLE_KEY
from .._docs import doc_params, doc_show
from ._utils import CHANNEL_COLORS, composite, finish

if TYPE_CHECKING:
    from pathlib import Path

    from anndata import AnnData
    from matplotlib.figure import Figure
    from spatialdata import SpatialData

    from ..io import ViewStore


def _as_store(data):
    """Return a view store: the object itself when it has ``batch``, else ``mad.io.read_views``."""
    if hasattr(data, "batch") and hasattr(data, "instance_id"):
        return data
    try:
        from ..io import read_views
    except ImportError as err:  # the view store is not part of this build
        raise TypeError(
            f"cannot read cell views from a {type(data).__name__}: pass a ViewStore"
        ) from err
    return read_views(data)


def _table(data, table_key: str):
    if hasattr(data, "tables"):
        if table_key not in data.tables:
            raise KeyError(f"table {table_key!r} not in the SpatialData: {list(data.tables)}")
        return data.tables[table_key]
    if hasattr(data, "obs"):
        return data
    return None


def _channel_colors(n_channels: int, channels: list[int]):
    # the same rule as composite(): a 3-channel image shown in full is drawn as RGB
    if n_channels == 3 and channels == [0, 1, 2]:
        return [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    return [CHANNEL_COLORS[k % len(CHANNEL_COLORS)] for k in range(len(channels))]


@doc_params(doc_show=doc_show)
def cell_views(
    data: ViewStore | SpatialData | AnnData | str | Path,
    *,
    cells: Sequence[int],
    id_type: str = "row",
    channels: Sequence[int] | None = None,
    label: str | None = None,
    table_key: str = TABLE_KEY,
    stretch: bool = True,
    ncols: int = 3,
    panel_size: float = 1.9,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | np.ndarray | None:
    """Morphology and microenvironment views of chosen cells, side by side, as colour composites.

    Each cell gets two panels: its morphology view (the masked cell) and its microenvironment
    view (the cell, marked with a small cross, among its neighbours). The channels are tinted
    (blue, green, red, magenta, ...) and added up; a legend names them.

    Parameters
    ----------
    data
        A view store, or a SpatialData / AnnData table whose ``uns["mad_views"]`` points to one
        (written by :func:`madspatial.pp.cell_views`); read with :func:`madspatial.io.read_views`.
    cells
        Cells to show: row indices of the table/store (``id_type="row"``) or instance ids
        (``id_type="instance_id"``, the label values of the segmentation).
    id_type
        ``"row"`` or ``"instance_id"``.
    channels
        Channel indices to composite (default all).
    label
        obs column of the table (e.g. ``"cell_type"``) to print in each cell's title; needs
        ``data`` to be the SpatialData or AnnData.
    table_key
        Table of the SpatialData.
    stretch
        Stretch every channel of every view between its 1st and 99.5th percentile (easy to
        read); ``False`` shows the stored 0-255 values (brightness comparable between cells).
    ncols
        Cells per row.
    panel_size
        Size of one view panel in inches.
    {doc_show}

    Returns
    -------
    Array of Axes, cells x 2 (morphology, microenvironment) (``show=False``), the Figure
    (``return_fig=True``) or None.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if id_type not in ("row", "instance_id"):
        raise ValueError(f"id_type must be 'row' or 'instance_id', not {id_type!r}")
    cells = [int(c) for c in np.atleast_1d(np.asarray(cells))]
    if not cells:
        raise ValueError("cells is empty; pass row indices or instance ids of cells to show.")
    store = _as_store(data)
    ids = np.asarray(store.instance_id)
    rows = _rows(cells, ids, id_type=id_type)
    labels = None if label is None else _cell_labels(data, label, table_key, rows, n=len(store))
    morph, micro = _views_in_order(store, rows)
    n_ch = morph.shape[1]
    channels = list(range(n_ch)) if channels is None else [int(c) for c in channels]
    bad_ch = [c for c in channels if not 0 <= c < n_ch]
    if bad_ch:
        raise IndexError(f"channels {bad_ch} out of range for views with {n_ch} channels.")
    names = _channel_names(store, n_ch)
    limits = None if stretch else (0.0, 255.0)

    k = len(cells)
    nc = min(ncols, k)
    nr = int(np.ceil(k / nc))
    fig = plt.figure(
        figsize=(2 * panel_size * nc + 0.2, (panel_size + 0.55) * nr + 0.45), layout="constrained"
    )
    subfigs = np.atleast_1d(fig.subfigures(nr, nc, squeeze=False)).ravel()
    axes = np.empty((k, 2), dtype=object)
    for i in range(k):
        head = f"cell {ids[rows[i]]}" if id_type == "instance_id" else f"row {rows[i]}"
        if id_type == "row":
            head += f" (id {ids[rows[i]]})"
        if labels is not None:
            head += f" · {labels[i]}"
        axes[i] = _draw_cell(subfigs[i], morph[i], micro[i], head, channels, limits)
    for sf in subfigs[k:]:
        sf.set_visible(False)
    cols = _channel_colors(n_ch, channels)
    fig.legend(
        handles=[Patch(color=cols[j], label=names[c]) for j, c in enumerate(channels)],
        loc="outside lower center",
        ncols=min(len(channels), 6),
        frameon=False,
        fontsize=8,
    )
    return finish(fig, axes, show=show, return_fig=return_fig)


def _rows(cells: list[int], ids: np.ndarray, *, id_type: str) -> np.ndarray:
    """Return the store rows of ``cells`` (row indices, negative ones too, or instance ids)."""
    n = len(ids)
    if id_type == "row":
        bad = [c for c in cells if not -n <= c < n]
        if bad:
            raise IndexError(f"rows {bad} out of range for a view store of {n} cells.")
        return np.array([c % n for c in cells])
    lookup = {int(v): i for i, v in enumerate(ids)}
    bad = [c for c in cells if c not in lookup]
    if bad:
        raise KeyError(
            f"instance ids {bad} are not in the view store (e.g. {ids[:5].tolist()}); "
            "cells on the image border or absent from the table have no views."
        )
    return np.array([lookup[c] for c in cells])


def _cell_labels(data, label: str, table_key: str, rows: np.ndarray, *, n: int) -> np.ndarray:
    """Return ``obs[label]`` of the table's ``rows``, checked to follow the store's rows."""
    table = _table(data, table_key)
    if table is None:
        raise ValueError(f"label={label!r} needs the SpatialData or AnnData, not a store.")
    if label not in table.obs:
        raise KeyError(f"label={label!r} is not an obs column: {list(table.obs.columns)}")
    if table.n_obs != n:
        raise ValueError(
            f"the table has {table.n_obs} rows but the view store {n}; recompute the views "
            "(mad.pp.cell_views) so that their rows follow the table."
        )
    return table.obs[label].astype(str).to_numpy()[rows]


def _views_in_order(store, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Read the views of ``rows``, in sorted order (stores read fastest so), given back in order."""
    order = np.argsort(rows, kind="stable")
    morph_s, micro_s = store.batch(rows[order])
    morph = np.empty_like(morph_s)
    micro = np.empty_like(micro_s)
    morph[order], micro[order] = morph_s, micro_s
    return morph, micro


def _channel_names(store, n_ch: int) -> list[str]:
    """Return the store's channel names (its attribute or attrs), else ``channel 0..``."""
    names = getattr(store, "channel_names", None)
    if names is None:
        names = dict(getattr(store, "attrs", None) or {}).get("channel_names")
    names = [str(c) for c in names] if names is not None else []
    if len(names) != n_ch:
        names = [f"channel {i}" for i in range(n_ch)]
    return names


def _draw_cell(sf, morph: np.ndarray, micro: np.ndarray, head: str, channels, limits):
    """Draw one cell's two views into the subfigure ``sf``; return their two Axes."""
    a_m, a_e = sf.subplots(1, 2)
    a_m.imshow(composite(morph, channels=channels, limits=limits), interpolation="nearest")
    img = composite(micro, channels=channels, limits=limits)
    a_e.imshow(img, interpolation="nearest")
    h, w = img.shape[:2]
    a_e.plot([w / 2], [h / 2], marker="+", color="white", ms=9, mew=1.2)
    for a, t in ((a_m, "morphology"), (a_e, "microenvironment")):
        a.set_xticks([])
        a.set_yticks([])
        a.set_title(t, fontsize=8)
    sf.suptitle(head, fontsize=9)
    return a_m, a_e
