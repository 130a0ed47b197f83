"""Shapes instead of labels: polygons and circles rasterized onto the image grid (issue 12)."""

from __future__ import annotations

import anndata as ad
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Point, Polygon
from skimage.draw import polygon as skimage_polygon
from spatialdata.models import ShapesModel, TableModel
from spatialdata.transformations import Scale

import madspatial as mad
from madspatial._constants import OBS_LABEL_ID, UNS_VIEWS
from madspatial.pp._rasterize import fill_rings

from .conftest import disk_tissue

SIZES = dict(morphology_size=28, microenvironment_size=56, n_neighbors=4)


def _with_shapes(sdata, truth, geoms, index, name="cells", transform=None, **cols):
    gdf = gpd.GeoDataFrame(dict(cols), geometry=geoms, index=pd.Index(index))
    kw = {"transformations": {"global": transform}} if transform is not None else {}
    sdata.shapes[name] = ShapesModel.parse(gdf, **kw)
    obs = pd.DataFrame({"cell_id": list(index), "region": pd.Categorical([name] * len(index))})
    obs.index = obs.index.astype(str)
    del sdata.tables["table"]
    sdata.tables["cells_table"] = TableModel.parse(
        ad.AnnData(obs=obs), region=name, region_key="region", instance_key="cell_id"
    )
    return sdata


def test_polygons_as_labels_key_keep_their_ids():
    """Before: "no labels 'cells' in this SpatialData; available: ['cell_labels']"."""
    sdata, truth = disk_tissue(shape=(140, 140), shuffle_table=False)
    c, r = truth["centres"], truth["radii"]
    # disks as polygons, pixel centres at i + 0.5 in spatialdata's intrinsic coordinates
    polys = [Point(x + 0.5, y + 0.5).buffer(rad + 0.5, quad_segs=16) for (x, y), rad in zip(c, r)]
    ids = truth["ids"] * 10  # ids are kept, not renumbered
    _with_shapes(sdata, truth, polys, ids)
    mad.pp.cell_views(sdata, image_key="morphology", labels_key="cells", **SIZES)
    table = sdata.tables["cells_table"]
    views = mad.io.read_views(sdata)
    np.testing.assert_array_equal(views.instance_id, ids)
    assert table.uns[UNS_VIEWS]["regions"]["cells"]["labels_source"] == "shapes rasterized"
    # each cell's morphology mask is its disk: compare with views cut from the label image
    ref = mad.io.sdata_from_arrays(truth["image"], truth["labels"], instance_ids=truth["ids"])
    mad.pp.cell_views(ref, image_key="morphology", labels_key="cell_labels", **SIZES)
    want = mad.io.read_views(ref)
    agree = ((views.morphology[:, 1] > 0) == (want.morphology[:, 1] > 0)).mean()
    assert agree > 0.98


def test_circles_with_text_ids_and_a_micron_transform():
    """Visium HD / Xenium style: points with a radius, text ids, coordinates in microns."""
    sdata, truth = disk_tissue(shape=(140, 140), shuffle_table=False)
    um = 0.5  # microns per pixel: the shapes are in microns
    pts = [Point((x + 0.5) * um, (y + 0.5) * um) for x, y in truth["centres"]]
    ids = [f"cell-{i:04d}-1" for i in truth["ids"]]
    _with_shapes(
        sdata,
        truth,
        pts,
        ids,
        transform=Scale([1 / um, 1 / um], axes=("x", "y")),
        radius=(truth["radii"] + 0.5) * um,
    )
    mad.pp.cell_views(sdata, labels_key="cells", **SIZES)  # the image is found
    table = sdata.tables["cells_table"]
    views = mad.io.read_views(sdata)
    assert len(views) == table.n_obs == len(ids)
    # text ids: each row's label value is recorded
    np.testing.assert_array_equal(table.obs[OBS_LABEL_ID].to_numpy(), np.arange(1, len(ids) + 1))
    assert table.uns[UNS_VIEWS]["label_id_key"] == OBS_LABEL_ID
    # a circle centred on a disk: its view is bright where the disk's value is
    m, _ = views.batch([0])
    assert m[0, 0].max() == round(truth["values"][0] * 255)


