"""What cell views are cut from, region by region.

A table annotates one or more *regions* (``uns["spatialdata_attrs"]["region"]``): labels
elements (CosMx writes one per field of view) or shapes elements (MERSCOPE polygons, Visium
HD / Xenium circles). Each region gets an image (named, or found: the one covering it in a
coordinate system they share), a pyramid level of it (``level=`` / ``pixel_size=``), and a
label image on that image's pixel grid (the labels as they are when they sit on it up to
an integer shift; else resampled by nearest neighbour through spatialdata's
transformations; shapes rasterized).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._constants import COORDINATE_SYSTEM
from .._elements import annotated_regions, pick_table
from ._inputs import _element, get_image, get_labels


@dataclass
class RegionInput:
    """One region's image and labels, ready for the views of its cells."""

    name: str  # the labels or shapes element the table annotates
    image_key: str
    image_el: Any  # the image element (multiscale: the whole tree)
    image: Any  # dask (c, y, x) at the chosen level
    channel_names: list[str]
    level: int
    labels: Any  # dask (y, x) integer labels, on the image grid up to ``offset``
    offset: tuple[int, int]  # image pixel = labels pixel + offset (dy, dx)
    rows: np.ndarray  # the region's table rows (table order)
    source: str  # "labels", "labels resampled (...)" or "shapes rasterized"
    plain: bool  # the elements as given: scale0 image, labels unchanged
    label_codes: np.ndarray | None = None  # label value per row, when not the instance ids
    pixel_size: float = 1.0


@dataclass
class Inputs:
    """The table and its regions."""

    table_key: str
    table: Any
    instance_key: str
    region_key: str | None
    regions: list[RegionInput] = field(default_factory=list)

    @property
    def plain(self) -> bool:
        """One region, the whole table, elements used as given: the single-region path."""
        return (
            len(self.regions) == 1
            and self.regions[0].plain
            and len(self.regions[0].rows) == self.table.n_obs
        )


# --- transformations ----------------------------------------------------------------------


def _transforms(el: Any) -> dict:
    from spatialdata.transformations import get_transformation

    return dict(get_transformation(el, get_all=True))


