"""Views of a table over several regions (or converted inputs) in one store, in table order.

Each region is cut on its own (its image, pyramid level, transformation and windows) by the
single-region path of :func:`madspatial.pp.cell_views`, on a stand-in holding just that
region's image, its labels on the image grid and its rows; the views are then joined in
the table's row order. The per-region records sit in ``uns[key_added]["regions"]``.

With ``store=`` a zarr path the views are written into the store as they are cut, region
by region (memory stays flat, an interrupted run resumes): every region is planned first
(the plan of ``cell_views``, the one views cut on the fly use), which fixes the store's
rows, then its tiles run into the store. The store has the single-region layout
(``storage_rows`` maps storage rows to table rows): each region's whole chunks lie in one
run, and the rows left over by each region (fewer than a chunk) are gathered at the end of
the store, so that every write covers whole chunks and no two tasks share one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._constants import OBS_BORDER, OBS_LABEL_ID
from .._logging import added, logger, progress
from ..io._views import (
    ON_THE_FLY,
    ViewStore,
    ZarrViewWriter,
    _jsonable,
    open_zarr_views,
    read_views,
)
from ._plan import DERIVED_VIEW_KEYS
from ._regions import Inputs, RegionInput, _Elements, _levels

#: Private coordinate system of the stand-ins (image pixels).
_PIXELS = "mad_image_pixels"
#: Private obs column of the stand-in tables: the row in the user's table.
_ROW = "_mad_table_row"
#: Per-region entries of a region's record kept in ``uns[key_added]["regions"]``.
_PER_REGION = (
    "image_key",
    *DERIVED_VIEW_KEYS,
    "image_shape",
    "labels_offset_yx",
    "n_cells",
    "n_border",
    "n_empty_morphology",
    "n_cut_morphology",
    "missing",
    "fingerprint",
    "label_id_key",
)


def _stand_in(r: RegionInput, inputs: Inputs, label_id_key: str | None):
    import anndata as ad
    from spatialdata.models import Image2DModel, Labels2DModel
    from spatialdata.transformations import Identity, Translation

    from ._cell_views import NORMALIZE_ATTR

    img = Image2DModel.parse(
        r.image,
        dims=("c", "y", "x"),
        c_coords=r.channel_names,
        transformations={_PIXELS: Identity()},
    )
    record = getattr(_levels(r.image_el)[0], "attrs", {}).get(NORMALIZE_ATTR)
    if record is not None:
        img.attrs[NORMALIZE_ATTR] = record
    dy, dx = r.offset
    lab = Labels2DModel.parse(
        r.labels,
        dims=("y", "x"),
        transformations={_PIXELS: Translation([dx, dy], axes=("x", "y"))},
    )
    obs = inputs.table.obs.iloc[r.rows].copy()
    obs[_ROW] = r.rows
    if r.label_codes is not None:
        obs[OBS_LABEL_ID] = r.label_codes
        label_id_key = OBS_LABEL_ID
    sub = ad.AnnData(obs=obs)
    sub.uns["spatialdata_attrs"] = {
        "region": r.name,
        "region_key": inputs.region_key,
        "instance_key": inputs.instance_key,
    }
    tables = {inputs.table_key: sub}  # the user's table key: messages name it
    data = _Elements(images={r.image_key: img}, labels={r.name: lab}, tables=tables)
    return data, label_id_key


def region_views(
    sdata: Any,
    inputs: Inputs,
    *,
    store: str | Path | None,
    overwrite: bool,
    inplace: bool,
    key_added: str,
    label_id_key: str | None,
    options: dict[str, Any],
) -> ViewStore | None:
    """Cut every region of ``inputs`` and join the views in table order (see module doc)."""
    from ._cell_views import _is_on_the_fly

    if _is_on_the_fly(store):
        names = [r.name for r in inputs.regions]
        raise ValueError(
            f"store={ON_THE_FLY!r} cuts the views of one label image as it is; the table "
            f"{inputs.table_key!r} needs {len(names)} region(s) {names} (labels resampled "
            f"or shapes rasterized: {[r.source for r in inputs.regions]}). Pass "
            "store='views.zarr' (written as they are cut, memory stays flat) or store=None."
        )
    if store is not None:
        return _stream(
            sdata,
            inputs,
            Path(store),
            overwrite=overwrite,
            inplace=inplace,
            key_added=key_added,
            label_id_key=label_id_key,
            options=options,
        )
    parts = []
    for r in inputs.regions:
        data, lid = _logged_stand_in(r, inputs, label_id_key)
        _cut_one_region(data, r, inputs, lid, key_added, options, store=None, inplace=True)
        sub = data.tables[inputs.table_key]
        rec = dict(sub.uns[key_added])
        parts.append((r, sub, rec, read_views(rec["store"])))
    _check_channels({p[0].name: p[3].channel_names for p in parts})
    kept = np.concatenate([p[1].obs[_ROW].to_numpy() for p in parts])
    table_rows = np.sort(kept)
    storage_rows = np.searchsorted(table_rows, kept)  # new-table row of each stored row
    n = len(kept)
    inv = np.empty(n, dtype=np.int64)
    inv[storage_rows] = np.arange(n)
    if len(parts) == 1:  # one region: its arrays as they are (no copy)
        morph = np.asarray(parts[0][3].morphology)
        micro = np.asarray(parts[0][3].microenvironment)
    else:
        morph = np.concatenate([np.asarray(p[3].morphology) for p in parts])
        micro = np.concatenate([np.asarray(p[3].microenvironment) for p in parts])
    ids = np.concatenate([p[3].instance_id for p in parts])[inv]
    centroid = np.concatenate([p[3].centroid for p in parts])[inv]
    window = np.concatenate([p[3].window_px for p in parts])[inv]
    border = np.concatenate([p[1].obs[OBS_BORDER].to_numpy() for p in parts])[inv]
    attrs = _merged_attrs(parts, inputs, window)
    views = ViewStore(morph, micro, ids, centroid, window, attrs, storage_rows=storage_rows)
    del morph, micro
    if not inplace:
        return views
    _write_table(sdata, inputs, parts, table_rows, views, border, key_added)
    return None


def _merged_attrs(parts, inputs: Inputs, window: np.ndarray) -> dict[str, Any]:
    first = parts[0][3].attrs
    attrs = {k: v for k, v in first.items() if k not in ("fingerprint_parts", "store")}
    regions = {}
    h = hashlib.sha1()
    by_part: dict[str, Any] = {}
    for r, _sub, rec, _v in parts:
        entry = {k: rec.get(k) for k in _PER_REGION}
        entry.update(level=r.level, pixel_size=r.pixel_size, labels_source=r.source)
        regions[r.name] = entry
        h.update(f"{r.name}:{rec.get('fingerprint')}:{r.level}:{r.source}".encode())
        # per part (parameters, cells, pixels): a stale store's message says what changed
        for key, digest in (rec.get("fingerprint_parts") or {}).items():
            by_part.setdefault(key, hashlib.sha1()).update(f"{r.name}:{digest}".encode())
    several = len(parts) > 1
    if by_part:
        attrs["fingerprint_parts"] = {k: v.hexdigest() for k, v in by_part.items()}
    attrs.update(
        image_key=[p[0].image_key for p in parts] if several else parts[0][0].image_key,
        labels_key=[p[0].name for p in parts] if several else parts[0][0].name,
        table_key=inputs.table_key,
        window_px=float(np.median(window)),
        regions=regions,
        fingerprint=h.hexdigest(),
        n_cells=len(window),
    )
    return _jsonable(attrs)


class _OffsetZarrSink:
    """The zarr sink of ``cell_views`` writing a region's storage rows ``offset`` onwards."""

    def __init__(self, path: str, c: int, sm: int, se: int, offset: int):
        from ._cell_views import _ZarrSink

        self.sink, self.offset = _ZarrSink(path, c, sm, se), int(offset)

    def begin(self, start: int, rows: np.ndarray):
        return self.sink.begin(start, rows)

    def commit(self, start: int, rows: np.ndarray, morph, micro) -> None:
        self.sink.commit(start + self.offset, rows, morph, micro)


