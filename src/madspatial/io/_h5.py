"""Export/import of view stores in the H5 layout of the reference MAD implementation.

The layout: datasets ``morphology`` and ``neighborhood``, each ``(N, H, W, C)``
uint8 (channels last), and ``cell_ids`` ``(N,)``. We also write ``centroid``,
``window_px`` and the store's attributes (JSON in the file's attrs); readers of
the reference layout ignore them, and :func:`import_h5` restores them when present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._constants import (
    H5_CELL_IDS,
    H5_MORPHOLOGY,
    H5_NEIGHBORHOOD,
    STORE_CENTROID,
    STORE_WINDOW_PX,
)
from ._views import ViewStore, ZarrViewWriter, _jsonable, open_zarr_views, read_views

if TYPE_CHECKING:
    from anndata import AnnData
    from spatialdata import SpatialData

#: File attribute holding our metadata as JSON.
H5_ATTRS = "madspatial_views"


def export_h5(
    store: ViewStore | SpatialData | AnnData | str | Path,
    path: str | Path,
    *,
    batch_size: int = 256,
    compression: str | None = "lzf",
) -> Path:
    """Write a view store as an H5 file in the reference MAD layout.

    Parameters
    ----------
    store
        A :class:`ViewStore` or anything :func:`read_views` accepts.
    path
        Output ``.h5`` file (overwritten).
    batch_size
        Cells read and written at a time (memory stays at one batch).
    compression
        h5py compression filter (``"lzf"``, ``"gzip"`` or ``None``).

    Returns
    -------
    The path written.
    """
    import h5py

    store = read_views(store)
    path = Path(path)
    n, c = len(store), store.n_channels
    sm, se = store.morphology_size, store.microenvironment_size
    order = store.storage_order  # sequential reads; rows are placed at their table position
    with h5py.File(path, "w") as f:
        kw = {"compression": compression} if compression else {}
        dm = f.create_dataset(
            H5_MORPHOLOGY,
            (n, sm, sm, c),
            dtype=np.uint8,
            chunks=(1, sm, sm, c) if n else None,
            **kw,
        )
        de = f.create_dataset(
            H5_NEIGHBORHOOD,
            (n, se, se, c),
            dtype=np.uint8,
            chunks=(1, se, se, c) if n else None,
            **kw,
        )
        f.create_dataset(H5_CELL_IDS, data=store.instance_id)
        f.create_dataset(STORE_CENTROID, data=store.centroid)
        f.create_dataset(STORE_WINDOW_PX, data=store.window_px)
        f.attrs[H5_ATTRS] = json.dumps(_jsonable(store.attrs))
        for a in range(0, n, batch_size):
            rows = np.sort(order[a : a + batch_size])
            morph, micro = store.batch(rows)
            # h5py writes fancy-indexed rows when they are increasing, which sorted rows are.
            dm[rows] = morph.transpose(0, 2, 3, 1)
            de[rows] = micro.transpose(0, 2, 3, 1)
    return path


def import_h5(
    path: str | Path,
    *,
    store: str | Path | None = None,
    channel_names: list[str] | None = None,
    batch_size: int = 256,
    chunk_size: int = 64,
    overwrite: bool = False,
) -> ViewStore:
    """Read an H5 file in the reference MAD layout into a view store.

    Parameters
    ----------
    path
        ``.h5`` file with ``morphology`` and ``neighborhood`` ``(N, H, W, C)``
        uint8 and ``cell_ids``.
    store
        Write a zarr store there (streaming, for large files); ``None``: in memory.
    channel_names
        Channel names (default: those recorded by :func:`export_h5`, else ``ch0..``).
    batch_size
        Cells converted at a time.
    chunk_size
        Cells per zarr chunk when ``store`` is given.
    overwrite
        Replace an existing store at ``store``.

    Returns
    -------
    The :class:`ViewStore` (centroids and windows are NaN when the file lacks them).
    """
    import h5py

    path = Path(path)
    with h5py.File(path, "r") as f:
        for name in (H5_MORPHOLOGY, H5_NEIGHBORHOOD, H5_CELL_IDS):
            if name not in f:
                raise KeyError(
                    f"{path} lacks the dataset {name!r}; the reference MAD layout has "
                    f"{H5_MORPHOLOGY!r}, {H5_NEIGHBORHOOD!r} (N, H, W, C) uint8 and {H5_CELL_IDS!r}."
                )
        dm, de = f[H5_MORPHOLOGY], f[H5_NEIGHBORHOOD]
        ids = np.asarray(f[H5_CELL_IDS][:])
        n = len(ids)
        for name, d in ((H5_MORPHOLOGY, dm), (H5_NEIGHBORHOOD, de)):
            if d.ndim != 4 or d.shape[0] != n or d.shape[1] != d.shape[2]:
                raise ValueError(
                    f"{path}: dataset {name!r} has shape {d.shape}; expected (N={n}, H, H, C) "
                    "(square views, channels last)."
                )
            if d.dtype != np.uint8:
                raise ValueError(f"{path}: dataset {name!r} is {d.dtype}, expected uint8.")
        if dm.shape[3] != de.shape[3]:
            raise ValueError(
                f"{path}: morphology has {dm.shape[3]} channels, neighborhood {de.shape[3]}."
            )
        c = dm.shape[3]
        attrs = json.loads(f.attrs[H5_ATTRS]) if H5_ATTRS in f.attrs else {}
        if channel_names is not None:
            attrs["channel_names"] = list(channel_names)
        attrs.setdefault("channel_names", [f"ch{i}" for i in range(c)])
        if len(attrs["channel_names"]) != c:
            raise ValueError(f"{len(attrs['channel_names'])} channel names for {c} channels.")
        attrs["source"] = str(path)
        cent = f[STORE_CENTROID][:] if STORE_CENTROID in f else np.full((n, 2), np.nan)
        win = f[STORE_WINDOW_PX][:] if STORE_WINDOW_PX in f else np.full(n, np.nan)
        try:
            ids = ids.astype(np.int64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: cell_ids must be integers, got {ids.dtype}.") from err
        sm, se = dm.shape[1], de.shape[1]
        if store is None:
            morph = np.empty((n, c, sm, sm), dtype=np.uint8)
            micro = np.empty((n, c, se, se), dtype=np.uint8)
            for a in range(0, n, batch_size):
                morph[a : a + batch_size] = dm[a : a + batch_size].transpose(0, 3, 1, 2)
                micro[a : a + batch_size] = de[a : a + batch_size].transpose(0, 3, 1, 2)
            return ViewStore(morph, micro, ids, cent, win, attrs)
        writer = ZarrViewWriter.create(
            store,
            n_cells=n,
            n_channels=c,
            morphology_size=sm,
            microenvironment_size=se,
            chunk_size=chunk_size,
            attrs=attrs,
            instance_id=ids,
            centroid=cent,
            window_px=win,
            storage_rows=np.arange(n),
            overwrite=overwrite,
        )
        step = max(chunk_size, (batch_size // chunk_size) * chunk_size)
        for a in range(0, n, step):
            writer.write(
                a,
                np.ascontiguousarray(dm[a : a + step].transpose(0, 3, 1, 2)),
                np.ascontiguousarray(de[a : a + step].transpose(0, 3, 1, 2)),
            )
        writer.finish()
    return open_zarr_views(store)
