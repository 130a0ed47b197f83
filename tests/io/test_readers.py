"""What spatialdata-io's readers produce works as is: vendor folders written from the synthetic
tissue (CosMx flat files, MERSCOPE), read with ``spatialdata_io``, then normalize ->
cell_views -> pretrain -> embed -> write / read_zarr -> embed again, with no manual step.

The real CosMx crop (shared/data/cosmx_lung_mini) lacks the ``*_exprMat_file.csv`` and
``*_metadata_file.csv`` that ``spatialdata_io.cosmx`` requires; the test writes both from its
transcripts and label images (counts per cell, label centroids) beside copies of its images.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

import madspatial as mad
from madspatial._constants import OBSM_MAD, UNS_VIEWS
from madspatial.pp._cell_views import NORMALIZE_ATTR

sdio = pytest.importorskip(
    "spatialdata_io", reason="spatialdata-io is not installed (pip install 'madspatial[io]')"
)
tifffile = pytest.importorskip("tifffile", reason="tifffile is needed to write vendor images")

pytestmark = pytest.mark.filterwarnings("ignore")

SIZES = dict(morphology_size=28, microenvironment_size=56, n_neighbors=6)
SMALL = dict(
    model="vit_pico", batch_size=16, lr=1e-3, n_prototypes=64, head_hidden_dim=32,
    head_bottleneck_dim=16, n_local=1, n_holdout=0, eval_every=100,
)  # fmt: skip


@pytest.fixture(scope="module")
def tissue():
    return mad.datasets.synthetic_tissue(n_cells=120, seed=0)


def _arrays(tissue):
    img = np.asarray(tissue.images["morphology"].data)  # (4, y, x) uint16
    lab = np.asarray(tissue.labels["cell_labels"].data)
    table = tissue.tables["table"]
    counts = np.asarray(table.X.todense() if hasattr(table.X, "todense") else table.X)
    by_id = dict(zip(table.obs["instance_id"].astype(int), range(table.n_obs)))
    return img, lab, counts, by_id, list(table.var_names)


def write_cosmx(tissue, root, dataset="Synth"):
    """Two FOVs (left and right halves) as CosMx flat files; ids restart at 1 per FOV."""
    img, lab, counts, by_id, genes = _arrays(tissue)
    (root / "CellComposite").mkdir(parents=True)
    (root / "CellLabels").mkdir()
    w = img.shape[2]
    meta, expr, fovs = [], [], []
    for f, (x0, x1) in enumerate([(0, w // 2), (w // 2, w)], start=1):
        crop, lcrop = img[:, :, x0:x1], lab[:, x0:x1]
        old = np.unique(lcrop[lcrop > 0])
        new = np.zeros(int(lab.max()) + 1, dtype=np.uint32)
        new[old] = np.arange(1, len(old) + 1)
        lfov = new[lcrop]
        # the reader flips images and labels upside down (CosMx stores them bottom-up)
        tifffile.imwrite(root / "CellComposite" / f"CellComposite_F{f:03d}.tif",
                         np.flipud(np.moveaxis(crop, 0, -1)))  # fmt: skip
        tifffile.imwrite(root / "CellLabels" / f"CellLabels_F{f:03d}.tif", np.flipud(lfov))
        for cid, oid in enumerate(old, start=1):
            yy, xx = np.nonzero(lfov == cid)
            meta.append({"fov": f, "cell_ID": cid, "CenterX_local_px": xx.mean(),
                         "CenterY_local_px": yy.mean(), "CenterX_global_px": xx.mean() + x0,
                         "CenterY_global_px": yy.mean()})  # fmt: skip
            expr.append([f, cid, *counts[by_id[int(oid)]].astype(int)])
        fovs.append({"fov": f, "x_global_px": x0, "y_global_px": 0})
    pd.DataFrame(meta).to_csv(root / f"{dataset}_metadata_file.csv", index=False)
    pd.DataFrame(expr, columns=["fov", "cell_ID", *genes]).to_csv(
        root / f"{dataset}_exprMat_file.csv", index=False
    )
    pd.DataFrame(fovs).to_csv(root / f"{dataset}_fov_positions_file.csv", index=False)
    return len(meta)


#: micron -> mosaic pixel (MERSCOPE's micron_to_mosaic_pixel_transform.csv)
MICRON_TO_PX = np.array([[2.0, 0.0, 4.0], [0.0, 2.0, 6.0], [0.0, 0.0, 1.0]])


def write_merscope(tissue, root):
    """A MERSCOPE region folder: mosaics, micron transform, cell table, polygons in microns."""
    import geopandas as gpd
    from shapely.geometry import MultiPolygon, Polygon
    from skimage.measure import find_contours

    img, lab, counts, by_id, genes = _arrays(tissue)
    (root / "images").mkdir(parents=True)
    for stain, plane in zip(["DAPI", "PolyT", "Cellbound1", "Cellbound2"], img):
        tifffile.imwrite(root / "images" / f"mosaic_{stain}_z3.tif", plane)
    np.savetxt(root / "images" / "micron_to_mosaic_pixel_transform.csv", MICRON_TO_PX)
    inv = np.linalg.inv(MICRON_TO_PX)
    rows, polys, entity = [], [], []
    for oid in np.unique(lab[lab > 0]):
        mask = np.pad(lab == oid, 1)
        ring = max(find_contours(mask.astype(float), 0.5), key=len) - 1 + 0.5  # (row, col) px
        xy = np.c_[ring[:, 1], ring[:, 0], np.ones(len(ring))] @ inv.T
        eid = str(10_000_000_000 + int(oid))  # MERSCOPE EntityIDs: large integers as text
        polys.append(MultiPolygon([Polygon(xy[:, :2])]))
        entity.append(eid)
        yy, xx = np.nonzero(lab == oid)
        cx, cy = (np.array([xx.mean() + 0.5, yy.mean() + 0.5, 1]) @ inv.T)[:2]
        rows.append({"EntityID": eid, "fov": 0, "volume": len(xx), "center_x": cx, "center_y": cy})
    gdf = gpd.GeoDataFrame({"EntityID": entity, "ZIndex": 0}, geometry=polys).rename_geometry(
        "Geometry"
    )
    gdf.to_parquet(root / "cell_boundaries.parquet")
    pd.DataFrame(rows).set_index("EntityID").to_csv(root / "cell_metadata.csv")
    cbg = pd.DataFrame(
        [counts[by_id[int(e) - 10_000_000_000]].astype(int) for e in entity],
        columns=genes, index=pd.Index(entity, name="cell"),
    )  # fmt: skip
    cbg.to_csv(root / "cell_by_gene.csv")
    return len(entity)


def _pipeline(sdata, tmp_path):
    """normalize every image -> cell_views (all regions) -> pretrain -> embed -> write -> embed."""
    import spatialdata

    for key in list(sdata.images):
        mad.pp.normalize(sdata, image_key=key)
    mad.pp.cell_views(sdata, table_key="table", **SIZES)
    table = sdata.tables["table"]
    views = mad.io.read_views(sdata)
    assert len(views) == table.n_obs  # every table row has a view
    mad.tl.pretrain(sdata, max_steps=2, checkpoint_dir=tmp_path / "model", **SMALL)
    mad.tl.embed(sdata)
    emb = np.asarray(sdata.tables["table"].obsm[OBSM_MAD])
    assert emb.shape[0] == table.n_obs and np.isfinite(emb).all()
    sdata.write(tmp_path / "data.zarr")
    back = spatialdata.read_zarr(tmp_path / "data.zarr")
    del back.tables["table"].obsm[OBSM_MAD]
    mad.tl.embed(back)  # another SpatialData object: views found inside its zarr
    np.testing.assert_allclose(back.tables["table"].obsm[OBSM_MAD], emb, rtol=1e-4, atol=1e-5)
    return views


def _by_hand(sdata, region, row, views, id_offset=0):
    """The views of one row cut again from the same pixels, through the plain single-image path."""
    info = sdata.tables["table"].uns[UNS_VIEWS]
    reg = info["regions"][region]
    image = sdata.images[reg["image_key"]]
    image = image["scale0"].image if hasattr(image, "children") and image.children else image
    labels = views.lab[region]
    table = sdata.tables["table"]
    ids_col = reg["label_id_key"]
    rows = np.flatnonzero(table.obs[info_region_col(table)].astype(str).to_numpy() == region)
    ids = np.asarray(table.obs[ids_col].astype(np.int64))[rows] - id_offset
    hand = mad.io.sdata_from_arrays(np.asarray(image.data), labels, instance_ids=ids)
    record = mad.pp.normalization_params(sdata, image_key=reg["image_key"])
    hand.images["morphology"].attrs[NORMALIZE_ATTR] = record  # the same normalized pixels
    # windows from the region's own cells, as cell_views chose them per region
    mad.pp.cell_views(hand, image_key="morphology", labels_key="cell_labels", **SIZES)
    mine = mad.io.read_views(hand)
    k = int(np.flatnonzero(rows == row)[0])
    return mine.batch([k])


def info_region_col(table):
    return table.uns["spatialdata_attrs"]["region_key"]


def test_cosmx_reader_two_fovs_one_store(tissue, tmp_path):
    n = write_cosmx(tissue, tmp_path / "cosmx")
    sdata = sdio.cosmx(tmp_path / "cosmx", transcripts=False)
    assert sorted(sdata.labels) == ["1_labels", "2_labels"]
    assert sdata.tables["table"].n_obs == n
    views = _pipeline(sdata, tmp_path)
    table = sdata.tables["table"]
    assert set(table.uns[UNS_VIEWS]["regions"]) == {"1_labels", "2_labels"}
    # one cell of FOV 2, cut again by hand from the same pixels (normalized image, labels)
    row = int(np.flatnonzero(table.obs["fov_labels"].astype(str).to_numpy() == "2_labels")[5])
    views.lab = {"2_labels": np.asarray(sdata.labels["2_labels"].data)}
    m, e = _by_hand(sdata, "2_labels", row, views)
    m0, e0 = views.batch([row])
    np.testing.assert_array_equal(m0, m)
    np.testing.assert_array_equal(e0, e)


def test_merscope_reader_polygons_in_microns(tissue, tmp_path):
    root = tmp_path / "20260101_run" / "region_0"
    n = write_merscope(tissue, root)
    sdata = sdio.merscope(root, transcripts=False)
    (shapes_key,) = list(sdata.shapes)
    assert sdata.tables["table"].n_obs == n
    views = _pipeline(sdata, tmp_path)
    info = sdata.tables["table"].uns[UNS_VIEWS]
    assert info["regions"][shapes_key]["labels_source"] == "shapes rasterized"
    # the rasterized polygons are the synthetic cells: views equal those cut from the labels
    lab = np.asarray(tissue.labels["cell_labels"].data).astype(np.int64)
    table = sdata.tables["table"]
    ids = table.obs["EntityID"].astype(np.int64).to_numpy()
    views.lab = {shapes_key: lab}
    row = 7
    m, _e = _by_hand(sdata, shapes_key, row, views, id_offset=10_000_000_000)
    m0, _ = views.batch([row])
    inside0, inside = m0[0, 0] > 0, m[0, 0] > 0
    assert (inside0 == inside).mean() > 0.97  # polygon fill vs the label mask it traces
    assert len(np.unique(ids)) == n


@pytest.fixture
def cosmx_flat(cosmx_dir, tmp_path):
    """The real CosMx crop with the two flat files spatialdata_io.cosmx needs, written here."""
    root = tmp_path / "Lung12"
    shutil.copytree(cosmx_dir, root, ignore=shutil.ignore_patterns("*.md", "*_tx_file.csv"))
    tx = pd.read_csv(cosmx_dir / "Lung12_tx_file.csv")
    tx = tx[tx["cell_ID"] > 0]
    counts = tx.groupby(["fov", "cell_ID"])["target"].value_counts().unstack(fill_value=0)
    meta = []
    for f in (2, 3):
        lab = tifffile.imread(root / "CellLabels" / f"CellLabels_F{f:03d}.tif")
        for cid in np.unique(lab[lab > 0]).astype(int):
            yy, xx = np.nonzero(lab == cid)
            meta.append({"fov": f, "cell_ID": cid, "CenterX_local_px": xx.mean(),
                         "CenterY_local_px": yy.mean(), "CenterX_global_px": xx.mean() + 1000 * f,
                         "CenterY_global_px": yy.mean()})  # fmt: skip
    meta = pd.DataFrame(meta)
    counts = counts.reindex(pd.MultiIndex.from_frame(meta[["fov", "cell_ID"]]), fill_value=0)
    meta.to_csv(root / "Lung12_metadata_file.csv", index=False)
    counts.reset_index().to_csv(root / "Lung12_exprMat_file.csv", index=False)
    return root


def test_real_cosmx_through_the_reader(cosmx_flat, tmp_path):
    sdata = sdio.cosmx(cosmx_flat, transcripts=False)
    assert sorted(sdata.labels) == ["2_labels", "3_labels"]
    assert sdata.tables["table"].n_obs == 120
    _pipeline(sdata, tmp_path)
    table = sdata.tables["table"]
    assert table.n_obs == 120 and table.uns[UNS_VIEWS]["n_cells"] == 120
    assert sorted(table.uns[UNS_VIEWS]["labels_key"]) == ["2_labels", "3_labels"]
