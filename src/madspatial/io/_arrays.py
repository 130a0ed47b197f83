"""Build a valid SpatialData from plain arrays (an image, a segmentation, counts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._constants import (
    CELL_LABELS_KEY,
    COORDINATE_SYSTEM,
    IMAGE_KEY,
    INSTANCE_KEY,
    LAYER_COUNTS,
    OBSM_SPATIAL,
    REGION_KEY,
    TABLE_KEY,
)

if TYPE_CHECKING:
    from spatialdata import SpatialData

MICRONS: str = "microns"


def _few(ids: Sequence[Any], n: int = 5) -> str:
    ids = list(ids)
    head = ", ".join(str(i) for i in ids[:n])
    return head + (", ..." if len(ids) > n else "")


def label_centroids(labels: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (x, y in pixels) and areas of the given label ids, in one pass.

    Uses bincount over the flattened label image, so it costs O(pixels) however
    many cells there are.
    """
    lab = np.asarray(labels)
    flat = lab.ravel().astype(np.int64, copy=False)
    n = int(max(flat.max(initial=0), ids.max(initial=0))) + 1
    yy, xx = np.indices(lab.shape, sparse=True)
    area = np.bincount(flat, minlength=n).astype(np.float64)
    sy = np.bincount(flat, weights=np.broadcast_to(yy, lab.shape).ravel(), minlength=n)
    sx = np.bincount(flat, weights=np.broadcast_to(xx, lab.shape).ravel(), minlength=n)
    ids = ids.astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cent = np.stack([sx[ids] / area[ids], sy[ids] / area[ids]], axis=1)
    return cent, area[ids]


def sdata_from_arrays(
    image: Any,
    labels: Any,
    expression: Any | None = None,
    *,
    channel_names: Sequence[str] | None = None,
    gene_names: Sequence[str] | None = None,
    instance_ids: Sequence[int] | None = None,
    obs: pd.DataFrame | None = None,
    pixel_size: float | None = None,
    image_key: str = IMAGE_KEY,
    labels_key: str = CELL_LABELS_KEY,
    table_key: str = TABLE_KEY,
    channel_axis: int | None = None,
) -> SpatialData:
    """Build a :class:`spatialdata.SpatialData` from an image, a label image and counts.

    The result has the image ``image_key`` (``c, y, x``), the labels
    ``labels_key`` and the table ``table_key`` annotating those labels by
    spatialdata's convention (``uns["spatialdata_attrs"]``: ``region``,
    ``region_key="region"``, ``instance_key="instance_id"``; the label value of a
    cell equals ``obs["instance_id"]``). Centroids go to ``obsm["spatial"]``
    (x, y in pixels) and areas to ``obs["area"]``.

    Parameters
    ----------
    image
        numpy or dask array, ``(y, x)``, ``(c, y, x)`` or ``(y, x, c)`` (an RGB
        H&E or composite is detected by a last axis of 3 or 4; pass
        ``channel_axis`` to be explicit). Any dtype.
    labels
        Integer label image ``(y, x)``, 0 = background, one id per cell. Float
        label images holding whole numbers (as some segmentation tools write)
        are accepted and cast.
    expression
        Optional ``(n_cells, n_genes)`` counts (numpy, scipy sparse or a
        DataFrame whose index holds the instance ids). Stored in ``X`` and in
        ``layers["counts"]``.
    channel_names, gene_names
        Names of the channels and genes (defaults: ``ch0..``, DataFrame columns
        or ``gene0..``).
    instance_ids
        Label id of each expression row. Default: the DataFrame index, or the
        sorted non-zero ids of ``labels`` when ``expression`` has exactly that
        many rows.
    obs
        Extra per-cell columns, indexed like ``instance_ids`` or in row order.
    pixel_size
        Microns per pixel. When given, every element also gets a ``"microns"``
        coordinate system (a scale); ``"global"`` stays in pixels.
    image_key, labels_key, table_key
        Element names.
    channel_axis
        Axis of ``image`` holding the channels (``None``: guess).

    Returns
    -------
    A new SpatialData object.

    Raises
    ------
    ValueError
        Labels not 2-D or not integer-valued, image and labels of different
        ``y, x`` shape, expression rows not matching label ids (with counts and
        example ids of what is missing on each side).
    """
    from spatialdata import SpatialData
    from spatialdata.models import Image2DModel, Labels2DModel

    lab = _label_image(labels)
    img = _channels_first(image, channel_axis, lab.shape)
    channel_names = _channel_names(channel_names, img.shape[0])
    present = np.unique(lab)
    present = present[present != 0].astype(np.int64)
    X, gene_names, instance_ids = _expression_matrix(expression, gene_names, instance_ids, present)
    ids = _checked_ids(present if instance_ids is None else instance_ids, present, X)
    table = _table(lab, ids, X, gene_names, obs, labels_key=labels_key)
    transforms = _transforms(pixel_size)
    image_el = Image2DModel.parse(
        img, dims=("c", "y", "x"), c_coords=channel_names, transformations=dict(transforms)
    )
    labels_el = Labels2DModel.parse(lab, dims=("y", "x"), transformations=dict(transforms))
    return SpatialData(
        images={image_key: image_el}, labels={labels_key: labels_el}, tables={table_key: table}
    )


