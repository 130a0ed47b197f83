"""Views cut on the fly: a view store that holds no views.

At slide scale (10^5-10^6 cells) storing every cell's views costs hundreds of
GB, while cutting them is far cheaper than the model that reads them. An
:class:`OnTheFlyViews` has the interface of a :class:`~madspatial.io.ViewStore`
(``batch``, ``storage_order``, ``channel_names``, ...), but ``batch(idx)`` cuts
exactly those cells' views from the lazily read (dask/zarr, possibly lazily
normalized) image with the :class:`~madspatial.pp._plan.ViewPlan` of
``cell_views``: the same code that fills a store, so the pixels are identical.

Cells of a batch are cut in groups of neighbours along the storage (Hilbert)
order, so each group reads one compact region; the image and label readers keep
recently decoded chunks (``cache_mb``), so a pass in storage order (embedding) or
over windows of neighbouring cells (the chunk-aware training sampler) decodes
each image chunk about once. The store pickles without its caches: DataLoader
worker processes reopen the image lazily and cut views in parallel.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._constants import VIEW_MICROENVIRONMENT, VIEW_MORPHOLOGY
from .._logging import logger
from ..io._views import (
    AUTO_STORE,
    ON_THE_FLY,
    LazyRows,
    OnTheFlyLocation,
    ViewStore,
    _ids,
    check_rows,
)

#: Rows the training sampler treats as one chunk (cells mixed within windows of chunks).
CHUNK_ROWS = 64
#: A gap of more storage positions than this starts a new group of a batch.
GROUP_GAP = 8
#: ``store="auto"`` keeps views of at most this many bytes in memory (and at most
#: ``AUTO_RAM_FRACTION`` of the machine's RAM, and ``max_memory_gb``); larger ones are cut
#: on the fly. 1 GB is ~4,500 cells at the default 70/224 px and 4 channels.
AUTO_MEMORY_BYTES = 1_000_000_000
#: Fraction of the machine's physical memory that ``store="auto"`` may fill with views.
AUTO_RAM_FRACTION = 0.125


def is_auto(store: Any) -> bool:
    """Whether ``store`` asks for the automatic choice (the exact string, not a Path)."""
    return isinstance(store, str) and store == AUTO_STORE


def physical_memory_bytes() -> int | None:
    """Physical memory of this machine in bytes (``None`` where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        return None


def auto_memory_budget(max_memory_gb: float) -> float:
    """Bytes of views ``store="auto"`` keeps in memory.

    The smallest of :data:`AUTO_MEMORY_BYTES`, :data:`AUTO_RAM_FRACTION` of the physical
    memory and ``max_memory_gb``.
    """
    budget = min(float(AUTO_MEMORY_BYTES), float(max_memory_gb) * 1e9)
    ram = physical_memory_bytes()
    return min(budget, AUTO_RAM_FRACTION * ram) if ram else budget


def _size(nbytes: float) -> str:
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.2f} MB"


def choose_store(
    store: Any,
    *,
    n_cells: int | None,
    n_channels: int,
    morphology_size: int,
    microenvironment_size: int,
    max_memory_gb: float,
) -> Any:
    """Resolve ``cell_views(store="auto")``: ``None`` (in memory) or ``"on_the_fly"``.

    Views that fit :func:`auto_memory_budget` stay in memory (fastest for many epochs);
    larger ones are cut on the fly, so memory stays flat at any cell count. The choice
    is logged (INFO). Any other ``store`` is returned as it is.

    Parameters
    ----------
    store
        The ``store=`` argument of ``cell_views``.
    n_cells
        Cells whose views would be held (the table's rows); ``None`` when the views
        cannot be cut on the fly (several regions in one store): then in memory.
    n_channels, morphology_size, microenvironment_size
        Channels and view sides (pixels) of the views.
    max_memory_gb
        ``cell_views``' limit on in-memory views, also a bound of the budget.

    Returns
    -------
    ``None``, ``"on_the_fly"``, or ``store`` unchanged when it is not ``"auto"``.
    """
    if not is_auto(store):
        return store
    if n_cells is None:
        logger.info(
            "cell_views (store=%r): the views of several regions are joined in memory "
            "(cutting them on the fly needs one region per call)",
            AUTO_STORE,
        )
        return None
    nbytes = float(n_cells) * n_channels * (morphology_size**2 + microenvironment_size**2)
    budget = auto_memory_budget(max_memory_gb)
    if nbytes <= budget:
        logger.info(
            "cell_views (store=%r): the views of %d cells take %s, within the in-memory "
            "budget of %s: keeping them in memory",
            AUTO_STORE,
            n_cells,
            _size(nbytes),
            _size(budget),
        )
        return None
    logger.info(
        "cell_views (store=%r): the views of %d cells would take %s, more than the in-memory "
        "budget of %s: cutting them on the fly (nothing stored, memory stays flat; "
        "store=None keeps them in memory, store='views.zarr' writes them to disk)",
        AUTO_STORE,
        n_cells,
        _size(nbytes),
        _size(budget),
    )
    return ON_THE_FLY


