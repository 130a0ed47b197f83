"""Fetch and check the image, labels and table that views are cut from.

Every check here exists because the failure it prevents is silent otherwise
(shifted masks, views of the wrong cells, rows quietly dropped). Errors name
the offending element, shape, id or transformation and say how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._constants import COORDINATE_SYSTEM
from ..io._arrays import _few
from ..io._ids import _INT_KINDS, _as_id_array, _StringIds, id_codes


def _element(container: dict, key: str, kind: str):
    if key not in container:
        raise KeyError(f"no {kind} {key!r} in this SpatialData; available: {sorted(container)}.")
    return container[key]


def scale0(element: Any):
    """Return the full-resolution DataArray of a single- or multi-scale element."""
    if hasattr(element, "children") and "scale0" in getattr(element, "children", {}):
        node = element["scale0"]
        return next(iter(node.ds.data_vars.values()))
    return element


def get_image(sdata: Any, image_key: str):
    """``(data_array, dask (c, y, x), channel_names)`` of ``sdata.images[image_key]`` (scale0)."""
    import dask.array as da

    el = _element(sdata.images, image_key, "image")
    arr = scale0(el)
    if tuple(arr.dims) != ("c", "y", "x"):
        raise ValueError(
            f"image {image_key!r} has dims {tuple(arr.dims)}; expected ('c', 'y', 'x') "
            "(3-D images: pass one z-plane or a projection as a 2-D image)."
        )
    data = arr.data if isinstance(arr.data, da.Array) else da.from_array(np.asarray(arr.data))
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
        raise ValueError(f"image {image_key!r} has non-numeric dtype {data.dtype}.")
    if np.issubdtype(data.dtype, np.complexfloating):
        raise ValueError(f"image {image_key!r} is complex ({data.dtype}); pass magnitudes.")
    names = [str(c) for c in arr.coords["c"].values] if "c" in arr.coords else None
    if names is None:
        names = [f"ch{i}" for i in range(data.shape[0])]
    return el, data, names


def get_labels(sdata: Any, labels_key: str):
    """``(element, dask (y, x) integer labels)`` with clear errors for 3-D or non-integer labels."""
    import dask.array as da

    el = _element(sdata.labels, labels_key, "labels")
    arr = scale0(el)
    if arr.ndim != 2:
        raise ValueError(
            f"labels {labels_key!r} are {arr.ndim}-D with dims {tuple(arr.dims)}; cell views "
            "need 2-D (y, x) labels. For a z-stack, pass one plane or a max projection."
        )
    data = arr.data if isinstance(arr.data, da.Array) else da.from_array(np.asarray(arr.data))
    if data.dtype == bool:
        data = data.astype(np.uint8)
    elif np.issubdtype(data.dtype, np.floating):
        # Some tools store labels as floats (GiottoData's CosMx crop: float32). Whole values
        # are ids; the cast checks every block as it is read and names the first bad pixel.
        data = da.map_blocks(
            _float_labels_to_int,
            data,
            labels_key=labels_key,
            dtype=np.int64,
            meta=np.empty((0, 0), dtype=np.int64),
        )
    elif not np.issubdtype(data.dtype, np.integer):
        raise ValueError(
            f"labels {labels_key!r} have dtype {data.dtype}; a label image holds integer "
            "cell ids (0 = background). Cast it, e.g. "
            "Labels2DModel.parse(labels.astype('uint32')), after checking the values are whole."
        )
    return el, data


def _float_labels_to_int(block: np.ndarray, labels_key: str, block_info=None) -> np.ndarray:
    bad = ~np.isfinite(block) | (block != np.round(block)) | (block < 0) | (block >= 2.0**63)
    if bad.any():
        y, x = np.argwhere(bad)[0]
        if block_info is not None:
            loc = block_info[0]["array-location"]
            y, x = y + loc[0][0], x + loc[1][0]
        raise ValueError(
            f"labels {labels_key!r} (dtype {block.dtype}) hold a value that is not a "
            f"non-negative whole number, e.g. {block[bad][0].item()!r} at pixel (y={y}, x={x}); a label "
            "image holds one whole id per cell (0 = background). Fix the segmentation (e.g. "
            "round it if the values are ids stored with noise) and retry."
        )
    return block.astype(np.int64)


def _affine(el: Any, cs: str) -> np.ndarray:
    from spatialdata.transformations import get_transformation

    t = get_transformation(el, to_coordinate_system=cs)
    return np.asarray(t.to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y")))


def labels_offset(
    image_el: Any, labels_el: Any, image_shape: tuple[int, int], labels_shape: tuple[int, int]
) -> tuple[int, int]:
    """Integer ``(dy, dx)`` with image pixel = labels pixel + offset, or a clear error.

    The two elements must share a coordinate system in which the labels map to
    the image by the identity or an integer translation, and the labels must
    lie inside the image. Anything else (scales, rotations, sub-pixel shifts)
    needs resampling first.
    """
    from spatialdata.transformations import get_transformation

    cs_img = set(get_transformation(image_el, get_all=True))
    cs_lab = set(get_transformation(labels_el, get_all=True))
    shared = sorted(cs_img & cs_lab)
    if not shared:
        raise ValueError(
            f"image and labels share no coordinate system (image: {sorted(cs_img)}, labels: "
            f"{sorted(cs_lab)}); register them to a common one first."
        )
    cs = COORDINATE_SYSTEM if COORDINATE_SYSTEM in shared else shared[0]
    rel = np.linalg.solve(_affine(image_el, cs), _affine(labels_el, cs))
    lin, shift = rel[:2, :2], rel[:2, 2]
    fix = (
        "Resample the labels onto the image's pixel grid, e.g. spatialdata.rasterize("
        "labels, axes=('y', 'x'), min_coordinate=..., max_coordinate=..., "
        "target_coordinate_system=..., target_width=image_width), then retry."
    )
    if not np.allclose(lin, np.eye(2), atol=1e-6) or not np.allclose(
        shift, np.round(shift), atol=1e-6
    ):
        raise ValueError(
            f"labels map to the image pixel grid by a transformation that is not the identity "
            f"or an integer translation (in coordinate system {cs!r}: linear part "
            f"{lin.round(4).tolist()}, translation {shift.round(4).tolist()} px). {fix}"
        )
    dx, dy = (int(np.rint(v)) for v in shift)
    if (dy, dx) == (0, 0) and tuple(labels_shape) != tuple(image_shape):
        raise ValueError(
            f"image (y, x) shape {tuple(image_shape)} differs from labels shape "
            f"{tuple(labels_shape)} under an identity transformation, so they do not cover the "
            f"same pixels. {fix}"
        )
    if (
        dy < 0
        or dx < 0
        or dy + labels_shape[0] > image_shape[0]
        or dx + labels_shape[1] > (image_shape[1])
    ):
        raise ValueError(
            f"labels of shape {tuple(labels_shape)} translated by (dy={dy}, dx={dx}) px reach "
            f"outside the image of shape {tuple(image_shape)}. {fix}"
        )
    return dy, dx


def resolve_table(sdata: Any, labels_key: str, table_key: str | None):
    """``(table_key, table, instance_key)`` of the table annotating ``labels_key``.

    The table is chosen by :func:`madspatial._elements.pick_table` (the one the CLI uses).
    """
    from .._elements import annotated_regions, pick_table

    tables = getattr(sdata, "tables", {})

    def regions(t) -> list[str]:
        return annotated_regions(t)

    table_key = pick_table(sdata, labels_key, table_key)
    table = _element(tables, table_key, "table")
    attrs = table.uns.get("spatialdata_attrs", {})
    if labels_key not in regions(table):
        raise ValueError(
            f"table {table_key!r} annotates {regions(table)}, not labels {labels_key!r}."
        )
    instance_key = attrs.get("instance_key")
    region_key = attrs.get("region_key")
    if instance_key is None or instance_key not in table.obs:
        raise ValueError(
            f"table {table_key!r} has no instance key column (spatialdata_attrs "
            f"instance_key={instance_key!r}); it must hold each row's label id."
        )
    if region_key in table.obs:
        other = table.obs[region_key].astype(str) != labels_key
        if other.any():
            raise ValueError(
                f"table {table_key!r} also annotates other regions "
                f"({sorted(set(table.obs[region_key].astype(str)) - {labels_key})}, "
                f"{int(other.sum())} rows); views are per labels element. Subset the table to "
                f"region {labels_key!r} (table[table.obs[{region_key!r}] == {labels_key!r}]) "
                "and retry."
            )
    return table_key, table, instance_key


@dataclass
class IdMatch:
    """How the table's rows and the label ids correspond."""

    rows_without_labels: np.ndarray  # table ids with 0 px in the labels
    labels_without_rows: np.ndarray  # label ids (> 0 px) with no table row

    def describe(self, labels_key: str, table_key: str) -> str:
        parts = []
        if len(self.rows_without_labels):
            parts.append(
                f"{len(self.rows_without_labels)} table row(s) of {table_key!r} have no pixels "
                f"in labels {labels_key!r} (empty or missing cells, e.g. ids "
                f"{_few(self.rows_without_labels)})"
            )
        if len(self.labels_without_rows):
            parts.append(
                f"{len(self.labels_without_rows)} label id(s) of {labels_key!r} have no row in "
                f"table {table_key!r} (e.g. ids {_few(self.labels_without_rows)})"
            )
        return "; ".join(parts)

    @property
    def ok(self) -> bool:
        return not len(self.rows_without_labels) and not len(self.labels_without_rows)

    def record(self) -> dict[str, Any]:
        return {
            "rows_without_labels": len(self.rows_without_labels),
            "rows_without_labels_ids": self.rows_without_labels[:100].tolist(),
            "labels_without_rows": len(self.labels_without_rows),
            "labels_without_rows_ids": self.labels_without_rows[:100].tolist(),
        }


