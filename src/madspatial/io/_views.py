"""The view store: every cell's morphology and microenvironment views, in memory or as zarr.

A :class:`ViewStore` holds, for N cells in the row order of the table they
came from:

- ``morphology``       (N, C, Hm, Wm) uint8 — the cell alone, outside its mask 0
- ``microenvironment`` (N, C, He, We) uint8 — the cell among its neighbours
- ``instance_id``      (N,) int64 — the label id of each row
- ``centroid``         (N, 2) float64 — (x, y) in image pixels
- ``window_px``        (N,) float64 — microenvironment window side in image pixels
- ``attrs``            dict — channel names, sizes, parameters, madspatial version

On disk the store is a zarr group. ``mad.pp.cell_views`` writes it tile by
tile, so rows are stored in *storage order* (cells of one tile next to each
other, which is what makes tiled writing and resuming possible); the array
``storage_rows`` maps storage position -> table row. The store hides this:
``store.morphology[i]`` and ``store.batch(idx)`` always address table rows.
Reading batches in ``store.storage_order`` is the fast sequential order.

Writing is safe against crashes and concurrent writers: a store is created beside
its path and renamed into place (never half-created), chunks are written
atomically and flagged done (a killed run resumes exactly), and a writer holds
``<store>.lock`` (pid, host) while it writes (see :mod:`madspatial.io._lock`).
Replacing (``overwrite=True``) only ever deletes view stores, never other folders.
"""

from __future__ import annotations

import os
import uuid
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._constants import (
    SDATA_VIEWS_DIR,
    STORE_ATTRS_KEY,
    STORE_CENTROID,
    STORE_INSTANCE_ID,
    STORE_WINDOW_PX,
    UNS_VIEWS,
    VIEW_MICROENVIRONMENT,
    VIEW_MORPHOLOGY,
)
from .._serialize import to_jsonable as _jsonable
from .._version import __version__

#: Position -> table row of a store written in storage order.
STORE_ROWS = "storage_rows"
#: Per-chunk completion flags of a store being written (for resuming).
STORE_DONE = "chunk_done"
#: Prefix of in-process (in-memory) store locations.
MEMORY_PREFIX = "memory:"
#: Group attribute holding the store's metadata.
ATTRS_KEY = STORE_ATTRS_KEY
#: Layout version of the zarr store (bump when the layout changes incompatibly).
STORE_FORMAT = 1

#: In-memory stores by location. Weak: a store lives as long as something uses it (the
#: table whose ``uns`` holds its :class:`MemoryLocation`, or the user's own reference).
_MEMORY_STORES: weakref.WeakValueDictionary[str, ViewStore] = weakref.WeakValueDictionary()
#: Prefix of store locations relative to the root of the SpatialData zarr holding them.
SDATA_PREFIX = "sdata:"
#: Store location (and ``cell_views(store=...)`` value) of views cut on the fly.
ON_THE_FLY = "on_the_fly"
#: ``cell_views(store=...)`` default: in memory when the views are small, else on the fly.
AUTO_STORE = "auto"


class StoreLocation(str):
    """A store location string holding its store while a table refers to it.

    Copies of the table (``adata.copy()``, ``spatialdata.deepcopy``) share the store;
    pickled (e.g. to another process) or written, it becomes the plain string.
    """

    def __new__(cls, key: str, store: Any):
        obj = super().__new__(cls, key)
        obj.store = store
        return obj

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):  # pickling cannot carry the store to another process
        return (str, (str(self),))


class OnTheFlyLocation(StoreLocation):
    """``"on_the_fly"``, holding the on-the-fly store of a table while the table refers to it.

    Written with the table it is the plain string: :func:`read_views` given the SpatialData
    rebuilds the store from its image and labels.
    """


def _write_plain_str(f, k, v, *, _writer, dataset_kwargs, _base):
    _base(f, k, str(v), _writer=_writer, dataset_kwargs=dataset_kwargs)


class MemoryLocation(StoreLocation):
    """``"memory:<uuid>"``, holding its in-memory store alive while a table refers to it.

    Written with the table, it becomes a plain string; inside a SpatialData zarr the
    store itself is saved beside the table (see :func:`_write_memory_location`).
    """


def _sdata_views_path(root: Path, table: str, key: str) -> Path:
    return root / SDATA_VIEWS_DIR / table / f"{key}.zarr"