class _CutArray(LazyRows):
    """Lazy ``(N, C, S, S)`` uint8 array-like of one view, table row order; rows cut on read."""

    def __init__(self, store: OnTheFlyViews, view: str):
        self._store, self._view = store, view

    @property
    def shape(self) -> tuple[int, ...]:
        s = self._store
        size = s.morphology_size if self._view == VIEW_MORPHOLOGY else s.microenvironment_size
        return (len(s), s.n_channels, size, size)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    def _take(self, rows: np.ndarray) -> np.ndarray:
        return self._store._views(rows, (self._view,))[self._view]

    def __repr__(self) -> str:
        return f"<{self._view} views of {len(self)} cells, cut on the fly>"


class OnTheFlyViews(ViewStore):
    """The views of every cell of a table, cut from the image when they are read.

    Made by ``mad.pp.cell_views(sdata, ..., store="on_the_fly")`` and rebuilt by
    :func:`madspatial.io.read_views` from the SpatialData; ``tl.pretrain`` and
    ``tl.embed`` then cut views in their data loaders. Holds per-cell geometry only
    (centroids, windows, ids: ~100 bytes per cell), never views; views read equal
    those of a store written by ``cell_views`` with the same parameters, bit for bit.

    Parameters
    ----------
    plan
        The :class:`~madspatial.pp._plan.ViewPlan` of a ``cell_views`` call.
    arguments
        The ``cell_views`` arguments that rebuild the plan (recorded in ``uns``).
    chunk_rows
        Storage rows the training sampler treats as one chunk.
    """

    def __init__(
        self, plan, *, arguments: dict[str, Any] | None = None, chunk_rows: int = CHUNK_ROWS
    ):
        self.plan = plan
        n = plan.n
        self.instance_id = _ids(plan.rows_ids)
        self.centroid = np.c_[plan.cells.cx, plan.cells.cy].astype(np.float64)
        self.window_px = np.asarray(plan.cells.micro_w, dtype=np.float64)
        self.attrs = dict(plan.attrs, n_cells=n, store=ON_THE_FLY)
        self.arguments = dict(arguments or {})
        self.path = None
        self.chunk_rows = int(chunk_rows)
        self._rows = np.asarray(plan.order, dtype=np.int64)
        self._pos = plan.position
        self._key = None

    # --- array access ---------------------------------------------------------
    @property
    def morphology(self):
        """``(N, C, Hm, Wm)`` uint8, table row order, cut on read."""
        return _CutArray(self, VIEW_MORPHOLOGY)

    @property
    def microenvironment(self):
        """``(N, C, He, We)`` uint8, table row order, cut on read."""
        return _CutArray(self, VIEW_MICROENVIRONMENT)

    @property
    def storage_order(self) -> np.ndarray:
        """Table rows along the Hilbert curve: reading along it reads each chunk once."""
        return self._rows.copy()

    def _batch(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self._views(idx, (VIEW_MORPHOLOGY, VIEW_MICROENVIRONMENT))
        return out[VIEW_MORPHOLOGY], out[VIEW_MICROENVIRONMENT]

    def _views(self, idx, views: Sequence[str]) -> dict[str, np.ndarray]:
        """Cut views ``views`` of table rows ``idx`` (any order, repeats, negative) now."""
        idx = check_rows(idx, len(self))
        uniq, inverse = np.unique(idx, return_inverse=True)
        c = self.n_channels
        sizes = {
            VIEW_MORPHOLOGY: self.morphology_size,
            VIEW_MICROENVIRONMENT: self.microenvironment_size,
        }
        out = {v: np.empty((len(uniq), c, sizes[v], sizes[v]), np.uint8) for v in views}
        morph, micro = out.get(VIEW_MORPHOLOGY), out.get(VIEW_MICROENVIRONMENT)
        for dest in self._groups(uniq):
            self.plan.cut(uniq[dest], morph, micro, dest)
        if len(uniq) == len(idx) and np.array_equal(uniq, idx):
            return out
        return {v: a[inverse] for v, a in out.items()}

    def _groups(self, rows: np.ndarray) -> list[np.ndarray]:
        """Positions in ``rows`` (sorted, unique) of runs of neighbours along the storage order.

        A run ends at a gap of more than ``GROUP_GAP`` storage positions or at a tile
        boundary of the plan, so each group reads one compact region.
        """
        if len(rows) == 0:
            return []
        pos = self._pos[rows]
        order = np.argsort(pos, kind="stable")
        p = pos[order]
        ranges = self.plan.ranges
        tile = max(1, ranges[0][1] - ranges[0][0]) if ranges else len(self)
        cut = (np.diff(p) > GROUP_GAP) | (np.diff(p // tile) != 0)
        return np.split(order, np.flatnonzero(cut) + 1)

    # --- metadata ---------------------------------------------------------------
    @property
    def n_channels(self) -> int:
        return self.plan.n_channels

    @property
    def morphology_size(self) -> int:
        return int(self.plan.spec.morphology_size)

    @property
    def microenvironment_size(self) -> int:
        return int(self.plan.spec.microenvironment_size)

    @property
    def in_memory(self) -> bool:
        """``False``: no views are held, in memory or on disk."""
        return False

    @property
    def location(self) -> str:
        """``"on_the_fly"``, holding this store while a table refers to it."""
        return OnTheFlyLocation(ON_THE_FLY, self)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_key"] = None
        return state

    def __repr__(self) -> str:
        return (
            f"OnTheFlyViews({len(self)} cells, {self.n_channels} channels "
            f"{self.channel_names}, morphology {self.morphology_size}px, microenvironment "
            f"{self.microenvironment_size}px, cut on the fly from image "
            f"{self.attrs.get('image_key')!r})"
        )


def rebuild_on_the_fly(sdata, table_key: str, info: dict, key: str) -> OnTheFlyViews:
    """Rebuild the on-the-fly store recorded in ``table.uns[key]`` from the SpatialData.

    Re-runs the plan of ``cell_views`` with the recorded arguments and checks that the
    fingerprint (parameters, cells, sampled image and label pixels) is the recorded one.
    """
    from ._cell_views import cell_views

    args = dict(info.get("arguments") or {})
    try:
        views = cell_views(
            sdata,
            image_key=info["image_key"],
            labels_key=info["labels_key"],
            table_key=table_key,
            store=ON_THE_FLY,
            inplace=False,
            key_added=key,
            **args,
        )
    except KeyError as err:
        raise KeyError(
            f"the views of table {table_key!r} are cut on the fly from image "
            f"{info.get('image_key')!r} and labels {info.get('labels_key')!r}, but the "
            f"SpatialData lacks one of them ({err}); add them back (e.g. run mad.pp.normalize "
            "again) or re-run mad.pp.cell_views."
        ) from err
    want = info.get("fingerprint")
    if want is not None and views.attrs.get("fingerprint") != want:
        old = info.get("fingerprint_parts") or {}
        new = views.attrs.get("fingerprint_parts") or {}
        what = [k.replace("_", " ") for k in sorted(new) if old.get(k) != new.get(k)]
        raise ValueError(
            f"the views of table {table_key!r} (uns[{key!r}]) are cut on the fly, but the "
            f"SpatialData changed since mad.pp.cell_views recorded them (different "
            f"{', '.join(what) or 'fingerprint'}), so they would not be the same views. Re-run "
            f"mad.pp.cell_views(sdata, image_key={info['image_key']!r}, labels_key="
            f"{info['labels_key']!r}, store={ON_THE_FLY!r})."
        )
    return views