def _label_image(labels: Any) -> np.ndarray:
    """Check the label image and return it as non-negative integer ids (uint32 if they fit)."""
    import dask.array as da

    lab = labels.compute() if isinstance(labels, da.Array) else np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(
            f"labels must be a 2-D (y, x) label image, got shape {lab.shape}. "
            "For a z-stack, pass one plane or a max projection."
        )
    if not np.issubdtype(lab.dtype, np.integer):
        if not np.issubdtype(lab.dtype, np.floating) or not np.all(np.isfinite(lab)):
            raise ValueError(f"labels must hold integer ids, got dtype {lab.dtype}.")
        if np.any(lab != np.round(lab)) or lab.min() < 0:
            raise ValueError(
                f"labels of dtype {lab.dtype} hold non-integer or negative values; "
                "a label image holds one non-negative integer id per cell."
            )
        lab = lab.astype(np.int64)
    if lab.size and lab.min() < 0:
        raise ValueError("labels hold negative ids; use 0 for background and positive ids.")
    return lab.astype(np.uint32 if lab.max(initial=0) < 2**32 else np.int64, copy=False)


def _channels_first(image: Any, channel_axis: int | None, shape: tuple[int, ...]):
    """Return the image as ``(c, y, x)``, checked to cover the labels' ``shape``."""
    import dask.array as da

    img = image if isinstance(image, da.Array) else np.asarray(image)
    if img.ndim == 2:
        img = img[None]
    elif img.ndim == 3:
        if channel_axis is None:
            channel_axis = 2 if img.shape[2] in (3, 4) and img.shape[0] not in (3, 4) else 0
        if channel_axis not in (0, 2, -1):
            raise ValueError(f"channel_axis must be 0 or 2 (or -1), got {channel_axis}.")
        if channel_axis != 0:
            img = img.transpose(2, 0, 1)
    else:
        raise ValueError(f"image must be (y, x), (c, y, x) or (y, x, c); got shape {img.shape}.")
    if tuple(img.shape[1:]) != tuple(shape):
        raise ValueError(
            f"image (y, x) shape {tuple(img.shape[1:])} differs from labels shape "
            f"{tuple(shape)}; they must cover the same pixels (resample one of them, "
            "e.g. with spatialdata.rasterize)."
        )
    return img


def _channel_names(channel_names: Sequence[str] | None, n_ch: int) -> list[str]:
    """Return one unique name per channel (default ``ch0..``)."""
    if channel_names is None:
        channel_names = [f"ch{i}" for i in range(n_ch)]
    channel_names = [str(c) for c in channel_names]
    if len(channel_names) != n_ch:
        raise ValueError(f"{len(channel_names)} channel_names for an image with {n_ch} channels.")
    if len(set(channel_names)) != n_ch:
        raise ValueError(f"channel_names must be unique, got {channel_names}.")
    return channel_names


