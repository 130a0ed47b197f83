"""``mad.pp.cell_views``: every cell's morphology and microenvironment views, tile by tile."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._constants import NORMALIZE_ATTR as _NORMALIZE_ATTR
from .._constants import OBS_BORDER, PATCH_SIZE, UNS_VIEWS
from .._logging import added, logger, progress
from .._settings import settings
from ..io._arrays import _few
from ..io._lock import StoreLock
from ..io._views import (
    AUTO_STORE,
    ON_THE_FLY,
    ViewStore,
    ZarrViewWriter,
    _jsonable,
    open_zarr_views,
)
from ._dask import scheduler, scheduler_threads
from ._extract import Cells, ViewSpec, extract_views
from ._inputs import (
    get_image,
    get_labels,
    labels_offset,
    resolve_table,
)
from ._on_the_fly import choose_store
from ._options import check_int, check_real, check_view_size
from ._plan import DERIVED_VIEW_KEYS, plan_views
from ._plan import check_region as _check_region
from ._reader import RegionReader
from ._regions import resolve_inputs

#: Attribute that :func:`madspatial.pp.normalize` sets on its output image.
NORMALIZE_ATTR = _NORMALIZE_ATTR  # re-exported (pp._normalize imports it from here)
#: A task region is split when its rescaled side would exceed this many pixels.
MAX_RESCALED_SIDE = 6144


def _image_gain(data, image_el, image_key: str) -> tuple[float, bool]:
    """How pixel values map to 0..255, and whether the image is madspatial-normalized."""
    from ._inputs import scale0

    trusted = NORMALIZE_ATTR in getattr(scale0(image_el), "attrs", {})
    if data.dtype == np.uint8:
        return 1.0, True
    if data.dtype == bool:
        return 255.0, True
    if np.issubdtype(data.dtype, np.floating):
        return 255.0, trusted
    if data.dtype == np.uint16 and trusted:  # mad.pp.normalize of an integer image
        return 255.0 / 65535.0, True
    raise ValueError(
        f"image {image_key!r} has dtype {data.dtype}; views are cut from a normalized image "
        f"(float in [0, 1], or uint16 made by mad.pp.normalize) or a uint8 image. Run mad.pp.normalize(sdata, image_key="
        f"{image_key!r}) and pass image_key={image_key + '_normalized'!r}."
    )


def _sample(data, n_max: int = 1_000_000) -> np.ndarray:
    """Return a strided subsample (C, ., .) of a (C, H, W) dask image, about ``n_max`` pixels."""
    h, w = data.shape[1:]
    step = max(1, int(np.ceil(np.sqrt(h * w / n_max))))
    return np.asarray(data[:, ::step, ::step].compute())


def _check_image_values(data, names: list[str], image_key: str, gain: float) -> None:
    """Non-finite values, values outside [0, 1] and constant channels, on a subsample."""
    s = _sample(data).astype(np.float64)
    bad = ~np.isfinite(s)
    if bad.any():
        ch = [names[c] for c in np.flatnonzero(bad.any(axis=(1, 2)))]
        raise ValueError(
            f"image {image_key!r} holds NaN/inf pixels (channels {ch}); fill or mask them "
            "(e.g. image.fillna(0)) and run mad.pp.normalize again."
        )
    if gain == 255.0 and (s.min() < -1e-3 or s.max() > 1 + 1e-3):
        raise ValueError(
            f"image {image_key!r} holds values in [{s.min():.4g}, {s.max():.4g}], not [0, 1]; "
            f"run mad.pp.normalize(sdata, image_key={image_key!r}) and cut views from its output."
        )
    flat = s.reshape(s.shape[0], -1)
    const = [names[c] for c in range(len(flat)) if flat[c].size and flat[c].min() == flat[c].max()]
    if const:
        raise ValueError(
            f"channel(s) {const} of image {image_key!r} are constant (zero variance) and carry "
            f"no information; drop them, e.g. sdata.images[{image_key!r}].sel(c=[...])."
        )


class _MemorySink:
    """Views go straight into the final arrays, at their table rows."""

    def __init__(self, n: int, c: int, sm: int, se: int):
        # np.empty: rows are written exactly once, so zero-filling would only add page faults.
        self.morphology = np.empty((n, c, sm, sm), dtype=np.uint8)
        self.microenvironment = np.empty((n, c, se, se), dtype=np.uint8)

    def begin(self, start: int, rows: np.ndarray):
        return self.morphology, self.microenvironment, rows

    def commit(self, start: int, rows: np.ndarray, morph, micro) -> None:
        pass


class _ZarrSink:
    """Views go into per-thread buffers, then into whole chunks of the zarr store."""

    def __init__(self, path: str, c: int, sm: int, se: int):
        self.path, self.shape = path, (c, sm, se)
        self._local = threading.local()

    def __getstate__(self):
        return {"path": self.path, "shape": self.shape}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()

    def begin(self, start: int, rows: np.ndarray):
        n = len(rows)
        c, sm, se = self.shape
        buf = getattr(self._local, "buf", None)
        if buf is None or len(buf[0]) < n:  # reused across tasks: no repeated page faults
            buf = (np.zeros((n, c, sm, sm), np.uint8), np.zeros((n, c, se, se), np.uint8))
            self._local.buf = buf
        return buf[0], buf[1], np.arange(n)

    def commit(self, start: int, rows: np.ndarray, morph, micro) -> None:
        n = len(rows)
        ZarrViewWriter.open_existing(self.path).write(start, morph[:n], micro[:n])


def _run_task(
    start: int,
    rows: np.ndarray,
    cells: Cells,
    groups: list,
    image: RegionReader,
    labels: RegionReader,
    offset: tuple[int, int],
    spec: ViewSpec,
    image_key: str,
    sink: Any,
) -> np.ndarray:
    """Extract the views of one task's cells into the sink; return the rows with empty masks."""
    morph, micro, dest = sink.begin(start, rows)

    def check(region, origin):
        _check_region(region, origin, image_key, spec.gain)

    empty = np.zeros(len(rows), dtype=bool)
    for sel, _region in groups:
        empty[sel] = extract_views(
            image, labels, offset, cells.take(sel), spec, morph, micro, dest[sel], check
        )
    sink.commit(start, rows, morph, micro)
    return rows[empty]


