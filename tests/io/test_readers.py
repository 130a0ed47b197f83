"""What spatialdata-io's readers produce works as is: vendor folders written from the synthetic
tissue (CosMx flat files, MERSCOPE, Xenium, Visium HD; see ``conftest.py``) and the real CosMx
crop, read with ``spatialdata_io``, then normalize -> cell_views -> pretrain -> embed (and
write / read_zarr -> embed again) with no manual step.

Each reader's folder is read and run once per module (module-scoped fixtures); the tests then
check that run: cell counts, every table row has a view, and one cell's views equal the views
cut again by hand from the same pixels.
"""

from __future__ import annotations

import numpy as np
import pytest

import madspatial as mad
from madspatial._constants import OBS_LABEL_ID, OBSM_MAD, UNS_VIEWS
from madspatial.pp._cell_views import NORMALIZE_ATTR

from .conftest import vendor_read

sdio = pytest.importorskip(
    "spatialdata_io", reason="spatialdata-io is not installed (pip install 'madspatial[io]')"
)
pytest.importorskip("tifffile", reason="tifffile is needed to write vendor images")

pytestmark = pytest.mark.filterwarnings("ignore")

SIZES = dict(morphology_size=28, microenvironment_size=56, n_neighbors=6)
SMALL = dict(
    model="vit_pico",
    batch_size=16,
    lr=1e-3,
    n_prototypes=16,
    head_hidden_dim=16,
    head_bottleneck_dim=8,
    n_local=1,
    n_holdout=0,
    eval_every=100,
    max_steps=1,
)
#: Offset of the MERSCOPE EntityIDs written by conftest.write_merscope
ENTITY_OFFSET = 10_000_000_000


def _pipeline(sdata, tmp, *, table_key="table", roundtrip=True):
    """normalize every image -> cell_views (all regions) -> pretrain -> embed [-> write -> embed]."""
    import spatialdata

    for key in list(sdata.images):
        mad.pp.normalize(sdata, image_key=key)
    mad.pp.cell_views(sdata, table_key=table_key, **SIZES)
    out = {"views": mad.io.read_views(sdata, table_key=table_key)}
    mad.tl.pretrain(sdata, table_key=table_key, checkpoint_dir=tmp / "model", **SMALL)
    mad.tl.embed(sdata, table_key=table_key)
    out["emb"] = np.asarray(sdata.tables[table_key].obsm[OBSM_MAD])
    if roundtrip:
        sdata.write(tmp / "data.zarr")
        back = spatialdata.read_zarr(tmp / "data.zarr")
        del back.tables[table_key].obsm[OBSM_MAD]
        mad.tl.embed(back, table_key=table_key)  # another object: views found inside its zarr
        out["emb_back"] = np.asarray(back.tables[table_key].obsm[OBSM_MAD])
    return out


def _check_run(sdata, run, n, *, table_key="table"):
    table = sdata.tables[table_key]
    assert table.n_obs == n and len(run["views"]) == n  # every table row has a view
    assert table.uns[UNS_VIEWS]["n_cells"] == n
    assert run["emb"].shape[0] == n and np.isfinite(run["emb"]).all()
    if "emb_back" in run:
        np.testing.assert_allclose(run["emb_back"], run["emb"], rtol=1e-4, atol=1e-5)


def _by_hand(sdata, region, row, labels, ids, *, table_key="table"):
    """The views of one row cut again, through the plain single-image path, from the region's
    normalized image and ``labels`` (``ids``: the label value of each of the region's rows)."""
    table = sdata.tables[table_key]
    info = table.uns[UNS_VIEWS]
    reg = info.get("regions", {}).get(region, info)  # one plain region: no per-region record
    image = sdata.images[reg["image_key"]]
    image = image["scale0"].image if hasattr(image, "children") and image.children else image
    region_key = table.uns["spatialdata_attrs"]["region_key"]
    rows = np.flatnonzero(table.obs[region_key].astype(str).to_numpy() == region)
    hand = mad.io.sdata_from_arrays(np.asarray(image.data), labels, instance_ids=ids)
    record = mad.pp.normalization_params(sdata, image_key=reg["image_key"])
    hand.images["morphology"].attrs[NORMALIZE_ATTR] = record  # the same normalized pixels
    # windows from the region's own cells, as cell_views chose them per region
    mad.pp.cell_views(hand, image_key="morphology", labels_key="cell_labels", **SIZES)
    return mad.io.read_views(hand).batch([int(np.flatnonzero(rows == row)[0])])


