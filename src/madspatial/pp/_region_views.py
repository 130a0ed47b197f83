"""Views of a table over several regions (or converted inputs) in one store, in table order.

Each region is cut on its own (its image, pyramid level, transformation and windows) by the
single-region path of :func:`madspatial.pp.cell_views`, on a stand-in holding just that
region's image, its labels on the image grid and its rows; the views are then joined in
the table's row order. The per-region records sit in ``uns[key_added]["regions"]``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from .._constants import OBS_BORDER, OBS_LABEL_ID
from .._logging import added, logger
from ..io._views import ViewStore, ZarrViewWriter, _jsonable, open_zarr_views, read_views
from ._regions import Inputs, RegionInput, _Elements, _levels

#: Private coordinate system of the stand-ins (image pixels).
_PIXELS = "mad_image_pixels"
#: Private obs column of the stand-in tables: the row in the user's table.
_ROW = "_mad_table_row"
#: Per-region entries of a region's record kept in ``uns[key_added]["regions"]``.
_PER_REGION = (
    "image_key", "window_px", "morphology_window_px", "microenvironment_scale",
    "morphology_scale", "microenvironment_scale_pq", "morphology_scale_pq", "image_shape",
    "labels_offset_yx", "n_cells", "n_border", "n_empty_morphology", "n_cut_morphology",
    "missing", "fingerprint", "label_id_key",
)  # fmt: skip


def _stand_in(r: RegionInput, inputs: Inputs, label_id_key: str | None):
    import anndata as ad
    from spatialdata.models import Image2DModel, Labels2DModel
    from spatialdata.transformations import Identity, Translation

    from ._cell_views import NORMALIZE_ATTR

    img = Image2DModel.parse(
        r.image, dims=("c", "y", "x"), c_coords=r.channel_names,
        transformations={_PIXELS: Identity()},
    )  # fmt: skip
    record = getattr(_levels(r.image_el)[0], "attrs", {}).get(NORMALIZE_ATTR)
    if record is not None:
        img.attrs[NORMALIZE_ATTR] = record
    dy, dx = r.offset
    lab = Labels2DModel.parse(
        r.labels, dims=("y", "x"),
        transformations={_PIXELS: Translation([dx, dy], axes=("x", "y"))},
    )  # fmt: skip
    obs = inputs.table.obs.iloc[r.rows].copy()
    obs[_ROW] = r.rows
    if r.label_codes is not None:
        obs[OBS_LABEL_ID] = r.label_codes
        label_id_key = OBS_LABEL_ID
    sub = ad.AnnData(obs=obs)
    sub.uns["spatialdata_attrs"] = {
        "region": r.name, "region_key": inputs.region_key, "instance_key": inputs.instance_key,
    }  # fmt: skip
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
    from ._cell_views import cell_views

    parts = []
    for r in inputs.regions:
        data, lid = _stand_in(r, inputs, label_id_key)
        logger.info(
            "cell_views: region %r (%s, %d rows) from image %r level %d (pixel %.4g)",
            r.name, r.source, len(r.rows), r.image_key, r.level, r.pixel_size,
        )  # fmt: skip
        cell_views(
            data, image_key=r.image_key, labels_key=r.name, table_key=inputs.table_key, store=None,
            inplace=True, key_added=key_added, label_id_key=lid, **options,
        )  # fmt: skip
        sub = data.tables[inputs.table_key]
        rec = dict(sub.uns[key_added])
        parts.append((r, sub, rec, read_views(rec["store"])))
    channels = {tuple(p[3].channel_names) for p in parts}
    if len({len(c) for c in channels}) > 1:
        raise ValueError(
            "the regions' images have different channels "
            f"({ {p[0].name: p[3].channel_names for p in parts} }); views of one store share "
            "their channels: pass image_key= with images of the same channels."
        )
    if len(channels) > 1:
        logger.warning(
            "cell_views: the regions' images name their channels differently (%s); using %s.",
            sorted(channels), parts[0][3].channel_names,
        )  # fmt: skip
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
    if store is not None:
        views = _save(views, Path(store), overwrite=overwrite, chunk_size=options["chunk_size"])
    if not inplace:
        return views
    _write_table(sdata, inputs, parts, table_rows, views, border, key_added)
    return None


def _merged_attrs(parts, inputs: Inputs, window: np.ndarray) -> dict[str, Any]:
    first = parts[0][3].attrs
    attrs = {k: v for k, v in first.items() if k not in ("fingerprint_parts",)}
    regions = {}
    h = hashlib.sha1()
    for r, _sub, rec, _v in parts:
        entry = {k: rec.get(k) for k in _PER_REGION}
        entry.update(level=r.level, pixel_size=r.pixel_size, labels_source=r.source)
        regions[r.name] = entry
        h.update(f"{r.name}:{rec.get('fingerprint')}:{r.level}:{r.source}".encode())
    several = len(parts) > 1
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


def _save(views: ViewStore, path: Path, *, overwrite: bool, chunk_size: int) -> ViewStore:
    if path.exists() and not overwrite:
        try:
            old = ZarrViewWriter.open_existing(path).attrs
        except Exception as err:
            raise FileExistsError(
                f"{path} exists and is not a view store; pass another store= path."
            ) from err
        if old.get("fingerprint") == views.attrs["fingerprint"] and old.get("complete"):
            logger.warning(
                "cell_views: reusing the complete view store at %s (its fingerprint of the "
                "regions matches); pass overwrite=True to rebuild it.",
                path,
            )
            return open_zarr_views(path)
        raise FileExistsError(
            f"the view store at {path} was made from different regions, parameters or pixels, "
            "so its views may be stale and it is not reused. Pass overwrite=True to rebuild "
            "it, or another store= path."
        )
    return views.save(path, chunk_size=chunk_size, overwrite=overwrite)


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
            inputs.table_key, len(table_rows), names, dropped,
        )  # fmt: skip
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
