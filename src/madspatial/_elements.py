"""Choose the image, the segmentation and the table of a SpatialData named only in part.

Used by ``madspatial demo --sdata`` and ``madspatial prepare``.

The table is the one that annotates the chosen segmentation (labels or shapes); the
segmentation, when not named, is the one a table (the named one, or any) annotates. Only a
real ambiguity (two candidates) is an error, and it lists the candidates.
"""

from __future__ import annotations

from typing import Any

from ._logging import logger


def annotated_regions(table: Any) -> list[str]:
    """Return the elements a table annotates (``uns["spatialdata_attrs"]["region"]``), or ``[]``."""
    region = table.uns.get("spatialdata_attrs", {}).get("region")
    if region is None:
        return []
    return [region] if isinstance(region, str) else [str(r) for r in region]


def region_rows(table: Any, region: str) -> int | None:
    """Rows of ``table`` whose region column names ``region`` (``None``: no region column)."""
    key = table.uns.get("spatialdata_attrs", {}).get("region_key")
    if key is None or key not in table.obs:
        return None
    return int((table.obs[key].astype(str) == region).sum())


def pick_table(
    sdata: Any, labels_key: str, table_key: str | None = None, *, where: str = "the SpatialData"
) -> str:
    """Return the table annotating ``labels_key``: ``table_key`` if named, else the only one.

    A named ``table_key`` is checked. Several tables annotate ``labels_key``: those with rows
    for it are kept (a table that lists the element but holds none of its cells does not
    compete); only when several remain is it an error, listing them.
    """
    tables = dict(getattr(sdata, "tables", {}))
    regions = {k: annotated_regions(t) for k, t in tables.items()}
    if table_key is not None:
        if table_key not in tables:
            raise KeyError(
                f"table_key {table_key!r} is not in {where}; its tables are {list(tables)}."
            )
        if labels_key not in regions[table_key]:
            raise ValueError(
                f"table {table_key!r} annotates {regions[table_key]}, not {labels_key!r}; pass "
                "the table that annotates it (tables and the elements they annotate: "
                f"{regions})."
            )
        return table_key
    hits = [k for k, r in regions.items() if labels_key in r]
    if not hits:
        raise ValueError(
            f"no table of {where} annotates {labels_key!r} (tables and the elements they "
            f"annotate: {regions}); pass table_key (--table-key), or link a table with "
            "spatialdata.models.TableModel.parse(adata, region=labels_key, "
            "region_key='region', instance_key='instance_id')."
        )
    if len(hits) > 1:
        with_rows = [k for k in hits if region_rows(tables[k], labels_key) != 0]
        hits = with_rows or hits
    if len(hits) > 1:
        raise ValueError(
            f"several tables of {where} annotate {labels_key!r}: {hits} (each holds rows of "
            "it); pass table_key (--table-key) to choose one."
        )
    return hits[0]


def _check_named(sdata: Any, where: str, **keys: str | None) -> None:
    kinds = {
        "image_key": ("image", dict(sdata.images)),
        "labels_key": ("labels or shapes", {**sdata.labels, **sdata.shapes}),
        "table_key": ("table", dict(sdata.tables)),
    }
    for arg, key in keys.items():
        kind, elements = kinds[arg]
        if key is not None and key not in elements:
            flag = "--" + arg.replace("_", "-")
            raise KeyError(
                f"{arg} ({flag}) {key!r} is not in {where}; its {kind} elements are "
                f"{list(elements)}."
            )


def pick_elements(
    sdata: Any,
    *,
    image_key: str | None = None,
    labels_key: str | None = None,
    table_key: str | None = None,
    where: str = "the SpatialData",
) -> tuple[str, str, str]:
    """``(image_key, labels_key, table_key)``: the named ones, the rest chosen.

    Parameters
    ----------
    sdata
        The SpatialData.
    image_key
        Default: its only image (several: the first, logged).
    labels_key
        Default: the labels (or shapes) element the table ``table_key`` annotates, else the
        only one any table annotates, else the first labels element.
    table_key
        Default: the table that annotates ``labels_key``.
    where
        How errors name ``sdata`` (e.g. its path).

    Raises
    ------
    KeyError
        A named element that does not exist (the message lists those that do).
    ValueError
        No image, no segmentation or no table annotating it; several candidates.
    """
    _check_named(sdata, where, image_key=image_key, labels_key=labels_key, table_key=table_key)
    if image_key is None:
        images = list(sdata.images)
        if not images:
            raise ValueError(f"{where} holds no image element; cell views need one.")
        image_key = images[0]
        if len(images) > 1:
            others = images[1:]
            logger.info("using image %r of %s (others: %s)", image_key, where, others)
    regions = {k: annotated_regions(t) for k, t in sdata.tables.items()}
    if labels_key is None:
        segmentations = [*sdata.labels, *sdata.shapes]
        named = [regions[table_key]] if table_key is not None else regions.values()
        annotated = [k for r in named for k in r]
        candidates = list(dict.fromkeys(k for k in annotated if k in segmentations))
        if len(candidates) > 1:
            by = f"table {table_key!r}" if table_key is not None else "the tables"
            raise ValueError(
                f"{by} of {where} annotate several segmentations {candidates}; pass "
                "labels_key (--labels-key) to choose one."
            )
        if candidates:
            labels_key = candidates[0]
        elif len(sdata.labels):
            labels_key = next(iter(sdata.labels))
        else:
            raise ValueError(f"{where} holds no labels element; cell views need a segmentation.")
    table_key = pick_table(sdata, labels_key, table_key, where=where)
    return image_key, labels_key, table_key