def _fingerprint(**parts: Any) -> str:
    h = hashlib.sha1()
    for k in sorted(parts):
        v = parts[k]
        h.update(k.encode())
        h.update(
            np.ascontiguousarray(v).tobytes() if isinstance(v, np.ndarray) else repr(v).encode()
        )
    return h.hexdigest()


#: Image and label tiles (side in pixels) hashed into a store's fingerprint, at seeded
#: positions: three quarters on cells, the rest anywhere on the image.
FINGERPRINT_TILES = 48
FINGERPRINT_TILE = 32
#: What each part of the fingerprint covers, for the message when a store does not match.
_PART_NAMES = {
    "parameters": "parameters",
    "cells": "cells (ids, centroids, extents or windows)",
    "image_pixels": "image pixels",
    "labels_pixels": "label pixels",
}


def _pixel_digests(image, labels, offset, cx, cy) -> tuple[str, str]:
    """Hashes of a seeded sample of image and label tiles (same positions every run)."""
    h, w = image.shape[-2:]
    dy, dx = offset
    rng = np.random.default_rng(0)
    t = FINGERPRINT_TILE
    k = min(len(cx), FINGERPRINT_TILES * 3 // 4)
    on = rng.choice(len(cx), size=k, replace=False) if k else np.zeros(0, dtype=np.int64)
    extra = FINGERPRINT_TILES - k
    ys = np.r_[cy[on], rng.uniform(0, h, extra)]
    xs = np.r_[cx[on], rng.uniform(0, w, extra)]
    him, hlab = hashlib.blake2b(digest_size=16), hashlib.blake2b(digest_size=16)
    him.update(str(image.dtype).encode())
    for y, x in zip(ys, xs):
        y0 = int(np.clip(round(float(y)) - t // 2, 0, max(h - t, 0)))
        x0 = int(np.clip(round(float(x)) - t // 2, 0, max(w - t, 0)))
        him.update(np.ascontiguousarray(image.read(y0, y0 + t, x0, x0 + t)).tobytes())
        lab = labels.read(y0 - dy, y0 - dy + t, x0 - dx, x0 - dx + t)
        hlab.update(np.ascontiguousarray(lab, dtype=np.int64).tobytes())
        hlab.update(str(lab.shape).encode())
    return him.hexdigest(), hlab.hexdigest()


def _fingerprint_parts(
    attrs,
    *,
    chunk_size,
    cells_per_tile,
    image,
    labels,
    image_el,
    offset,
    codes,
    cells,
    extents,
    normalize_record=None,
) -> dict[str, str]:
    """Hashes of what a store's views depend on: parameters, cells, image and label pixels."""
    from ._inputs import scale0

    cx, cy, micro_w, morph_w = cells
    img_digest, lab_digest = _pixel_digests(image, labels, offset, cx, cy)
    # The element's attrs do not survive sdata.write; the SpatialData's record does.
    normalized = getattr(scale0(image_el), "attrs", {}).get(NORMALIZE_ATTR) or normalize_record
    return {
        "parameters": _fingerprint(
            attrs=sorted((k, str(v)) for k, v in attrs.items()),
            chunk=chunk_size,
            tile=cells_per_tile,
            dtype=str(image.dtype),
            normalize=repr(normalized),
        ),
        "cells": _fingerprint(
            ids=np.asarray(codes, dtype=np.int64),
            cx=np.round(cx, 6),
            cy=np.round(cy, 6),
            w=np.round(micro_w, 6),
            wm=np.round(morph_w, 6),
            extents=np.round(np.stack(extents), 6),
        ),
        "image_pixels": img_digest,
        "labels_pixels": lab_digest,
    }


def _mismatch(path: Path, old: dict, new: dict) -> str:
    """Which parts of a store's fingerprint differ, with the parameters that changed."""
    old_parts = old.get("fingerprint_parts") or {}
    if not old_parts:
        return "it has no fingerprint of its pixels (written by an older madspatial)"
    what = []
    for key, name in _PART_NAMES.items():
        if old_parts.get(key) == new["fingerprint_parts"].get(key):
            continue
        if key == "parameters":
            skip = {"fingerprint", "fingerprint_parts", "complete", "n_cells", "store_format"}
            derived = set(DERIVED_VIEW_KEYS)
            changed = [k for k, v in _jsonable(new).items() if k not in skip and old.get(k) != v]
            changed.sort(key=lambda k: k in derived)  # the arguments first, then what follows
            diffs = [f"{k} {old.get(k)!r} -> {_jsonable(new)[k]!r}" for k in changed]
            name += f" ({'; '.join(diffs)})" if diffs else ""
        what.append(name)
    return "different " + ", ".join(what) if what else "a different fingerprint"


def _locked_open(path: Path, overwrite: bool, attrs: dict, **kw) -> tuple[StoreLock, np.ndarray]:
    """Take the store's lock, then :func:`_open_or_create` it; the lock is released if that fails.

    The lock is held until the store is complete: a second writer gets a clear error, and a
    lock left by a killed run (kill -9) is taken over with a warning.
    """
    lock = StoreLock(path).acquire()
    try:
        return lock, _open_or_create(path, overwrite, attrs, **kw)
    except BaseException:
        lock.release()
        raise


def _open_or_create(path: Path, overwrite: bool, attrs: dict, **kw) -> np.ndarray:
    """Return the per-chunk done flags of the store at ``path``: resumed, reused or new."""
    if path.exists() and not overwrite:
        try:
            existing = ZarrViewWriter.open_existing(path)
            old = existing.attrs
        except Exception as err:
            raise FileExistsError(
                f"{path} exists and is not a (complete or resumable) view store; pass another "
                "store= path, or overwrite=True to replace it if it is a damaged view store."
            ) from err
        if old.get("fingerprint") != attrs["fingerprint"]:
            raise FileExistsError(
                f"the view store at {path} was made from {_mismatch(path, old, attrs)}, so its "
                "views may be stale and it is not reused. Pass overwrite=True to rebuild it (its "
                "views are replaced), or another store= path."
            )
        done = existing.chunks_done()
        if old.get("complete"):
            logger.warning(
                "cell_views: reusing the complete view store at %s (its fingerprint of the "
                "parameters, cells and sampled image/label pixels matches); pass overwrite=True "
                "to rebuild it.",
                path,
            )
        else:
            logger.info(
                "cell_views: resuming %s (%d/%d chunks already written)",
                path,
                int(done.sum()),
                done.size,
            )
        return done
    writer = ZarrViewWriter.create(
        path,
        n_cells=kw["n"],
        n_channels=kw["c"],
        morphology_size=kw["morphology_size"],
        microenvironment_size=kw["microenvironment_size"],
        chunk_size=kw["chunk_size"],
        attrs=attrs,
        instance_id=kw["rows_ids"],
        centroid=kw["centroid"],
        window_px=kw["micro_w"],
        storage_rows=kw["order"],
        overwrite=overwrite,
    )
    return writer.chunks_done()


def cell_views(
    sdata: Any,
    *,
    image_key: str | dict[str, str] | None = None,
    labels_key: str | None = None,
    table_key: str | None = None,
    regions: str | list[str] | None = None,
    level: int | None = None,
    pixel_size: float | None = None,
    n_neighbors: int = 25,
    morphology_size: int = 70,
    microenvironment_size: int = 224,
    microenvironment_window: Literal["slide", "cell"] = "slide",
    morphology_window: Literal["slide", "cell"] = "slide",
    window_px: float | None = None,
    morphology_window_px: float | None = None,
    morphology_quantile: float = 0.99,
    morphology_margin: float = 1.1,
    store: str | Path | None = AUTO_STORE,
    chunk_size: int = 64,
    cells_per_tile: int | None = None,
    overwrite: bool = False,
    missing: Literal["raise", "intersect"] = "raise",
    label_id_key: str | None = None,
    max_memory_gb: float = 8.0,
    cache_mb: float = 192,
    n_jobs: int | None = None,
    key_added: str = UNS_VIEWS,
    inplace: bool = True,
) -> ViewStore | None:
    """Cut the morphology and microenvironment view of every cell of a table.

    **Microenvironment view**: a square window centred on the cell's centroid
    that holds about ``n_neighbors`` neighbouring cells, resized to
    ``microenvironment_size``. The slide-wide window side is twice the median,
    over cells, of the Chebyshev distance from a cell's centroid to its
    ``n_neighbors``-th nearest neighbour (so the median cell holds exactly
    ``n_neighbors`` neighbour centroids; this is ``sqrt(n / rho)`` for the local
    density ``rho`` of the median cell, robust to holes and tissue borders).
    As in the paper the slide is rescaled once so that window becomes
    ``microenvironment_size`` pixels, and each view is a crop of it (computed
    tile by tile, never holding the rescaled slide; the rescaling factor is
    rounded to a fraction within 0.4% so that tiles agree to the last bit, and
    ``window_px`` records the window actually used). Windows crossing the image
    edge are zero-padded and flagged in ``obs["mad_border"]``.

    **Morphology view**: a window of one slide-wide size that fits the large
    cells (the ``morphology_quantile`` of the centroid-centred bounding-box
    extents, times ``morphology_margin``), centred on the centroid, rescaled to
    ``morphology_size``; every pixel outside the cell's own mask is exactly 0
    (the labels are sampled on the output grid by nearest neighbour). Cell
    size therefore stays visible.

    Work is split into tiles of about ``cells_per_tile`` cells that are
    neighbours along a Hilbert curve; each tile reads only its part of the
    (dask) image with a margin of one window, so memory does not grow with the
    image. Tiles are dask tasks (a ``dask.distributed`` client spreads them).
    A zarr store written with ``store=`` records finished chunks: a run that
    was interrupted resumes where it stopped when called again.

    Parameters
    ----------
    sdata
        SpatialData with the image, the labels and a table annotating the labels.
    image_key
        Image to cut views from: normalized (see :func:`madspatial.pp.normalize`: float in
        [0, 1], or uint8/uint16 with its record) or uint8. A dict ``{region: image}`` names
        one per region. Default: per region, the image covering it in a coordinate system
        they share (a normalized one before its source).
    labels_key
        Cell segmentation: 2-D integer labels (label value = table instance id) or a
        shapes element (polygons, or circles with a ``radius`` column), rasterized onto
        the image grid with its ids. Labels on another grid (another scale, any affine
        spatialdata expresses) are resampled onto the image grid by nearest neighbour;
        only a transformation that is not invertible is an error. Default: the regions
        the table annotates.
    table_key
        Table annotating ``labels_key`` (default: the one that does, preferring the one
        holding its cells; an error only when several do).
    regions
        The regions (labels or shapes elements) of a table annotating several (CosMx: one
        labels element per field of view; several samples) to cut views for. Default:
        every region the table annotates, all into one store, rows in table order (each
        region with its own image, transformation and windows; the per-region records
        are in ``uns[key_added]["regions"]``). With ``inplace``, rows of other regions are
        dropped from the table.
    level, pixel_size
        Pyramid level of multiscale images: ``level=`` by index (0 = finest), or the level
        whose pixel size (in the units of the coordinate system it shares with the
        labels) is nearest ``pixel_size``. Default: the finest.
    n_neighbors
        Neighbouring cells the microenvironment window should hold.
    morphology_size, microenvironment_size
        View sides in pixels; multiples of the ViT patch size 14.
    microenvironment_window
        ``"slide"`` (one window and one rescaling for the slide, as in the
        paper) or ``"cell"`` (each cell's own window, twice its distance to its
        ``n_neighbors``-th neighbour, clipped to 1/4..4 times the slide window,
        each resized separately).
    morphology_window
        ``"slide"`` (one size for all cells) or ``"cell"`` (a tight crop: each
        cell's own extent times ``morphology_margin``, which discards cell size).
    window_px
        Override the slide-wide microenvironment window side (image pixels).
    morphology_window_px
        Override the slide-wide morphology window side (image pixels).
    morphology_quantile, morphology_margin
        Quantile of the cell extents, and the factor on it, that set the
        morphology window.
    store
        Where the views go. ``"auto"`` (default): in memory when they are small (at most
        1 GB, an eighth of the machine's RAM and ``max_memory_gb``; see
        :func:`~madspatial.pp._on_the_fly.auto_memory_budget`), else on the fly, so memory
        stays flat at any cell count; the choice is logged (a Path named ``auto`` is a zarr
        path). Several regions in one store are always joined in memory.
        ``"on_the_fly"``: nowhere - nothing is cut now; the table
        records the parameters (``uns[key_added]["store"] == "on_the_fly"``,
        ``["arguments"]``) and :func:`madspatial.io.read_views`, ``tl.pretrain`` and
        ``tl.embed`` given the SpatialData cut each batch's views from the lazily read image
        with this same code (identical pixels; an
        :class:`~madspatial.pp.OnTheFlyViews`), so memory and disk stay flat at any cell
        count (the choice for whole slides; a Path named ``on_the_fly`` is a zarr path).
        A path: a zarr store to write (chunked, compressed), an optional cache for
        repeated epochs on slow storage. ``None``: keep the views in memory, as long as the table refers to them (``uns[key_added]["store"]``
        holds ``"memory:<uuid>"`` and the arrays; dropping the SpatialData frees them).
        ``sdata.write(path)`` saves in-memory views into ``path/mad_views/<table>/<key>.zarr``
        and records ``"sdata:mad_views/<table>/<key>.zarr"`` (relative to the SpatialData),
        so ``spatialdata.read_zarr(path)`` finds them in another process; writing the
        table alone (``write_h5ad``) warns that the views stay behind.
    chunk_size
        Cells per zarr chunk.
    cells_per_tile
        Cells per tile (dask task). Default: 1024 in memory, 512 for a zarr
        store (whose tasks buffer their views: about ``cells_per_tile`` x the
        bytes of one cell's views per running task).
    overwrite
        Replace an existing view store at ``store`` (the new one is built beside it and
        renamed into place; a folder that is not a view store, such as a SpatialData zarr,
        is never deleted). Without it, a store whose fingerprint matches is resumed
        (incomplete) or reused (complete, logged at WARNING with its path), and a store
        whose fingerprint differs raises ``FileExistsError`` naming what changed: it is
        never reused and never deleted silently. The fingerprint covers every parameter,
        the cells (ids, centroids, extents, windows) and a seeded sample of
        ``FINGERPRINT_TILES`` image and label tiles (plus ``mad.pp.normalize``'s record).
        While a store is written, ``<store>.lock`` names the writer's pid and host: a
        second writer gets an error, and the lock of a killed run is taken over with a
        warning.
    missing
        What to do when table rows have no pixels in the labels or label ids
        have no table row: ``"raise"`` (default) or ``"intersect"``: continue
        with the rows present in both, log a warning with counts and ids,
        record them in ``uns[key_added]["missing"]`` and, when ``inplace``,
        drop the rows without labels from the table.
    label_id_key
        Column of the table's ``obs`` holding each row's label value, when the instance
        ids are not the label values (e.g. Xenium's text cell ids ``"aaabbbcc-1"``).
        Default: the instance key; for text ids, the only integer column whose values
        are the label ids (a column named like ``labels_key`` is preferred).
    max_memory_gb
        Refuse to build an in-memory store larger than this (use ``store=``).
    cache_mb
        Memory for caching decoded image chunks shared by neighbouring tiles
        (a quarter more for label chunks).
    n_jobs
        Worker threads (default ``mad.settings.n_jobs``).
    key_added
        ``.uns`` key of the table recording parameters and the store location.
    inplace
        Write the results into the table (``.obs``, ``.uns``) and return
        ``None``; ``False`` leaves the table untouched and returns the store.

    Returns
    -------
    ``None``, or the :class:`~madspatial.io.ViewStore` when ``inplace=False``.
    With ``inplace=True`` the table gains:

    ``.obs["mad_border"]``
        Whether a cell's window reaches beyond the image (zero-padded views).
    ``.uns[key_added]``
        Parameters, window sizes, ``"store"`` (location for
        :func:`madspatial.io.read_views`) and what was missing.

    Raises
    ------
    ValueError
        Sizes not multiples of 14; missing or unmatched ids (counts and a few
        ids); non-integer or 3-D labels; image/labels shape or transformation
        mismatch; NaN/inf or un-normalized pixels; constant channels; fewer
        cells than ``n_neighbors + 1``.
    """
    morphology_size = check_view_size("morphology_size", morphology_size, PATCH_SIZE)
    microenvironment_size = check_view_size(
        "microenvironment_size", microenvironment_size, PATCH_SIZE
    )
    n_neighbors = check_int("n_neighbors", n_neighbors, example=25)
    if window_px is not None:
        window_px = check_real("window_px", window_px, example=100)
    if morphology_window_px is not None:
        morphology_window_px = check_real("morphology_window_px", morphology_window_px, example=16)
    morphology_quantile = check_real(
        "morphology_quantile", morphology_quantile, low=0.0, high=1.0, example=0.99
    )
    morphology_margin = check_real("morphology_margin", morphology_margin, example=1.1)
    chunk_size = check_int("chunk_size", chunk_size, example=64)
    if cells_per_tile is not None:
        cells_per_tile = check_int("cells_per_tile", cells_per_tile, example=512)
    max_memory_gb = check_real("max_memory_gb", max_memory_gb, example=8)
    cache_mb = check_real("cache_mb", cache_mb, low_open=False, example=192)
    if n_jobs is not None:
        n_jobs = check_int(
            "n_jobs", n_jobs, minimum=-(2**62), example=4, rule="an int (-1: all cores)"
        )
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(
            f"key_added must be a non-empty str, e.g. {UNS_VIEWS!r}; got {key_added!r}."
        )
    for name, val in (
        ("microenvironment_window", microenvironment_window),
        ("morphology_window", morphology_window),
    ):
        if val not in ("slide", "cell"):
            raise ValueError(f"{name} must be 'slide' or 'cell', got {val!r}.")
    if missing not in ("raise", "intersect"):
        raise ValueError(f"missing must be 'raise' or 'intersect', got {missing!r}.")
    n_jobs = settings.resolve_n_jobs(n_jobs)

    # --- inputs -------------------------------------------------------------------------
    if level is not None:
        level = check_int("level", level, minimum=0, example=0, rule="a non-negative int")
    if pixel_size is not None:
        pixel_size = check_real("pixel_size", pixel_size, example=0.5)
    inputs = resolve_inputs(
        sdata,
        image_key=image_key,
        labels_key=labels_key,
        table_key=table_key,
        regions=regions,
        level=level,
        pixel_size=pixel_size,
        label_id_key=label_id_key,
    )
    # the options of the views, as given: the region path and the plan take them alike
    view_options = dict(
        n_neighbors=n_neighbors,
        morphology_size=morphology_size,
        microenvironment_size=microenvironment_size,
        microenvironment_window=microenvironment_window,
        morphology_window=morphology_window,
        window_px=window_px,
        morphology_window_px=morphology_window_px,
        morphology_quantile=morphology_quantile,
        morphology_margin=morphology_margin,
        chunk_size=chunk_size,
        missing=missing,
        cache_mb=cache_mb,
        n_jobs=n_jobs,
    )
    if not inputs.plain:
        from ._region_views import region_views

        store = choose_store(
            store,
            n_cells=None,
            n_channels=0,
            morphology_size=morphology_size,
            microenvironment_size=microenvironment_size,
            max_memory_gb=max_memory_gb,
        )
        options = {
            **view_options,
            "cells_per_tile": cells_per_tile,
            "max_memory_gb": max_memory_gb,
        }
        return region_views(
            sdata,
            inputs,
            store=store,
            overwrite=overwrite,
            inplace=inplace,
            key_added=key_added,
            label_id_key=label_id_key,
            options=options,
        )
    image_key, labels_key, table_key = (
        inputs.regions[0].image_key,
        inputs.regions[0].name,
        inputs.table_key,
    )
    image_el, image, channel_names = get_image(sdata, image_key)
    labels_el, labels = get_labels(sdata, labels_key)
    h, w = image.shape[1:]
    dy, dx = labels_offset(image_el, labels_el, (h, w), labels.shape)
    table_key, table, instance_key = resolve_table(sdata, labels_key, table_key)
    gain, trusted = _image_gain(image, image_el, image_key)
    store = choose_store(
        store,
        n_cells=table.n_obs,
        n_channels=int(image.shape[0]),
        morphology_size=morphology_size,
        microenvironment_size=microenvironment_size,
        max_memory_gb=max_memory_gb,
    )
    if not trusted or image.dtype == np.uint8:
        _check_image_values(image, channel_names, image_key, gain)

    # --- cells, windows, plan (one code path with the views cut on the fly) ----------------
    on_the_fly = _is_on_the_fly(store)
    if cells_per_tile is None:
        cells_per_tile = 1024 if store is None else 512
    plan = plan_views(
        image=image,
        labels=labels,
        offset=(dy, dx),
        table=table,
        table_key=table_key,
        labels_key=labels_key,
        image_key=image_key,
        instance_key=instance_key,
        channel_names=channel_names,
        gain=gain,
        **view_options,
        cells_per_tile=cells_per_tile,
        label_id_key=label_id_key,
        max_rescaled_side=MAX_RESCALED_SIDE,
        key_added=key_added,
    )
    arguments = {
        "n_neighbors": n_neighbors,
        "morphology_size": morphology_size,
        "microenvironment_size": microenvironment_size,
        "microenvironment_window": microenvironment_window,
        "morphology_window": morphology_window,
        "window_px": window_px,
        "morphology_window_px": morphology_window_px,
        "morphology_quantile": morphology_quantile,
        "morphology_margin": morphology_margin,
        "chunk_size": chunk_size,
        "cells_per_tile": cells_per_tile,
        "label_id_key": label_id_key,
        "cache_mb": cache_mb,
        "missing": missing,
    }
    parts = _fingerprint_parts(
        plan.attrs,
        chunk_size=chunk_size,
        cells_per_tile=cells_per_tile,
        image=plan.image,
        labels=plan.labels,
        image_el=image_el,
        offset=plan.offset,
        codes=plan.cells.ids,
        cells=(plan.cells.cx, plan.cells.cy, plan.cells.micro_w, plan.cells.morph_w),
        extents=plan.extents,
        normalize_record=(getattr(sdata, "attrs", None) or {})
        .get(NORMALIZE_ATTR, {})
        .get(image_key),
    )
    attrs = plan.attrs
    attrs["fingerprint"] = _fingerprint(**parts)
    attrs["fingerprint_parts"] = parts
    if on_the_fly:
        from ._on_the_fly import OnTheFlyViews

        views = OnTheFlyViews(plan, arguments=arguments)
        return _finish(
            sdata,
            table,
            table_key,
            views,
            plan,
            np.zeros(0, dtype=np.int64),
            inplace=inplace,
            key_added=key_added,
            arguments=arguments,
        )
    return _run_plan(
        sdata,
        table,
        table_key,
        plan,
        store=store,
        overwrite=overwrite,
        chunk_size=chunk_size,
        max_memory_gb=max_memory_gb,
        n_jobs=n_jobs,
        inplace=inplace,
        key_added=key_added,
    )


def _is_on_the_fly(store: Any) -> bool:
    """Whether ``store`` asks for views cut on the fly (the exact string, not a Path)."""
    return isinstance(store, str) and not isinstance(store, Path) and store == ON_THE_FLY


def _run_plan(
    sdata,
    table,
    table_key,
    plan,
    *,
    store,
    overwrite,
    chunk_size,
    max_memory_gb,
    n_jobs,
    inplace,
    key_added,
):
    """Cut every cell's views tile by tile into memory or a zarr store, then record them."""
    n, attrs, order, ranges = plan.n, plan.attrs, plan.order, plan.ranges
    morphology_size = plan.spec.morphology_size
    microenvironment_size = plan.spec.microenvironment_size
    cx, cy, micro_w = plan.cells.cx, plan.cells.cy, plan.cells.micro_w
    rows_ids = plan.rows_ids

    # --- store ---------------------------------------------------------------------------
    c = plan.n_channels
    todo = list(range(len(ranges)))
    lock = None
    if store is None:
        nbytes = n * c * (morphology_size**2 + microenvironment_size**2)
        if nbytes > max_memory_gb * 1e9:
            raise ValueError(
                f"views of {n} cells need {nbytes / 1e9:.1f} GB, more than max_memory_gb="
                f"{max_memory_gb}; pass store={ON_THE_FLY!r} to cut them on the fly while "
                "training and embedding (nothing stored, memory stays flat), store='views.zarr' "
                "to write them to disk, or raise max_memory_gb."
            )
        sink: Any = _MemorySink(n, c, morphology_size, microenvironment_size)
    else:
        path = Path(store)
        lock, done = _locked_open(
            path,
            overwrite,
            attrs,
            n=n,
            c=c,
            morphology_size=morphology_size,
            microenvironment_size=microenvironment_size,
            chunk_size=chunk_size,
            rows_ids=rows_ids,
            centroid=np.c_[cx, cy],
            micro_w=micro_w,
            order=order,
        )
        todo = [
            k
            for k, (a, b) in enumerate(ranges)
            if not done[a // chunk_size : -(-b // chunk_size)].all()
        ]
        sink = _ZarrSink(str(path), c, morphology_size, microenvironment_size)

    # --- run -----------------------------------------------------------------------------
    import dask

    tasks = []
    for k in todo:
        a, b = ranges[k]
        rows = order[a:b]
        task = dask.delayed(_run_task, pure=False)(
            a,
            rows,
            plan.cells.take(rows),
            plan.groups(rows),
            plan.image,
            plan.labels,
            plan.offset,
            plan.spec,
            plan.image_key,
            sink,
        )
        tasks.append((b - a, task))
    empties = []
    # Results of an in-memory sink land in this process's arrays: never on a cluster.
    sched = scheduler(n_jobs, distributed=store is not None)
    wave = max(2, 2 * scheduler_threads(sched, n_jobs))
    try:
        with progress(
            total=n, desc="cell views", unit="cells", initial=n - sum(t[0] for t in tasks)
        ) as bar:
            for i in range(0, len(tasks), wave):
                part = tasks[i : i + wave]
                empties.extend(dask.compute(*[t[1] for t in part], **sched))
                bar.update(sum(t[0] for t in part))
        if store is not None:
            ZarrViewWriter.open_existing(store).finish()
    finally:
        if lock is not None:
            lock.release()

    # --- finish --------------------------------------------------------------------------
    empty = np.concatenate(empties) if empties else np.zeros(0, dtype=np.int64)
    if store is None:
        views = ViewStore(
            sink.morphology,
            sink.microenvironment,
            rows_ids,
            np.c_[cx, cy],
            micro_w,
            dict(attrs, n_cells=n),
        )
    else:
        views = open_zarr_views(store)
    return _finish(
        sdata, table, table_key, views, plan, empty, inplace=inplace, key_added=key_added
    )


def _finish(sdata, table, table_key, views, plan, empty, *, inplace, key_added, arguments=None):
    """Log what was cut and, when ``inplace``, record the views in the table."""
    attrs, n, border = plan.attrs, plan.n, plan.border
    w_e, w_m = attrs["window_px"], attrs["morphology_window_px"]
    s_e, s_m = attrs["microenvironment_scale"], attrs["morphology_scale"]
    if len(empty):
        logger.warning(
            "cell_views: %d cell(s) have an all-zero morphology view (too small for the "
            "morphology window of %.1f px, or dark), e.g. rows %s; consider "
            "morphology_window='cell'.",
            len(empty),
            w_m,
            _few(np.sort(empty)),
        )
    if plan.n_cut:
        logger.info(
            "cell_views: %d cell(s) extend beyond the morphology window (%.1f px) and are cut.",
            plan.n_cut,
            w_m,
        )
    logger.info(
        "cell_views: %d cells; microenvironment window %.1f px (scale %.3f), morphology window "
        "%.1f px (scale %.3f); %d cells on the image border%s",
        n,
        w_e,
        s_e,
        w_m,
        s_m,
        int(border.sum()),
        "; views are cut on the fly" if arguments is not None else "",
    )
    if not inplace:
        return views

    record = dict(attrs)
    if arguments is not None:  # on the fly: what read_views needs to cut them again
        location = views.location
        # None (the defaults) is left out: AnnData cannot write None into uns.
        extra = {"arguments": {k: v for k, v in arguments.items() if v is not None}}
    else:
        # absolute: the table keeps finding its store whatever the working directory
        location = views.location if views.in_memory else str(Path(views.path).resolve())
        extra = {"n_empty_morphology": len(empty)}
    record.update(
        store=location,
        n_cells=n,
        n_border=int(border.sum()),
        n_cut_morphology=plan.n_cut,
        missing=plan.match.record(),
        **extra,
    )
    keep = plan.keep
    if not keep.all():
        table = table[keep].copy()
        sdata.tables[table_key] = table
        logger.warning(
            "cell_views: dropped %d table row(s) without labels from table %r.",
            int((~keep).sum()),
            table_key,
        )
    table.obs[OBS_BORDER] = border
    table.uns[key_added] = _jsonable(record)
    added(OBS_BORDER, "obs")
    added(key_added, "uns")
    return None