def _region_rows(table, region):
    key = table.uns["spatialdata_attrs"]["region_key"]
    return np.flatnonzero(table.obs[key].astype(str).to_numpy() == region)


# --- CosMx (two FOVs, ids restarting at 1 in each) ------------------------------------------


@pytest.fixture(scope="module")
def cosmx(cosmx_folder, tmp_path_factory):
    root, n = cosmx_folder
    sdata = vendor_read(sdio.cosmx, root, transcripts=False)
    assert sorted(sdata.labels) == ["1_labels", "2_labels"]
    return sdata, _pipeline(sdata, tmp_path_factory.mktemp("cosmx")), n


def test_cosmx_reader_two_fovs_one_store(cosmx):
    sdata, run, n = cosmx
    _check_run(sdata, run, n)
    info = sdata.tables["table"].uns[UNS_VIEWS]
    assert set(info["regions"]) == {"1_labels", "2_labels"}
    assert sorted(info["image_key"]) == ["1_image_normalized", "2_image_normalized"]


def test_cosmx_view_equals_the_one_cut_by_hand(cosmx):
    sdata, run, _n = cosmx
    table = sdata.tables["table"]
    rows = _region_rows(table, "2_labels")
    row = int(rows[5])  # one cell of FOV 2, cut again from the same pixels
    ids = table.obs["cell_ID"].astype(np.int64).to_numpy()[rows]
    labels = np.asarray(sdata.labels["2_labels"].data)
    m, e = _by_hand(sdata, "2_labels", row, labels, ids)
    m0, e0 = run["views"].batch([row])
    np.testing.assert_array_equal(m0, m)
    np.testing.assert_array_equal(e0, e)


# --- MERSCOPE (polygons in microns, EntityIDs as text) ---------------------------------------


@pytest.fixture(scope="module")
def merscope(merscope_folder, tmp_path_factory):
    root, n = merscope_folder
    sdata = vendor_read(sdio.merscope, root, transcripts=False)
    return sdata, _pipeline(sdata, tmp_path_factory.mktemp("merscope")), n


def test_merscope_reader_polygons_in_microns(merscope, reader_tissue):
    sdata, run, n = merscope
    _check_run(sdata, run, n)
    (shapes_key,) = list(sdata.shapes)
    table = sdata.tables["table"]
    assert table.uns[UNS_VIEWS]["regions"][shapes_key]["labels_source"] == "shapes rasterized"
    ids = table.obs["EntityID"].astype(np.int64).to_numpy()
    assert len(np.unique(ids)) == n
    # the rasterized polygons are the synthetic cells: views equal those cut from the labels
    lab = np.asarray(reader_tissue.labels["cell_labels"].data).astype(np.int64)
    row = 7
    m, _e = _by_hand(sdata, shapes_key, row, lab, ids - ENTITY_OFFSET)
    m0, _ = run["views"].batch([row])
    assert ((m0[0, 0] > 0) == (m[0, 0] > 0)).mean() > 0.97  # polygon fill vs the label mask


# --- Xenium (XOA 2.0: cells.zarr.zip labels, text cell ids, circles) --------------------------


@pytest.fixture(scope="module")
def xenium(xenium_folder, tmp_path_factory):
    root, ids, _olds = xenium_folder
    sdata = vendor_read(sdio.xenium, root, transcripts=False)
    return sdata, _pipeline(sdata, tmp_path_factory.mktemp("xenium"), roundtrip=False), ids