def _write_memory_location(f, k, v, *, _writer, dataset_kwargs, _base):
    """Write a :class:`MemoryLocation` with anndata: save the store, write where it went.

    A table written inside a SpatialData zarr (``<root>/tables/<table>/uns/<key>``) gets
    its views saved to ``<root>/mad_views/<table>/<key>.zarr`` and its ``store`` entry
    becomes ``"sdata:mad_views/<table>/<key>.zarr"`` (relative to the SpatialData, so
    the folder can move); ``store_written_at`` records the absolute path as a fallback
    for readers given only the table. Anywhere else the views cannot follow: a warning
    says so and the entry stays ``"memory:<uuid>"``.
    """
    from .._logging import logger
    from ._lock import StoreLock, warn_user

    value = str(v)
    full = None
    try:
        from zarr.storage import LocalStore

        if isinstance(f.store, LocalStore):
            full = Path(f.store.root) / f.path
    except (ImportError, AttributeError):
        full = None
    parts = full.parts if full is not None else ()
    if k == "store" and len(parts) >= 5 and parts[-4] == "tables" and parts[-2] == "uns":
        root, table, key = full.parents[3], parts[-3], parts[-1]
        dest = _sdata_views_path(root, table, key)
        with StoreLock(dest):
            v.store._save_locked(dest, chunk_size=64, overwrite=dest.exists())
        rel = dest.relative_to(root).as_posix()
        logger.info("saved the in-memory views of table %r (uns[%r]) into %s", table, key, dest)
        _base(f, k, SDATA_PREFIX + rel, _writer=_writer, dataset_kwargs=dataset_kwargs)
        _base(
            f,
            "store_written_at",
            str(dest.resolve()),
            _writer=_writer,
            dataset_kwargs=dataset_kwargs,
        )
        return
    warn_user(
        f"the cell views this table refers to ({value}) are kept in memory only and are not "
        "written with it: in a new process mad.io.read_views will not find them. Write the "
        "table inside a SpatialData (sdata.write saves them into its zarr), or keep them on "
        "disk with mad.pp.cell_views(..., store='views.zarr') (or ViewStore.save)."
    )
    _base(f, k, value, _writer=_writer, dataset_kwargs=dataset_kwargs)


def _register_anndata_writer() -> bool:
    """Teach anndata to write a :class:`MemoryLocation` (as a string, saving the views)."""
    try:
        from functools import partial

        from anndata._io.specs.registry import _REGISTRY
    except ImportError:  # pragma: no cover - another anndata layout
        return False
    try:
        for (dest, src, mods), base in list(_REGISTRY.write.items()):
            if src is str and not mods:
                _REGISTRY.write[(dest, MemoryLocation, mods)] = partial(
                    _write_memory_location, _base=base
                )
                _REGISTRY.write[(dest, OnTheFlyLocation, mods)] = partial(
                    _write_plain_str, _base=base
                )
        _REGISTRY.write_specs[MemoryLocation] = _REGISTRY.write_specs[str]
        _REGISTRY.write_specs[OnTheFlyLocation] = _REGISTRY.write_specs[str]
    except (AttributeError, KeyError, TypeError):  # pragma: no cover
        return False
    return True


#: Whether tables may hold :class:`MemoryLocation` objects (anndata knows how to write them);
#: if not, locations are plain strings and in-memory stores are kept for the process.
_LOCATIONS_WRITABLE = _register_anndata_writer()
_KEEP_ALIVE: dict[str, ViewStore] = {}


def _compressor(level: int = 5):
    # Blosc-LZ4 compresses the mostly-dark uint8 views 3-10x at >1 GB/s, so writing is
    # bounded by view extraction rather than by compression.
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="lz4", clevel=level, shuffle="noshuffle", typesize=1)


def check_rows(idx: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """Row indices ``idx`` as a flat int64 array in ``[0, n)`` (negative ones count from the end).

    Raises
    ------
    IndexError
        An index outside ``[-n, n)``.
    """
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"row index out of range for a store of {n} cells.")
    return np.where(idx < 0, idx + n, idx)