def test_scanline_fill_matches_skimage():
    rng = np.random.default_rng(1)
    rings = []
    for _ in range(40):
        cx, cy = rng.uniform(10, 110, 2)
        n = int(rng.integers(3, 25))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = rng.uniform(2, 12, n)
        rings.append(np.c_[cx + rad * np.cos(ang), cy + rad * np.sin(ang)])
    got, want = np.zeros((120, 120), np.int64), np.zeros((120, 120), np.int64)
    fill_rings(
        got, np.concatenate(rings), np.r_[0, np.cumsum([len(r) for r in rings])], np.arange(1, 41)
    )
    for k, ring in enumerate(rings):
        rr, cc = skimage_polygon(ring[:, 1], ring[:, 0], want.shape)
        want[rr, cc] = k + 1
    np.testing.assert_array_equal(got, want)


def test_polygon_outside_the_image_is_a_missing_cell():
    sdata, truth = disk_tissue(shape=(140, 140), shuffle_table=False)
    c, r = truth["centres"], truth["radii"]
    polys = [Point(x + 0.5, y + 0.5).buffer(rad + 0.5) for (x, y), rad in zip(c, r)]
    polys[-1] = Polygon([(500, 500), (510, 500), (510, 510)])
    _with_shapes(sdata, truth, polys, truth["ids"])
    with pytest.raises(ValueError, match=r"1 table row\(s\) of 'cells_table' have no pixels"):
        mad.pp.cell_views(sdata, image_key="morphology", labels_key="cells", **SIZES)
    mad.pp.cell_views(
        sdata, image_key="morphology", labels_key="cells", missing="intersect", **SIZES
    )
    assert sdata.tables["cells_table"].n_obs == len(polys) - 1


def _rasterize(geoms, ids, shape=(60, 60)):
    from madspatial.pp._rasterize import rasterize_shapes

    gdf = gpd.GeoDataFrame(geometry=geoms, index=pd.Index(ids))
    obs = pd.DataFrame({"cell_id": ids})
    lab, (dy, dx), codes = rasterize_shapes(gdf, obs, "cell_id", None, np.eye(3), shape, "s")
    out = np.zeros(shape, dtype=np.int64)
    lab = np.asarray(lab)
    out[dy : dy + lab.shape[0], dx : dx + lab.shape[1]] = lab
    return out, codes


def test_polygon_holes_stay_empty():
    """Before: holes were ignored (the donut filled 400 px, its hole included); now 300."""
    donut = Polygon(
        [(10, 10), (30, 10), (30, 30), (10, 30)], holes=[[(15, 15), (25, 15), (25, 25), (15, 25)]]
    )
    got, codes = _rasterize([donut], [7])
    want = np.zeros_like(got)
    want[10:30, 10:30] = 7  # pixel i covers [i, i + 1): centres 10.5 .. 29.5 are inside
    want[15:25, 15:25] = 0  # the hole
    assert codes is None  # positive integer ids are the label values
    assert (got == 7).sum() == 300
    np.testing.assert_array_equal(got, want)


def test_multipolygon_with_holes_and_an_island_in_a_hole():
    """A round donut with an island in its hole (a MultiPolygon) and a second cell overlapping."""
    from shapely import contains_xy
    from shapely.geometry import MultiPolygon

    ring = Point(25, 25).buffer(18, quad_segs=32).difference(Point(25, 25).buffer(9, quad_segs=32))
    island = Point(25, 25).buffer(4, quad_segs=32)
    cell = MultiPolygon([ring, island])
    other = Polygon([(44, 44), (58, 44), (58, 58), (44, 58)])
    assert len(ring.interiors) == 1
    got, _ = _rasterize([cell, other], [3, 9])
    yy, xx = np.mgrid[:60, :60] + 0.5  # pixel centres in intrinsic coordinates
    want = np.zeros_like(got)
    want[contains_xy(cell, xx, yy)] = 3
    want[contains_xy(other, xx, yy)] = 9  # drawn after: overwrites where they overlap
    np.testing.assert_array_equal(got, want)
    assert got[25, 25] == 3 and got[25, 25 + 6] == 0 and got[25, 25 + 12] == 3