def _expression_matrix(expression, gene_names, instance_ids, present: np.ndarray):
    """Return ``(X, gene_names, instance_ids)`` of the expression (``X`` None without one).

    A DataFrame gives the gene names (columns) and ids (index) not passed; without ids,
    the rows must be the labels' cells in sorted order.
    """
    if expression is None:
        return None, gene_names, instance_ids
    if isinstance(expression, pd.DataFrame):
        if gene_names is None:
            gene_names = [str(c) for c in expression.columns]
        if instance_ids is None:
            instance_ids = expression.index.to_numpy()
        X = expression.to_numpy()
    elif sp.issparse(expression):
        X = sp.csr_matrix(expression)
    else:
        X = np.asarray(expression)
    if X.ndim != 2:
        raise ValueError(f"expression must be 2-D (cells, genes), got shape {X.shape}.")
    if instance_ids is None:
        if X.shape[0] != len(present):
            raise ValueError(
                f"expression has {X.shape[0]} rows but labels hold {len(present)} cells; "
                "pass instance_ids= giving the label id of each row."
            )
        instance_ids = present
    if gene_names is None:
        gene_names = [f"gene{i}" for i in range(X.shape[1])]
    if len(gene_names) != X.shape[1]:
        raise ValueError(f"{len(gene_names)} gene_names for {X.shape[1]} expression columns.")
    return X, gene_names, instance_ids


def _checked_ids(instance_ids, present: np.ndarray, X) -> np.ndarray:
    """Return the ids as int64, checked to be unique and to match the labels' cells."""
    ids = np.asarray(instance_ids)
    if not np.issubdtype(ids.dtype, np.integer):
        if np.any(ids != np.round(ids.astype(float))):
            raise ValueError("instance_ids must be integers (the label values).")
    ids = ids.astype(np.int64)
    if len(np.unique(ids)) != len(ids):
        raise ValueError("instance_ids contain duplicates; each cell appears once.")
    if X is not None and len(ids) != X.shape[0]:
        raise ValueError(f"{len(ids)} instance_ids for {X.shape[0]} expression rows.")
    missing_rows = np.setdiff1d(present, ids)
    missing_labels = np.setdiff1d(ids, present)
    if len(missing_rows) or len(missing_labels):
        parts = []
        if len(missing_rows):
            parts.append(
                f"{len(missing_rows)} label id(s) have no expression row (e.g. {_few(missing_rows)})"
            )
        if len(missing_labels):
            parts.append(
                f"{len(missing_labels)} row(s) have no cell in the labels "
                f"(e.g. {_few(missing_labels)})"
            )
        raise ValueError(
            "; ".join(parts) + ". Subset the expression to the segmented cells, or relabel "
            "the segmentation so both describe the same cells."
        )
    return ids


def _table(lab: np.ndarray, ids: np.ndarray, X, gene_names, obs, *, labels_key: str):
    """Build the table annotating ``labels_key``: counts, centroids, areas, extra obs."""
    from spatialdata.models import TableModel

    obs_df = pd.DataFrame(index=pd.Index([str(i) for i in ids], name=None))
    obs_df[REGION_KEY] = pd.Categorical([labels_key] * len(ids))
    obs_df[INSTANCE_KEY] = ids
    cent, area = label_centroids(lab, ids)
    obs_df["area"] = area
    if obs is not None:
        extra = obs.copy()
        if len(extra) == len(ids) and not set(extra.index.astype(str)) >= set(obs_df.index):
            extra.index = obs_df.index
        else:
            extra.index = extra.index.astype(str)
            extra = extra.reindex(obs_df.index)
        for col in extra.columns:
            obs_df[col] = extra[col].to_numpy()
    if X is None:
        X = np.zeros((len(ids), 0), dtype=np.float32)
        var = pd.DataFrame(index=pd.Index([], dtype=str))
    else:
        var = pd.DataFrame(index=pd.Index([str(g) for g in gene_names]))
    adata = ad.AnnData(X=X, obs=obs_df, var=var)
    if adata.n_vars:
        adata.layers[LAYER_COUNTS] = adata.X.copy()
    adata.obsm[OBSM_SPATIAL] = cent
    return TableModel.parse(
        adata, region=labels_key, region_key=REGION_KEY, instance_key=INSTANCE_KEY
    )


def _transforms(pixel_size: float | None) -> dict[str, Any]:
    """Pixels in ``"global"``; with ``pixel_size``, also microns in ``"microns"``."""
    from spatialdata.transformations import Identity, Scale

    transforms: dict[str, Any] = {COORDINATE_SYSTEM: Identity()}
    if pixel_size is not None:
        if not pixel_size > 0:
            raise ValueError(f"pixel_size must be positive (microns per pixel), got {pixel_size}.")
        transforms[MICRONS] = Scale([pixel_size, pixel_size], axes=("y", "x"))
    return transforms
