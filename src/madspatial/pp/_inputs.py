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


def _element(container: dict, key: str, kind: str):
    if key not in container:
        raise KeyError(f"no {kind} {key!r} in this SpatialData; available: {sorted(container)}.")
    return container[key]


def scale0(element: Any):
    """The full-resolution DataArray of a single- or multi-scale element."""
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
    if not np.issubdtype(data.dtype, np.integer):
        raise ValueError(
            f"labels {labels_key!r} have dtype {data.dtype}; a label image holds integer "
            "cell ids (0 = background). Cast it, e.g. "
            "Labels2DModel.parse(labels.astype('uint32')), after checking the values are whole."
        )
    return el, data


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
    """``(table_key, table, instance_key)`` of the table annotating ``labels_key``."""
    tables = getattr(sdata, "tables", {})

    def regions(t) -> list[str]:
        attrs = t.uns.get("spatialdata_attrs", {})
        reg = attrs.get("region", [])
        return [reg] if isinstance(reg, str) else [str(r) for r in np.atleast_1d(reg)]

    if table_key is None:
        hits = [k for k, t in tables.items() if labels_key in regions(t)]
        if not hits:
            raise ValueError(
                f"no table annotates labels {labels_key!r} (tables: "
                f"{ {k: regions(t) for k, t in tables.items()} }). Link one with "
                "spatialdata.models.TableModel.parse(adata, region=labels_key, "
                "region_key='region', instance_key='instance_id')."
            )
        if len(hits) > 1:
            raise ValueError(f"several tables annotate {labels_key!r}: {hits}; pass table_key=.")
        table_key = hits[0]
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
    ids = table.obs[instance_key].to_numpy()
    if not np.issubdtype(ids.dtype, np.integer):
        as_float = np.asarray(ids, dtype=np.float64)
        if not np.all(np.isfinite(as_float)) or np.any(as_float != np.round(as_float)):
            raise ValueError(f"table column {instance_key!r} must hold integer label ids.")
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