class _ArraySink:
    """Views of one task kept in this process (a region's rows left over from whole chunks)."""

    def __init__(self, c: int, sm: int, se: int):
        self.shape = (c, sm, se)

    def begin(self, start: int, rows: np.ndarray):
        c, sm, se = self.shape
        n = len(rows)
        self.morph = np.zeros((n, c, sm, sm), np.uint8)
        self.micro = np.zeros((n, c, se, se), np.uint8)
        return self.morph, self.micro, np.arange(n)

    def commit(self, start: int, rows: np.ndarray, morph, micro) -> None:
        pass


def _plan(data, r: RegionInput, inputs: Inputs, lid, key_added: str, options: dict):
    """Plan one stand-in region as ``cell_views`` does (nothing is cut yet)."""
    import logging

    class _Quiet(logging.Filter):  # its summary says "cut on the fly": they are not
        def filter(self, record):
            return not str(record.msg).startswith("cell_views: %d cells; microenvironment")

    quiet = _Quiet()
    logger.addFilter(quiet)
    try:
        views = _cut_one_region(
            data, r, inputs, lid, key_added, options, store=ON_THE_FLY, inplace=False
        )
    finally:
        logger.removeFilter(quiet)
    return views.plan


@dataclass
class _Layout:
    """Where every region's rows go: table rows, storage rows and per-cell arrays."""

    table_rows: np.ndarray  # the user's table rows with views, sorted (the new table)
    new_row: list[np.ndarray]  # per region: new-table row of each of its kept rows
    start: np.ndarray  # per region: first storage row of its whole chunks
    full: list[int]  # per region: rows in whole chunks
    tail: np.ndarray  # per region: first storage row of its leftover rows
    storage_rows: np.ndarray  # storage row -> new-table row
    ids: np.ndarray
    centroid: np.ndarray
    window: np.ndarray
    border: np.ndarray

    @property
    def n(self) -> int:
        return len(self.table_rows)