def _affine(t: Any) -> np.ndarray:
    return np.asarray(t.to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y")), float)


def _shared_cs(a: Any, b: Any) -> list[str]:
    """Coordinate systems of both elements, the most specific (fewest elements) first."""
    shared = sorted(set(_transforms(a)) & set(_transforms(b)))
    return sorted(shared, key=lambda cs: (cs != COORDINATE_SYSTEM, cs))


def _levels(el: Any) -> list[Any]:
    """Return the DataArrays of an element's pyramid, finest first (single-scale: itself)."""
    if hasattr(el, "children") and len(getattr(el, "children", {})):
        names = sorted(el.children, key=lambda k: int(str(k).replace("scale", "") or 0))
        return [next(iter(el[k].ds.data_vars.values())) for k in names]
    return [el]


def _level_scale(levels: list[Any], i: int) -> np.ndarray:
    """Affine (x, y) from level ``i`` pixels to scale0 pixels."""
    h0, w0 = levels[0].shape[-2:]
    h, w = levels[i].shape[-2:]
    return np.diag([w0 / w, h0 / h, 1.0])


def _bbox(aff: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(xmin, ymin, xmax, ymax) of an element of (y, x) ``shape`` mapped by ``aff``."""
    h, w = shape
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], float).T
    xy = (aff @ corners)[:2]
    return np.r_[xy.min(axis=1), xy.max(axis=1)]


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of box ``a`` covered by box ``b``."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = max((a[2] - a[0]) * (a[3] - a[1]), 1e-12)
    return w * h / area


# --- regions ------------------------------------------------------------------------------


def _segmentations(sdata: Any) -> dict[str, tuple[str, Any]]:
    out = {k: ("labels", v) for k, v in getattr(sdata, "labels", {}).items()}
    out.update({k: ("shapes", v) for k, v in getattr(sdata, "shapes", {}).items()})
    return out


def _choose_table(sdata: Any, labels_key: str | None, table_key: str | None) -> str:
    if labels_key is not None:
        segs = _segmentations(sdata)
        if labels_key not in segs:
            raise KeyError(
                f"labels_key {labels_key!r} is neither a labels nor a shapes element of this "
                f"SpatialData; labels: {sorted(getattr(sdata, 'labels', {}))}, shapes: "
                f"{sorted(getattr(sdata, 'shapes', {}))}."
            )
        return pick_table(sdata, labels_key, table_key)
    tables = dict(getattr(sdata, "tables", {}))
    if table_key is not None:
        _element(tables, table_key, "table")
        return table_key
    segs = _segmentations(sdata)
    hits = [k for k, t in tables.items() if any(r in segs for r in annotated_regions(t))]
    if len(hits) != 1:
        raise ValueError(
            f"pass labels_key= (the segmentation) or table_key= (the table): "
            f"{'several tables annotate a segmentation: ' + str(hits) if hits else 'no table annotates a labels or shapes element'} "
            f"(tables and the elements they annotate: "
            f"{ {k: annotated_regions(t) for k, t in tables.items()} })."
        )
    return hits[0]


def _region_rows(table: Any, region_key: str | None, names: list[str]) -> dict[str, np.ndarray]:
    if region_key is None or region_key not in table.obs:
        if len(names) > 1:
            raise ValueError(
                f"the table annotates several regions {names} but has no region column "
                f"(spatialdata_attrs region_key={region_key!r}); re-parse it with "
                "spatialdata.models.TableModel.parse(adata, region=[...], region_key=..., "
                "instance_key=...)."
            )
        return {names[0]: np.arange(table.n_obs)}
    col = table.obs[region_key].astype(str).to_numpy()
    return {n: np.flatnonzero(col == n) for n in names}


def _select_regions(
    sdata: Any, table: Any, table_key: str, regions: Any, region_key: str | None
) -> dict[str, np.ndarray]:
    segs = _segmentations(sdata)
    annotated = annotated_regions(table)
    rows = _region_rows(table, region_key, annotated)
    if regions is None:
        names = [r for r in annotated if len(rows[r])]
        absent = [r for r in names if r not in segs]
        if absent:
            raise ValueError(
                f"table {table_key!r} has rows of regions {absent} that are not labels or shapes "
                f"elements of this SpatialData (labels: {sorted(getattr(sdata, 'labels', {}))}, "
                f"shapes: {sorted(getattr(sdata, 'shapes', {}))}); pass regions= with the ones "
                "to cut views for."
            )
    else:
        names = [regions] if isinstance(regions, str) else [str(r) for r in regions]
        if not names:
            raise ValueError(f"regions must name at least one region of {annotated}; got [].")
        bad = [r for r in names if r not in annotated]
        if bad:
            raise ValueError(
                f"regions {bad} are not annotated by table {table_key!r}; it annotates {annotated}."
            )
        absent = [r for r in names if r not in segs]
        if absent:
            raise KeyError(
                f"regions {absent} are not labels or shapes elements of this SpatialData."
            )
        names = list(dict.fromkeys(names))
    if not names:
        raise ValueError(f"table {table_key!r} has no rows for any region it annotates.")
    return {n: rows[n] for n in names}


def _image_for(sdata: Any, region: str, seg_el: Any, image_key: Any) -> str:
    images = dict(getattr(sdata, "images", {}))
    if isinstance(image_key, dict):
        if region not in image_key:
            raise KeyError(
                f"image_key is a dict but has no image for region {region!r}; its keys: "
                f"{list(image_key)}."
            )
        key = image_key[region]
        _element(images, key, "image")
        _check_covers(images[key], key, seg_el, region)
        return key
    if image_key is not None:
        _element(images, image_key, "image")
        _check_covers(images[image_key], image_key, seg_el, region)
        return image_key
    scored = []
    for key, el in images.items():
        shared = _shared_cs(el, seg_el)
        if not shared:
            continue
        cs = shared[0]
        img_aff = _affine(_transforms(el)[cs])
        seg_box = _seg_bbox(seg_el, cs)
        cover = _overlap(seg_box, _bbox(img_aff, _levels(el)[0].shape[-2:]))
        normalized = _is_normalized(el)
        scored.append((round(cover, 6), normalized, key))
    if not scored:
        raise ValueError(
            f"no image shares a coordinate system with {region!r} (images: {sorted(images)}); "
            "pass image_key= (a dict {region: image} for several regions)."
        )
    scored.sort(key=lambda s: (-s[0], not s[1]))
    best = [s for s in scored if s[:2] == scored[0][:2]]
    if scored[0][0] <= 0:
        raise ValueError(
            f"no image covers region {region!r} (images sharing a coordinate system with it: "
            f"{[s[2] for s in scored]}); pass image_key=."
        )
    if len(best) > 1:
        raise ValueError(
            f"several images cover region {region!r} equally: {[s[2] for s in best]}; pass "
            "image_key= (a dict {region: image} for several regions)."
        )
    return best[0][2]


def _check_covers(img_el: Any, key: str, seg_el: Any, region: str) -> None:
    """Check that a named image overlaps the region (else views are empty or another FOV's)."""
    shared = _shared_cs(img_el, seg_el)
    if not shared:
        return  # reported with the transformations later
    cs = shared[0]
    if abs(np.linalg.det(_affine(_transforms(seg_el)[cs])[:2, :2])) < 1e-12:
        return  # not invertible: named as such when the labels are resampled
    box = _bbox(_affine(_transforms(img_el)[cs]), _levels(img_el)[0].shape[-2:])
    if _overlap(_seg_bbox(seg_el, cs), box) <= 0:
        raise ValueError(
            f"image {key!r} does not cover region {region!r} in coordinate system {cs!r}; pass "
            "image_key=None (each region finds the image covering it) or a dict {region: image}."
        )


def _is_normalized(el: Any) -> bool:
    from ._cell_views import NORMALIZE_ATTR

    return NORMALIZE_ATTR in getattr(_levels(el)[0], "attrs", {})


def _restore_record(sdata: Any, key: str) -> None:
    """Put mad.pp.normalize's record back on an image read from zarr (it is kept in sdata.attrs)."""
    from ._cell_views import NORMALIZE_ATTR

    first = _levels(sdata.images[key])[0]
    attrs = getattr(first, "attrs", None)
    record = (getattr(sdata, "attrs", None) or {}).get(NORMALIZE_ATTR, {}).get(key)
    if attrs is not None and record is not None and NORMALIZE_ATTR not in attrs:
        attrs[NORMALIZE_ATTR] = record


def _seg_bbox(seg_el: Any, cs: str) -> np.ndarray:
    aff = _affine(_transforms(seg_el)[cs])
    if hasattr(seg_el, "geometry"):
        xmin, ymin, xmax, ymax = seg_el.geometry.total_bounds
        if "radius" in seg_el:
            r = float(np.max(seg_el["radius"])) if len(seg_el) else 0.0
            xmin, ymin, xmax, ymax = xmin - r, ymin - r, xmax + r, ymax + r
        corners = np.array([[xmin, ymin, 1], [xmax, ymin, 1], [xmin, ymax, 1], [xmax, ymax, 1]]).T
        xy = (aff @ corners)[:2]
        return np.r_[xy.min(axis=1), xy.max(axis=1)]
    return _bbox(aff, _levels(seg_el)[0].shape[-2:])


def _pixel_size(aff: np.ndarray) -> float:
    return float(np.sqrt(abs(np.linalg.det(aff[:2, :2]))))


def _choose_level(
    levels: list[Any], aff0: np.ndarray, level: int | None, pixel_size: float | None, key: str
) -> int:
    if level is not None:
        if not 0 <= level < len(levels):
            raise ValueError(
                f"level must be 0..{len(levels) - 1} for image {key!r} ({len(levels)} "
                f"level(s)); got {level}."
            )
        return level
    if pixel_size is None:
        return 0
    sizes = [_pixel_size(aff0 @ _level_scale(levels, i)) for i in range(len(levels))]
    # the level closest to the target on a log scale; ties go to the finer level
    return int(np.argmin([abs(np.log(s / pixel_size)) + 1e-9 * i for i, s in enumerate(sizes)]))


def region_images(
    sdata: Any,
    *,
    image_key: Any = None,
    labels_key: str | None = None,
    table_key: str | None = None,
    regions: Any = None,
) -> tuple[str, dict[str, str]]:
    """Choose the table and the image of every region :func:`~madspatial.pp.cell_views` cuts.

    The same choices as ``cell_views`` (the table annotating ``labels_key``, the regions
    it annotates or ``regions``, per region the named image or the one covering it), made
    without reading pixels: what ``madspatial prepare`` normalizes before cutting.

    Parameters
    ----------
    sdata
        The SpatialData.
    image_key, labels_key, table_key, regions
        As for :func:`madspatial.pp.cell_views`.

    Returns
    -------
    ``(table_key, {region: image_key})``, regions in the order they are cut.
    """
    for key in getattr(sdata, "images", {}):
        _restore_record(sdata, key)
    table_key = _choose_table(sdata, labels_key, table_key)
    table = sdata.tables[table_key]
    region_key = table.uns.get("spatialdata_attrs", {}).get("region_key")
    rows = _select_regions(sdata, table, table_key, regions, region_key)
    segs = _segmentations(sdata)
    return table_key, {name: _image_for(sdata, name, segs[name][1], image_key) for name in rows}


def resolve_inputs(
    sdata: Any,
    *,
    image_key: Any,
    labels_key: str | None,
    table_key: str | None,
    regions: Any = None,
    level: int | None = None,
    pixel_size: float | None = None,
    label_id_key: str | None = None,
) -> Inputs:
    """Resolve the table and, per region it annotates (or ``regions``), the image and labels."""
    from ._rasterize import labels_onto_image, rasterize_shapes

    for key in getattr(sdata, "images", {}):  # before choosing: a normalized image wins
        _restore_record(sdata, key)
    table_key = _choose_table(sdata, labels_key, table_key)
    table = sdata.tables[table_key]
    attrs = table.uns.get("spatialdata_attrs", {})
    instance_key, region_key = attrs.get("instance_key"), attrs.get("region_key")
    rows = _select_regions(sdata, table, table_key, regions, region_key)
    out = Inputs(table_key, table, instance_key, region_key)
    segs = _segmentations(sdata)
    for name, region_rows in rows.items():
        kind, seg_el = segs[name]
        key = _image_for(sdata, name, seg_el, image_key)
        img_el = sdata.images[key]
        levels = _levels(img_el)
        shared = _shared_cs(img_el, seg_el)
        if not shared:
            raise ValueError(
                f"image {key!r} and {kind} {name!r} share no coordinate system (image: "
                f"{sorted(_transforms(img_el))}, {kind}: {sorted(_transforms(seg_el))}); "
                "register them to a common one first."
            )
        cs = shared[0]
        aff0 = _affine(_transforms(img_el)[cs])
        lvl = _choose_level(levels, aff0, level, pixel_size, key)
        img_aff = aff0 @ _level_scale(levels, lvl)
        _, data, names = get_image(_Elements(images={key: levels[lvl]}), key)
        h, w = data.shape[1:]
        codes = None
        if kind == "shapes":
            lab, offset, codes = rasterize_shapes(
                seg_el,
                table.obs.iloc[region_rows],
                instance_key,
                label_id_key,
                np.linalg.solve(img_aff, _affine(_transforms(seg_el)[cs])),
                (h, w),
                name,
            )
            source, plain = "shapes rasterized", False
        else:
            lab_levels = _levels(seg_el)
            lab_aff0 = _affine(_transforms(seg_el)[cs])
            # the labels level nearest the image level's pixel size (nearest resampling then
            # loses the least)
            target = _pixel_size(img_aff)
            j = _choose_level(lab_levels, lab_aff0, None, target, name)
            rel = np.linalg.solve(img_aff, lab_aff0 @ _level_scale(lab_levels, j))
            _, lab_data = get_labels(_Elements(labels={name: lab_levels[j]}), name)
            lab, offset, how = labels_onto_image(lab_data, rel, (h, w), name, key, cs)
            source = "labels" if how is None else f"labels resampled ({how})"
            plain = how is None and lvl == 0 and j == 0
        out.regions.append(
            RegionInput(
                name=name,
                image_key=key,
                image_el=img_el,
                image=data,
                channel_names=names,
                level=lvl,
                labels=lab,
                offset=offset,
                rows=region_rows,
                source=source,
                plain=plain,
                label_codes=codes,
                pixel_size=_pixel_size(img_aff),
            )
        )
    return out


class _Elements:
    """A stand-in for a SpatialData holding a few elements (what the input helpers read)."""

    def __init__(self, images=None, labels=None, tables=None):
        self.images = dict(images or {})
        self.labels = dict(labels or {})
        self.shapes: dict = {}
        self.tables = dict(tables or {})
        self.attrs: dict = {}