def test_xenium_reader_cell_labels(xenium):
    """The table annotates the raster ``cell_labels`` (instance key: the label value)."""
    sdata, run, ids = xenium
    _check_run(sdata, run, len(ids))
    table = sdata.tables["table"]
    np.testing.assert_array_equal(table.obs["cell_id"].astype(str).to_numpy(), ids)
    info = table.uns[UNS_VIEWS]
    assert info["labels_key"] == "cell_labels" and info["channel_names"] == ["DAPI"]
    assert run["views"].morphology.shape[1] == 1  # DAPI only (no segmentation kit)
    row = 11
    labels = np.asarray(sdata.labels["cell_labels"]["scale0"].image.data)
    m, e = _by_hand(sdata, "cell_labels", row, labels, table.obs["cell_labels"].to_numpy())
    m0, e0 = run["views"].batch([row])
    np.testing.assert_array_equal(m0, m)
    np.testing.assert_array_equal(e0, e)


def test_xenium_reader_cells_as_circles(xenium_folder, reader_tissue):
    """``cells_as_circles=True``: the table annotates circles in microns with text ids."""
    root, ids, olds = xenium_folder
    sdata = vendor_read(sdio.xenium, root, transcripts=False, cells_as_circles=True)
    assert sdata.tables["table"].uns["spatialdata_attrs"]["region"] == "cell_circles"
    mad.pp.normalize(sdata, image_key="morphology_focus")
    mad.pp.cell_views(sdata, table_key="table", **SIZES)
    table = sdata.tables["table"]
    views = mad.io.read_views(sdata)
    assert len(views) == table.n_obs == len(ids)
    info = table.uns[UNS_VIEWS]
    assert info["regions"]["cell_circles"]["labels_source"] == "shapes rasterized"
    # text ids ("aaaajmea-1"): each row got a label value, its position among the circles
    np.testing.assert_array_equal(table.obs[OBS_LABEL_ID].to_numpy(), np.arange(1, len(ids) + 1))
    # a circle of the cell's area at its centroid covers most of the cell's own pixels
    lab = np.asarray(reader_tissue.labels["cell_labels"].data).astype(np.int64)
    m, _ = _by_hand(sdata, "cell_circles", 3, lab, olds)
    m0, _ = views.batch([3])
    assert ((m0[0, 0] > 0) == (m[0, 0] > 0)).mean() > 0.85


# --- Visium HD (cell segmentation polygons in full-resolution pixels, RGB image) --------------


@pytest.fixture(scope="module")
def visium_hd(visium_hd_folder, tmp_path_factory):
    root, ids, olds = visium_hd_folder
    sdata = vendor_read(sdio.visium_hd, root, load_segmentations_only=True)
    run = _pipeline(
        sdata,
        tmp_path_factory.mktemp("visium_hd"),
        table_key="cell_segmentations",
        roundtrip=False,
    )
    return sdata, run, ids, olds


def test_visium_hd_reader_cell_segmentations(visium_hd, reader_tissue):
    sdata, run, ids, olds = visium_hd
    _check_run(sdata, run, len(ids), table_key="cell_segmentations")
    table = sdata.tables["cell_segmentations"]
    info = table.uns[UNS_VIEWS]
    assert info["labels_key"] == "Synth_cell_segmentations"
    assert info["image_key"] == "Synth_full_image_normalized"
    assert info["regions"]["Synth_cell_segmentations"]["labels_source"] == "shapes rasterized"
    assert run["views"].morphology.shape[1] == 3  # the RGB image
    np.testing.assert_array_equal(table.obs["cell_id"].astype(str).to_numpy(), ids)
    # polygons traced from the synthetic cells: their masks are the cells'
    lab = np.asarray(reader_tissue.labels["cell_labels"].data).astype(np.int64)
    row = 9
    m, _ = _by_hand(
        sdata, "Synth_cell_segmentations", row, lab, olds, table_key="cell_segmentations"
    )
    m0, _ = run["views"].batch([row])
    assert ((m0[0, 0] > 0) == (m[0, 0] > 0)).mean() > 0.97


# --- the real CosMx crop (shared/data/cosmx_lung_mini) --------------------------------------


def test_real_cosmx_through_the_reader(cosmx_real_folder, tmp_path):
    sdata = vendor_read(sdio.cosmx, cosmx_real_folder, transcripts=False)
    assert sorted(sdata.labels) == ["2_labels", "3_labels"]
    run = _pipeline(sdata, tmp_path)
    _check_run(sdata, run, 120)
    assert sorted(sdata.tables["table"].uns[UNS_VIEWS]["labels_key"]) == ["2_labels", "3_labels"]