def _layout(planned, cs: int) -> _Layout:
    """Whole chunks region by region, then every region's leftover rows (see module doc)."""
    kept = np.concatenate([sub.obs[_ROW].to_numpy() for _r, sub, _p in planned])
    table_rows = np.sort(kept)
    new_row = [np.searchsorted(table_rows, sub.obs[_ROW].to_numpy()) for _r, sub, _p in planned]
    n = len(kept)
    full = [p.n // cs * cs for _r, _s, p in planned]
    start = np.r_[0, np.cumsum(full)][:-1].astype(np.int64)
    left = [p.n - f for (_r, _s, p), f in zip(planned, full)]
    tail = int(np.sum(full)) + np.r_[0, np.cumsum(left)][:-1].astype(np.int64)
    out = _Layout(
        table_rows,
        new_row,
        start,
        full,
        tail,
        np.empty(n, dtype=np.int64),
        np.empty(n, dtype=planned[0][2].rows_ids.dtype),
        np.empty((n, 2)),
        np.empty(n),
        np.empty(n, dtype=bool),
    )
    for k, (_r, _sub, plan) in enumerate(planned):
        rows = new_row[k]
        where = np.r_[start[k] + np.arange(full[k]), tail[k] + np.arange(left[k])]
        out.storage_rows[where] = rows[plan.order]
        out.ids[rows], out.window[rows] = plan.rows_ids, plan.cells.micro_w
        out.centroid[rows] = np.c_[plan.cells.cx, plan.cells.cy]
        out.border[rows] = plan.border
    return out


def _cut_region(k: int, plan, lay: _Layout, run: dict[str, Any]) -> int:
    """Cut region ``k``'s views into the store; return how many morphology views are empty."""
    import dask

    from ._cell_views import _run_task

    cs, done, tail, path = run["cs"], run["done"], run["tail"], run["path"]
    sched, wave = run["sched"], run["wave"]
    c, sm, se = plan.n_channels, plan.spec.morphology_size, plan.spec.microenvironment_size
    sink = _OffsetZarrSink(str(path), c, sm, se, lay.start[k])
    full, start = lay.full[k], int(lay.start[k])

    def task(a, rows, sink):
        args = (plan.cells.take(rows), plan.groups(rows), plan.image, plan.labels, plan.offset)
        return a, rows, *args, plan.spec, plan.image_key, sink

    tasks = []
    for a, b in plan.ranges:
        b = min(b, full)
        if a < b and not done[(start + a) // cs : -(-(start + b) // cs)].all():
            tasks.append(dask.delayed(_run_task, pure=False)(*task(a, plan.order[a:b], sink)))
    empties = []
    for i in range(0, len(tasks), wave):
        empties.extend(dask.compute(*tasks[i : i + wave], **sched))
    rows = plan.order[full:]
    if len(rows) and tail.needed(int(lay.tail[k]), len(rows)):
        buf = _ArraySink(c, sm, se)  # fewer than a chunk: cut here, written with the others
        empties.append(_run_task(*task(full, rows, buf)))
        tail.add(int(lay.tail[k]), buf.morph, buf.micro)
    return int(sum(len(e) for e in empties))


def _cut_one_region(data, r, inputs: Inputs, lid, key_added, options, *, store, inplace):
    """:func:`~madspatial.pp.cell_views` of one region's stand-in SpatialData."""
    from ._cell_views import cell_views

    return cell_views(
        data,
        image_key=r.image_key,
        labels_key=r.name,
        table_key=inputs.table_key,
        store=store,
        inplace=inplace,
        key_added=key_added,
        label_id_key=lid,
        **options,
    )


def _logged_stand_in(r, inputs: Inputs, label_id_key):
    """:func:`_stand_in` of one region, with the log line saying where its views come from."""
    logger.info(
        "cell_views: region %r (%s, %d rows) from image %r level %d (pixel %.4g)",
        r.name,
        r.source,
        len(r.rows),
        r.image_key,
        r.level,
        r.pixel_size,
    )
    return _stand_in(r, inputs, label_id_key)


def _stream(
    sdata, inputs: Inputs, path: Path, *, overwrite, inplace, key_added, label_id_key, options
) -> ViewStore | None:
    """Plan every region, create (or resume) the store, cut each region's tiles into it."""
    from ._cell_views import _locked_open
    from ._dask import scheduler, scheduler_threads

    cs, n_jobs = int(options["chunk_size"]), options["n_jobs"]
    planned = []
    for r in inputs.regions:
        data, lid = _logged_stand_in(r, inputs, label_id_key)
        plan = _plan(data, r, inputs, lid, key_added, options)
        planned.append((r, data.tables[inputs.table_key][plan.keep], plan))
    _check_channels({r.name: p.attrs["channel_names"] for r, _s, p in planned})
    lay = _layout(planned, cs)
    first = _Attrs(dict(planned[0][2].attrs))
    parts = [(r, sub, _region_record(plan), first) for r, sub, plan in planned]
    attrs = _merged_attrs(parts, inputs, lay.window)
    plans = [p for _r, _s, p in planned]
    c, spec = plans[0].n_channels, plans[0].spec
    shape = (c, spec.morphology_size, spec.microenvironment_size)
    del planned, plan
    lock, done = _locked_open(
        path,
        overwrite,
        attrs,
        n=lay.n,
        c=c,
        morphology_size=shape[1],
        microenvironment_size=shape[2],
        chunk_size=cs,
        rows_ids=lay.ids,
        centroid=lay.centroid,
        micro_w=lay.window,
        order=lay.storage_rows,
    )
    try:
        sched = scheduler(n_jobs, distributed=True)
        wave = max(2, 2 * scheduler_threads(sched, n_jobs))
        writer = ZarrViewWriter.open_existing(path)
        tail = _TailBuffer(writer, done, int(np.sum(lay.full)), lay.n, cs, shape)
        run = dict(cs=cs, done=done, tail=tail, path=path, sched=sched, wave=wave)
        with progress(total=lay.n, desc="cell views", unit="cells") as bar:
            for k, (r, _sub, rec, _a) in enumerate(parts):
                plan, plans[k] = plans[k], None  # once cut, its readers' caches can go
                rec["n_empty_morphology"] = _cut_region(k, plan, lay, run)
                bar.update(plan.n)
                logger.info(
                    "cell_views: region %r: %d cells; microenvironment window %.1f px, "
                    "morphology window %.1f px; %d cells on the image border",
                    r.name,
                    plan.n,
                    plan.attrs["window_px"],
                    plan.attrs["morphology_window_px"],
                    int(plan.border.sum()),
                )
        tail.close()
        writer.finish()
    finally:
        lock.release()
    views = open_zarr_views(path)
    if not inplace:
        return views
    _write_table(sdata, inputs, parts, lay.table_rows, views, lay.border, key_added)
    return None


class _Attrs:
    """Stands in for a region's views where only their ``attrs`` are read."""

    def __init__(self, attrs: dict):
        self.attrs = attrs


def _region_record(plan) -> dict[str, Any]:
    """Record a region as the single-region path does (before its views are cut)."""
    return dict(
        plan.attrs,
        n_cells=plan.n,
        n_border=int(plan.border.sum()),
        n_cut_morphology=plan.n_cut,
        missing=plan.match.record(),
        n_empty_morphology=0,
    )


def _check_channels(names: dict[str, list[str]]) -> None:
    if len({len(c) for c in names.values()}) > 1:
        raise ValueError(
            f"the regions' images have different channels ({names}); views of one store "
            "share their channels: pass image_key= with images of the same channels."
        )
    if len({tuple(c) for c in names.values()}) > 1:
        logger.warning(
            "cell_views: the regions' images name their channels differently (%s); using %s.",
            sorted({tuple(c) for c in names.values()}),
            next(iter(names.values())),
        )


class _TailBuffer:
    """The rows the regions leave over from whole chunks, written chunk by chunk at the end.

    Regions add their leftover rows in storage order; a chunk is written once it is
    whole (the last one at the end of the store), so memory holds at most one chunk
    beside the region being added. Chunks already done (a resumed run) are not written.
    """

    def __init__(self, writer, done: np.ndarray, begin: int, end: int, cs: int, shape):
        c, sm, se = shape
        self.writer, self.done, self.cs, self.end = writer, done, cs, end
        self.pos = begin  # storage row of the buffer's first row (chunk-aligned)
        self.morph = np.zeros((cs, c, sm, sm), np.uint8)
        self.micro = np.zeros((cs, c, se, se), np.uint8)
        self.fill = 0

    def needed(self, at: int, n: int) -> bool:
        """Whether rows ``at : at + n`` touch a chunk not written yet."""
        return not self.done[at // self.cs : -(-(at + n) // self.cs)].all()

    def add(self, at: int, morph: np.ndarray, micro: np.ndarray) -> None:
        """Add the views of storage rows ``at : at + len(morph)`` (after those added before)."""
        if at != self.pos + self.fill:  # rows skipped (their chunks are done): start there
            self.pos, self.fill = at // self.cs * self.cs, at % self.cs
        i = 0
        while i < len(morph):
            k = min(self.cs - self.fill, len(morph) - i)
            self.morph[self.fill : self.fill + k] = morph[i : i + k]
            self.micro[self.fill : self.fill + k] = micro[i : i + k]
            self.fill += k
            i += k
            if self.fill == self.cs or self.pos + self.fill == self.end:
                self._flush()

    def _flush(self) -> None:
        if self.fill and not self.done[self.pos // self.cs]:
            self.writer.write(self.pos, self.morph[: self.fill], self.micro[: self.fill])
        self.pos += self.fill
        self.fill = 0

    def close(self) -> None:
        """Write what is left (the store's last, partial chunk)."""
        if self.fill:
            self._flush()


def _write_table(sdata, inputs: Inputs, parts, table_rows, views, border, key_added) -> None:
    table = inputs.table
    names = [p[0].name for p in parts]
    if len(table_rows) < table.n_obs:
        dropped = table.n_obs - len(table_rows)
        table = table[table_rows].copy()
        attrs = dict(table.uns.get("spatialdata_attrs", {}))
        if inputs.region_key in table.obs:
            attrs["region"] = names if len(names) > 1 else names[0]
        table.uns["spatialdata_attrs"] = attrs
        sdata.tables[inputs.table_key] = table
        logger.warning(
            "cell_views: table %r now holds the %d row(s) of regions %s with views (%d row(s) "
            "of other regions or without labels dropped).",
            inputs.table_key,
            len(table_rows),
            names,
            dropped,
        )
    codes = [p[1].obs[OBS_LABEL_ID].to_numpy() for p in parts if OBS_LABEL_ID in p[1].obs]
    if codes:  # shapes with text ids: the label value each row got
        vals = np.zeros(len(table_rows), dtype=np.int64)
        for _r, sub, _rec, _v in parts:
            if OBS_LABEL_ID in sub.obs:
                pos = np.searchsorted(table_rows, sub.obs[_ROW].to_numpy())
                vals[pos] = sub.obs[OBS_LABEL_ID].to_numpy()
        table.obs[OBS_LABEL_ID] = vals
        added(OBS_LABEL_ID, "obs")
    record = dict(views.attrs)
    record["label_id_key"] = parts[0][2].get("label_id_key")
    record.update(
        store=views.location if views.in_memory else str(Path(views.path).resolve()),
        n_cells=len(views),
        n_border=int(border.sum()),
        n_empty_morphology=int(sum(p[2].get("n_empty_morphology", 0) for p in parts)),
        n_cut_morphology=int(sum(p[2].get("n_cut_morphology", 0) for p in parts)),
        missing={p[0].name: p[2].get("missing") for p in parts},
    )
    table.obs[OBS_BORDER] = border
    table.uns[key_added] = _jsonable(record)
    added(OBS_BORDER, "obs")
    added(key_added, "uns")