class LazyRows:
    """Read-only ``(N, ...)`` array-like whose rows are read (or cut) when indexed.

    Indexing with an int, a slice, an integer or a boolean array gives the table rows
    to :meth:`_take`; further indices apply to what it returns. Subclasses define
    ``shape``, ``dtype`` and ``_take``.
    """

    @property
    def shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def dtype(self) -> np.dtype:
        raise NotImplementedError

    def _take(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (table order, any order, repeats allowed) as a numpy array."""
        raise NotImplementedError

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            out = self._take(np.asarray([int(key)]))[0]
            return out[rest] if rest else out
        rows = np.arange(len(self))[key] if isinstance(key, slice) else np.asarray(key)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        out = self._take(rows)
        return out[(slice(None), *rest)] if rest else out

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out.astype(dtype) if dtype is not None else out


class _TableOrderArray(LazyRows):
    """Read-only array-like that presents storage-ordered rows in table order.

    Indexing maps table rows to storage positions, reads them sorted (so each zarr
    chunk is decoded once) and returns them in the requested order.
    """

    def __init__(self, raw: Any, pos: np.ndarray):
        self._raw = raw
        self._pos = pos  # table row -> storage position

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._raw.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._raw.dtype)

    def _take(self, rows: np.ndarray) -> np.ndarray:
        return _read_rows(self._raw, self._pos[rows])

    def __repr__(self) -> str:
        return f"<table-ordered view of {self._raw!r}>"


def _read_rows(raw: Any, pos: np.ndarray) -> np.ndarray:
    """Rows ``pos`` of ``raw`` (numpy or zarr), in the given order, decoding each chunk once."""
    pos = np.asarray(pos, dtype=np.int64)
    if pos.size == 0:
        return np.empty((0, *raw.shape[1:]), dtype=raw.dtype)
    if isinstance(raw, np.ndarray):
        return raw[pos]
    order = np.argsort(pos, kind="stable")
    sorted_pos = pos[order]
    uniq, inverse = np.unique(sorted_pos, return_inverse=True)
    if uniq[-1] - uniq[0] + 1 == len(uniq):  # contiguous: one basic slice
        block = raw[int(uniq[0]) : int(uniq[-1]) + 1]
    else:
        block = raw.get_orthogonal_selection((uniq,) + (slice(None),) * (raw.ndim - 1))
    out = np.empty((len(pos), *raw.shape[1:]), dtype=raw.dtype)
    out[order] = block[inverse]
    return out


class ViewStore:
    """Morphology and microenvironment views of every cell, in the table's row order.

    Build one with :func:`madspatial.pp.cell_views`, open one with
    :func:`madspatial.io.read_views`. ``morphology`` and ``microenvironment``
    are numpy arrays (in memory) or lazy array-likes over zarr (on disk);
    :meth:`batch` is the efficient way to read rows.

    Parameters
    ----------
    morphology
        ``(N, C, Hm, Wm)`` uint8 array-like (rows in storage order when
        ``storage_rows`` is given, else in table order).
    microenvironment
        ``(N, C, He, We)`` uint8 array-like, same row order as ``morphology``.
    instance_id
        ``(N,)`` label ids in table order.
    centroid
        ``(N, 2)`` (x, y) centroids in image pixels, table order.
    window_px
        ``(N,)`` microenvironment window side in image pixels, table order.
    attrs
        Metadata (``channel_names``, ``morphology_size``, ``microenvironment_size``, ...).
    path
        Location of the zarr store (``None``: in memory).
    storage_rows
        Table row of each stored row, when the arrays are not in table order.
    """

    def __init__(
        self,
        morphology: Any,
        microenvironment: Any,
        instance_id: np.ndarray,
        centroid: np.ndarray,
        window_px: np.ndarray,
        attrs: dict[str, Any],
        *,
        path: str | None = None,
        storage_rows: np.ndarray | None = None,
    ):
        n = len(instance_id)
        for name, arr in ((VIEW_MORPHOLOGY, morphology), (VIEW_MICROENVIRONMENT, microenvironment)):
            if len(arr.shape) != 4 or arr.shape[0] != n:
                raise ValueError(
                    f"{name} must have shape (N={n}, C, H, W); got {tuple(arr.shape)}."
                )
            if np.dtype(arr.dtype) != np.uint8:
                raise ValueError(f"{name} must be uint8, got {arr.dtype}.")
        if morphology.shape[1] != microenvironment.shape[1]:
            raise ValueError(
                f"morphology has {morphology.shape[1]} channels, microenvironment "
                f"{microenvironment.shape[1]}; both views come from the same image."
            )
        self._morph_raw = morphology
        self._micro_raw = microenvironment
        self.instance_id = _ids(instance_id)
        self.centroid = np.asarray(centroid, dtype=np.float64).reshape(n, 2)
        self.window_px = np.asarray(window_px, dtype=np.float64).reshape(n)
        self.attrs = dict(attrs)
        self.attrs.setdefault("channel_names", [f"ch{i}" for i in range(morphology.shape[1])])
        self.attrs.setdefault("morphology_size", int(morphology.shape[-1]))
        self.attrs.setdefault("microenvironment_size", int(microenvironment.shape[-1]))
        self.path = path
        if storage_rows is not None:
            storage_rows = np.asarray(storage_rows, dtype=np.int64)
            if np.array_equal(storage_rows, np.arange(n)):
                storage_rows = None
        self._rows = storage_rows
        if storage_rows is not None:
            pos = np.empty(n, dtype=np.int64)
            pos[storage_rows] = np.arange(n)
            self._pos = pos
        else:
            self._pos = None
        self._key: str | None = None

    # --- array access ---------------------------------------------------------
    @property
    def morphology(self):
        """``(N, C, Hm, Wm)`` uint8, table row order."""
        return (
            self._morph_raw if self._pos is None else _TableOrderArray(self._morph_raw, self._pos)
        )

    @property
    def microenvironment(self):
        """``(N, C, He, We)`` uint8, table row order."""
        return (
            self._micro_raw if self._pos is None else _TableOrderArray(self._micro_raw, self._pos)
        )

    @property
    def storage_order(self) -> np.ndarray:
        """Table rows in the order they are stored: reading along it is sequential."""
        return np.arange(len(self)) if self._rows is None else self._rows.copy()

    def batch(self, idx: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Morphology and microenvironment views of table rows ``idx``.

        Parameters
        ----------
        idx
            Row indices (any order, repeats allowed).

        Returns
        -------
        ``(morphology, microenvironment)``: uint8 numpy arrays ``(len(idx), C, H, W)``.
        """
        return self._batch(check_rows(idx, len(self)))

    def _batch(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`batch` of checked rows ``idx`` (int64 in ``[0, N)``)."""
        pos = idx if self._pos is None else self._pos[idx]
        return _read_rows(self._morph_raw, pos), _read_rows(self._micro_raw, pos)

    # --- metadata ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.instance_id)

    @property
    def channel_names(self) -> list[str]:
        return list(self.attrs["channel_names"])

    @property
    def n_channels(self) -> int:
        return int(self._morph_raw.shape[1])

    @property
    def morphology_size(self) -> int:
        return int(self._morph_raw.shape[-1])

    @property
    def microenvironment_size(self) -> int:
        return int(self._micro_raw.shape[-1])

    @property
    def in_memory(self) -> bool:
        return self.path is None

    @property
    def location(self) -> str:
        """Where :func:`read_views` finds this store: the zarr path or ``"memory:<uuid>"``."""
        if self.path is not None:
            return self.path
        if self._key is None:
            self._key = MEMORY_PREFIX + uuid.uuid4().hex
            _MEMORY_STORES[self._key] = self
            if not _LOCATIONS_WRITABLE:  # pragma: no cover
                _KEEP_ALIVE[self._key] = self
        return MemoryLocation(self._key, self) if _LOCATIONS_WRITABLE else self._key

    def __repr__(self) -> str:
        where = self.path or "memory"
        return (
            f"ViewStore({len(self)} cells, {self.n_channels} channels "
            f"{self.channel_names}, morphology {self.morphology_size}px, microenvironment "
            f"{self.microenvironment_size}px, at {where})"
        )

    # --- copies -------------------------------------------------------------------
    def subset(self, idx: Sequence[int] | np.ndarray | slice) -> ViewStore:
        """Copy rows ``idx`` (table order) into an in-memory store, e.g. for tests or plots."""
        rows = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        morph, micro = self.batch(rows)
        attrs = dict(self.attrs, n_cells=len(rows))
        return ViewStore(
            morph,
            micro,
            self.instance_id[rows],
            self.centroid[rows],
            self.window_px[rows],
            attrs,
        )

    def save(self, path: str | Path, *, chunk_size: int = 64, overwrite: bool = False) -> ViewStore:
        """Write the store as chunked, compressed zarr (table order) and return it opened lazily.

        Parameters
        ----------
        path
            Target directory (``*.zarr``).
        chunk_size
            Cells per zarr chunk.
        overwrite
            Replace an existing view store at ``path`` (never anything else).
        """
        from ._lock import StoreLock

        if self.path is not None and Path(self.path).resolve() == Path(path).resolve():
            raise ValueError(f"cannot save the view store at {path} onto itself.")
        with StoreLock(path):
            self._save_locked(path, chunk_size=chunk_size, overwrite=overwrite)
        return open_zarr_views(path)

    def _save_locked(self, path: str | Path, *, chunk_size: int, overwrite: bool) -> None:
        writer = ZarrViewWriter.create(
            path,
            n_cells=len(self),
            n_channels=self.n_channels,
            morphology_size=self.morphology_size,
            microenvironment_size=self.microenvironment_size,
            chunk_size=chunk_size,
            attrs=self.attrs,
            instance_id=self.instance_id,
            centroid=self.centroid,
            window_px=self.window_px,
            storage_rows=np.arange(len(self)),
            overwrite=overwrite,
        )
        for c0 in range(0, len(self), chunk_size * 8):
            c1 = min(len(self), c0 + chunk_size * 8)
            morph, micro = self.batch(np.arange(c0, c1))
            writer.write(c0, morph, micro)
        writer.finish()


class ZarrViewWriter:
    """Create a zarr view store and fill it chunk-aligned slice by slice (resumable).

    Rows are written in storage order; ``storage_rows`` (storage position ->
    table row) is stored beside the views. A per-chunk flag array records which
    chunks are complete so an interrupted run resumes where it stopped.
    """

    def __init__(self, group):
        self.group = group
        self.morphology = group[VIEW_MORPHOLOGY]
        self.microenvironment = group[VIEW_MICROENVIRONMENT]
        self.done = group[STORE_DONE]
        self.chunk_size = int(self.morphology.chunks[0])
        self._direct = _direct_chunk_writer(group, (self.morphology, self.microenvironment))

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        n_cells: int,
        n_channels: int,
        morphology_size: int,
        microenvironment_size: int,
        chunk_size: int,
        attrs: dict[str, Any],
        instance_id: np.ndarray,
        centroid: np.ndarray,
        window_px: np.ndarray,
        storage_rows: np.ndarray,
        overwrite: bool = False,
    ) -> ZarrViewWriter:
        import zarr

        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(
                f"a store already exists at {path}; pass overwrite=True to replace it."
            )
        if path.exists():
            check_replaceable(path)
        remove_leftovers(path)
        # Built beside, then renamed into place: a run killed while creating the store leaves
        # either no store or a whole one (never one without its arrays or its flags).
        tmp = path.with_name(f".{path.name}{_CREATING}{uuid.uuid4().hex[:12]}")
        group = zarr.open_group(str(tmp), mode="w-")
        n_chunks = max(1, -(-n_cells // chunk_size))
        comp = _compressor()
        for name, size in (
            (VIEW_MORPHOLOGY, morphology_size),
            (VIEW_MICROENVIRONMENT, microenvironment_size),
        ):
            group.create_array(
                name,
                shape=(n_cells, n_channels, size, size),
                chunks=(chunk_size, n_channels, size, size),
                dtype=np.uint8,
                compressors=comp,
                fill_value=0,
                dimension_names=("cell", "c", "y", "x"),
            )
        small = {
            STORE_INSTANCE_ID: _ids(instance_id),
            STORE_CENTROID: np.asarray(centroid, dtype=np.float64),
            STORE_WINDOW_PX: np.asarray(window_px, dtype=np.float64),
            STORE_ROWS: np.asarray(storage_rows, dtype=np.int64),
        }
        for name, arr in small.items():
            group.create_array(name, data=arr, chunks=arr.shape if arr.size else None)
        group.create_array(STORE_DONE, shape=(n_chunks,), chunks=(1,), dtype=np.uint8, fill_value=0)
        meta = dict(attrs)
        meta.update(
            store_format=STORE_FORMAT,
            madspatial_version=__version__,
            n_cells=int(n_cells),
            chunk_size=int(chunk_size),
            complete=False,
        )
        group.attrs[ATTRS_KEY] = _jsonable(meta)
        replace_dir(tmp, path)
        return cls(zarr.open_group(str(path), mode="r+"))

    @classmethod
    def open_existing(cls, path: str | Path) -> ZarrViewWriter:
        import zarr

        return cls(zarr.open_group(str(path), mode="r+"))

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs[ATTRS_KEY])

    @property
    def n_chunks(self) -> int:
        return int(self.done.shape[0])

    def chunks_done(self) -> np.ndarray:
        return np.asarray(self.done[:], dtype=bool)

    def write(self, start: int, morphology: np.ndarray, microenvironment: np.ndarray) -> None:
        """Write storage rows ``start : start + len(morphology)`` and flag their chunks done.

        ``start`` must be chunk-aligned and the slice must end on a chunk
        boundary or at the end of the store, so concurrent writers never share a chunk.
        """
        n = len(morphology)
        stop = start + n
        total = self.morphology.shape[0]
        if start % self.chunk_size or (stop % self.chunk_size and stop != total):
            raise ValueError(
                f"rows {start}:{stop} are not aligned to chunks of {self.chunk_size} cells."
            )
        c0, c1 = start // self.chunk_size, -(-stop // self.chunk_size)
        if self._direct is not None:
            for arr, data in (
                (self.morphology, morphology),
                (self.microenvironment, microenvironment),
            ):
                for c in range(c0, c1):
                    a = c * self.chunk_size - start
                    self._direct(arr, c, data[a : a + self.chunk_size])
        else:
            self.morphology[start:stop] = morphology
            self.microenvironment[start:stop] = microenvironment
        self.done[c0:c1] = 1

    def finish(self) -> None:
        meta = self.attrs
        meta["complete"] = True
        self.group.attrs[ATTRS_KEY] = meta


#: Name parts of the hidden siblings of a store being created or replaced.
_CREATING = ".creating-"
_REPLACED = ".replaced-"
#: What a (possibly damaged) view store may hold; anything else is never deleted.
_STORE_MEMBERS = {
    VIEW_MORPHOLOGY,
    VIEW_MICROENVIRONMENT,
    STORE_INSTANCE_ID,
    STORE_CENTROID,
    STORE_WINDOW_PX,
    STORE_ROWS,
    STORE_DONE,
    "zarr.json",
    ".zgroup",
    ".zattrs",
}


def is_view_store(path: str | Path) -> bool:
    """Whether ``path`` is a madspatial view store (whole or damaged), safe to replace."""
    path = Path(path)
    if not path.is_dir():
        return False
    names = {p.name for p in path.iterdir()}
    if not names:
        return True  # an empty folder
    meta = path / "zarr.json"
    if meta.is_file():
        try:
            import json

            if ATTRS_KEY in json.loads(meta.read_text()).get("attributes", {}):
                return True
        except (OSError, ValueError):
            pass
    return names <= _STORE_MEMBERS and ("zarr.json" in names or ".zgroup" in names)


def check_replaceable(path: Path) -> None:
    """Refuse to delete anything that is not a view store, even with ``overwrite=True``."""
    if not is_view_store(path):
        raise FileExistsError(
            f"{path} exists and is not a madspatial view store (e.g. a SpatialData zarr or "
            "another folder); it is never deleted, even with overwrite=True. Pass another "
            "store= path, or remove it yourself if it is really not needed."
        )


def remove_leftovers(path: Path) -> None:
    """Delete hidden siblings left by runs killed while creating or replacing ``path``."""
    import shutil

    parent = path.parent
    if not parent.is_dir():
        return
    for prefix in (f".{path.name}{_CREATING}", f".{path.name}{_REPLACED}"):
        for p in parent.glob(prefix + "*"):
            shutil.rmtree(p, ignore_errors=True)


def replace_dir(src: Path, dst: Path) -> None:
    """Move folder ``src`` to ``dst``, replacing a store there (two renames, then delete)."""
    import shutil

    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}{_REPLACED}{uuid.uuid4().hex[:12]}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _direct_chunk_writer(group, arrays):
    """Make a fast writer of whole chunks for local stores (``None``: go through zarr).

    zarr-python's codec pipeline runs one chunk at a time on its event loop and
    tops out near 400 MB/s here, below the rate views are made. For a local
    store whose arrays use exactly ``bytes`` + ``blosc`` codecs, the chunk
    object is fully specified by the zarr v3 spec (key ``c/<i>/0/0/0``, the
    Blosc frame of the C-ordered chunk), so worker threads compress with
    numcodecs (thread-safe, no global lock off the main thread) and write the
    files themselves, atomically (temporary file, then rename).
    """
    import os

    import numcodecs
    from zarr.codecs import BloscCodec, BytesCodec
    from zarr.storage import LocalStore

    store = group.store
    if not isinstance(store, LocalStore):
        return None
    for arr in arrays:
        codecs = arr.metadata.codecs
        enc = getattr(arr.metadata, "chunk_key_encoding", None)
        if (
            arr.metadata.zarr_format != 3
            or len(codecs) != 2
            or not isinstance(codecs[0], BytesCodec)
            or not isinstance(codecs[1], BloscCodec)
            or getattr(enc, "separator", None) != "/"
            or type(enc).__name__ != "DefaultChunkKeyEncoding"
        ):
            return None
    blosc = codecs[1]

    def name(v: Any) -> str:  # enums up to zarr 3.1, plain strings from zarr 3.4 on
        return str(getattr(v, "value", v))

    shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[name(blosc.shuffle)]
    compressor = numcodecs.Blosc(cname=name(blosc.cname), clevel=blosc.clevel, shuffle=shuffle)
    root = Path(store.root)

    def write(arr, index: int, data: np.ndarray) -> None:
        full = arr.chunks
        if data.shape != full:  # the last chunk is stored whole, padded with the fill value
            pad = np.zeros(full, dtype=arr.dtype)
            pad[: len(data)] = data
            data = pad
        payload = compressor.encode(np.ascontiguousarray(data))
        key = "/".join(["c", str(index)] + ["0"] * (len(full) - 1))
        path = root / arr.path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(payload)
        os.replace(tmp, path)

    return write


def _ids(ids: Any) -> np.ndarray:
    """Instance ids as int64, or uint64 when they are (ids >= 2**63 must not wrap negative)."""
    ids = np.asarray(ids)
    if ids.dtype == np.uint64:
        return ids
    return ids.astype(np.int64)


def open_zarr_views(path: str | Path, *, allow_incomplete: bool = False) -> ViewStore:
    """Open a zarr view store lazily (views are read on access)."""
    import zarr

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no view store at {path}.")
    try:
        group = zarr.open_group(str(path), mode="r")
        meta = dict(group.attrs[ATTRS_KEY])
    except (KeyError, FileNotFoundError, ValueError) as err:
        raise ValueError(
            f"{path} is not a madspatial view store (no '{ATTRS_KEY}' attributes); "
            "create one with mad.pp.cell_views(..., store=path)."
        ) from err
    if int(meta.get("store_format", 0)) > STORE_FORMAT:
        raise ValueError(
            f"view store {path} has format {meta.get('store_format')}, newer than this "
            f"madspatial ({__version__}, format {STORE_FORMAT}); upgrade madspatial."
        )
    if not meta.get("complete", False) and not allow_incomplete:
        done = np.asarray(group[STORE_DONE][:], dtype=bool)
        raise ValueError(
            f"view store {path} is incomplete ({int(done.sum())}/{done.size} chunks written): "
            "the run that wrote it was interrupted. Re-run mad.pp.cell_views with the same "
            "store= to resume it."
        )
    return ViewStore(
        group[VIEW_MORPHOLOGY],
        group[VIEW_MICROENVIRONMENT],
        group[STORE_INSTANCE_ID][:],
        group[STORE_CENTROID][:],
        group[STORE_WINDOW_PX][:],
        meta,
        path=str(path),
        storage_rows=group[STORE_ROWS][:],
    )


def read_views(source: Any, *, table_key: str | None = None, key: str = UNS_VIEWS) -> ViewStore:
    """Open the view store of a dataset, lazily when it is on disk.

    Parameters
    ----------
    source
        A path to a zarr view store, a ``"memory:<uuid>"`` location, a
        :class:`~spatialdata.SpatialData` (its table's ``.uns[key]["store"]``
        says where the store is; ``"sdata:<relative path>"`` locations, written by
        ``sdata.write``, are found inside its zarr even after it moved) or an
        :class:`~anndata.AnnData` table (same; ``sdata:`` locations through the
        absolute path recorded when written).
    table_key
        Which table of a SpatialData to look in (default: the one with ``.uns[key]``).
    key
        The ``.uns`` key written by :func:`madspatial.pp.cell_views` (its ``key_added``).

    Returns
    -------
    The :class:`ViewStore`.
    """
    if isinstance(source, ViewStore):
        return source
    if isinstance(source, StoreLocation):
        return source.store
    if isinstance(source, (str, Path)):
        loc = str(source)
        if isinstance(source, str) and loc == ON_THE_FLY:
            raise ValueError(
                f"views recorded as {ON_THE_FLY!r} are cut from the image of their SpatialData; "
                "pass the SpatialData (not the location) to mad.io.read_views."
            )
        if loc.startswith(MEMORY_PREFIX):
            store = _MEMORY_STORES.get(loc)
            if store is None:
                raise KeyError(
                    f"in-memory view store {loc!r} does not exist in this Python process "
                    "(in-memory views live as long as the table that refers to them, in the "
                    "process that made them; a table written outside a SpatialData does not "
                    "carry them). Re-run mad.pp.cell_views, or pass store='views.zarr' to keep "
                    "them on disk."
                )
            return store
        if loc.startswith(SDATA_PREFIX):
            raise ValueError(
                f"view store location {loc!r} is relative to the SpatialData zarr that holds "
                "it; pass the SpatialData (spatialdata.read_zarr(path)) to mad.io.read_views."
            )
        return open_zarr_views(loc)
    table = _table_with_views(source, table_key=table_key, key=key)
    info = table.uns[key]
    if "store" not in info:
        raise KeyError(f"table.uns[{key!r}] has no 'store' entry; re-run mad.pp.cell_views.")
    store = _store_of(source, table, info, key)
    instance_key = info.get("label_id_key") or table.uns.get("spatialdata_attrs", {}).get(
        "instance_key"
    )
    if instance_key in table.obs and len(store) == table.n_obs:
        from ._ids import _as_id_array, id_codes

        try:
            same = np.array_equal(
                id_codes(_as_id_array(table.obs[instance_key], instance_key)),
                id_codes(store.instance_id),
            )
        except ValueError:
            same = False
        if not same:
            raise ValueError(
                "the table's rows no longer match the view store (instance ids differ, e.g. "
                "the table was subset or reordered after mad.pp.cell_views); subset the store "
                "with store.subset(rows) or re-run mad.pp.cell_views."
            )
    elif len(store) != table.n_obs:
        raise ValueError(
            f"the view store holds {len(store)} cells but the table has {table.n_obs} rows; "
            "re-run mad.pp.cell_views on this table."
        )
    return store


def _store_of(source: Any, table, info: dict, key: str) -> ViewStore:
    """Open the store a table's record points at (views cut on the fly: rebuilt from the source)."""
    loc = info["store"]
    if isinstance(loc, OnTheFlyLocation):
        return loc.store
    if isinstance(loc, str) and loc == ON_THE_FLY:
        if getattr(source, "tables", None) is None:
            raise ValueError(
                f"the views of this table are cut on the fly (uns[{key!r}]['store'] is "
                f"{ON_THE_FLY!r}) from the image and labels of its SpatialData, which a table "
                "alone does not have; pass the SpatialData (to mad.io.read_views, "
                "mad.tl.embed or mad.tl.pretrain)."
            )
        from ..pp._on_the_fly import rebuild_on_the_fly

        name = next(k for k, t in source.tables.items() if t is table)
        store = rebuild_on_the_fly(source, name, info, key)
        info["store"] = store.location  # later reads in this process reuse it
        return store
    return read_views(_resolve_location(info, getattr(source, "path", None)))


def _resolve_location(info: dict, sdata_path: Any) -> Any:
    """Resolve a table's store location (``sdata:`` paths against the SpatialData's root)."""
    loc = info["store"]
    if not (isinstance(loc, str) and loc.startswith(SDATA_PREFIX)):
        return loc
    rel = loc[len(SDATA_PREFIX) :]
    tried = []
    if sdata_path is not None:
        cand = Path(sdata_path) / rel
        if cand.exists():
            return str(cand)
        tried.append(str(cand))
    written = info.get("store_written_at")
    if written and Path(written).exists():
        return str(written)
    tried.append(str(written))
    raise FileNotFoundError(
        f"the views of this table were saved inside its SpatialData zarr ({loc!r}) but are not "
        f"at {' or '.join(tried)}; pass the SpatialData read with spatialdata.read_zarr (with "
        "its mad_views folder) to mad.io.read_views, or re-run mad.pp.cell_views."
    )


def _table_with_views(source: Any, *, table_key: str | None, key: str):
    import anndata as ad

    if isinstance(source, ad.AnnData):
        if key not in source.uns:
            raise KeyError(f"table has no .uns[{key!r}]; run mad.pp.cell_views(sdata, ...) first.")
        return source
    tables = getattr(source, "tables", None)
    if tables is None:
        raise TypeError(
            f"read_views expects a path, a SpatialData, an AnnData or a ViewStore; got "
            f"{type(source).__name__}."
        )
    if table_key is not None:
        if table_key not in tables:
            raise KeyError(f"no table {table_key!r}; tables: {list(tables)}.")
        return _table_with_views(tables[table_key], table_key=None, key=key)
    hits = [k for k, t in tables.items() if key in t.uns]
    if not hits:
        raise KeyError(
            f"no table of this SpatialData has .uns[{key!r}]; run mad.pp.cell_views first."
        )
    if len(hits) > 1:
        raise ValueError(f"several tables have views ({hits}); pass table_key=.")
    return tables[hits[0]]