def table_ids(
    table: Any,
    instance_key: str,
    table_key: str,
    labels_key: str,
    label_ids: np.ndarray,
    label_id_key: str | None = None,
) -> tuple[np.ndarray, str]:
    """Return the label id of every table row (int64, or uint64 for ids >= 2**63) and its column.

    ``label_ids`` are the int64 codes of the ids present in the labels. Text instance ids
    (Xenium's ``aaabbbcc-1``) are matched through an integer column of ``obs`` holding the
    label values: ``label_id_key``, or the only such column whose values are the label ids.
    """
    obs = table.obs
    if label_id_key is not None:
        if label_id_key not in obs:
            raise KeyError(
                f"label_id_key={label_id_key!r} is not a column of table {table_key!r}; "
                f"columns: {list(obs.columns)}."
            )
        col = label_id_key
    else:
        col = instance_key
    what = f"table {table_key!r} column {col!r}"
    try:
        ids = _as_id_array(obs[col], what)
    except _StringIds as err:
        if label_id_key is not None:
            raise ValueError(
                f"{err}; label_id_key must name a column of whole-number label values."
            ) from err
        ids, col = _match_label_column(obs, instance_key, table_key, labels_key, label_ids, err)
    codes = id_codes(ids)
    uniq, counts = np.unique(codes, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        shown = [
            f"{_show_id(d, ids.dtype)} (x{int(c)})" for d, c in zip(dup[:5], counts[counts > 1][:5])
        ]
        raise ValueError(
            f"table {table_key!r} column {col!r} holds {len(dup)} duplicate id(s): "
            f"{', '.join(shown)}{', ...' if len(dup) > 5 else ''}; each row must be one cell "
            f"(rows with the same id would get identical views). Drop or fix the duplicated "
            f"rows, e.g. table[~table.obs[{col!r}].duplicated()], or re-parse the table with "
            "spatialdata.models.TableModel.parse."
        )
    return ids, col


def _show_id(code: Any, dtype: np.dtype) -> str:
    return str(np.int64(code).view(np.uint64)) if dtype == np.uint64 else str(int(code))


def _match_label_column(obs, instance_key, table_key, labels_key, label_ids, err):
    """Return an integer ``obs`` column whose values are the label ids (for text instance ids)."""
    label_set = np.asarray(label_ids)
    found = []
    names = [labels_key] + [c for c in obs.columns if c not in (labels_key, instance_key)]
    for name in names:
        if name not in obs:
            continue
        try:
            cand = _as_id_array(obs[name], name)
        except ValueError:
            continue
        codes = id_codes(cand)
        if len(np.unique(codes)) == len(codes) and np.isin(codes, label_set).mean() >= 0.5:
            found.append((name, cand))
    if len(found) >= 1 and (len(found) == 1 or found[0][0] == labels_key):
        from .._logging import logger

        logger.info(
            "cell_views: table %r has text instance ids (%r); matching rows to labels %r by "
            "column %r.",
            table_key,
            instance_key,
            labels_key,
            found[0][0],
        )
        return found[0][1], found[0][0]
    ints = [c for c in obs.columns if c != instance_key and obs[c].dtype.kind in _INT_KINDS + "f"]
    more = (
        f"several columns could be it: {[f[0] for f in found]}"
        if found
        else f"numeric columns of obs: {ints}"
    )
    raise ValueError(
        f"{err}; cell views need each row's value in labels {labels_key!r}. Pass "
        f"label_id_key='<obs column holding the label value of each row>' ({more}), or add "
        "such a column (e.g. from the reader's cell id -> label mapping)."
    ) from err
