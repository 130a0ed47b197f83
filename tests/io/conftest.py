"""Small vendor output folders written from the synthetic tissue, for spatialdata-io's readers.

Each folder holds only what its reader needs (see ``docs/instrument_data.md``), written once
per session: CosMx flat files (two FOVs), MERSCOPE, Xenium (XOA 2.0 layout), Visium HD
(cell segmentation outputs), and the real CosMx crop with the flat files its reader needs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

#: micron -> mosaic pixel (MERSCOPE's micron_to_mosaic_pixel_transform.csv)
MICRON_TO_PX = np.array([[2.0, 0.0, 4.0], [0.0, 2.0, 6.0], [0.0, 0.0, 1.0]])
#: Xenium microns per pixel (experiment.xenium "pixel_size")
XENIUM_PIXEL_SIZE = 0.2125
#: Offset of MERSCOPE EntityIDs (large integers written as text)
ENTITY_OFFSET = 10_000_000_000
#: The real CosMx crop (as tests/conftest.py finds it)
COSMX = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cosmx_lung_mini"


def vendor_read(reader, *args, **kwargs):
    """``reader(*args, **kwargs)`` (a spatialdata-io reader), skipped with the reason where the
    reader itself cannot run: spatialdata-io 0.7.1's CosMx and MERSCOPE readers call
    ``AnnData(..., dtype=...)``, which anndata >= 0.13 removed (the Python 3.12 stack)."""
    try:
        return reader(*args, **kwargs)
    except TypeError as err:
        if "unexpected keyword argument 'dtype'" not in str(err):
            raise
        pytest.skip(
            f"spatialdata_io.{reader.__name__} calls AnnData(..., dtype=...), which this "
            f"anndata removed ({err}): the reader's incompatibility, not madspatial's"
        )


@pytest.fixture(scope="session")
def reader_tissue():
    """The synthetic tissue every vendor folder is written from (120 cells, 231 x 231 px)."""
    import madspatial as mad

    return mad.datasets.synthetic_tissue(n_cells=120, seed=0)


def tissue_arrays(tissue):
    """``(image (4, y, x) uint16, labels, counts, row of each label id, gene names)``."""
    img = np.asarray(tissue.images["morphology"].data)
    lab = np.asarray(tissue.labels["cell_labels"].data)
    table = tissue.tables["table"]
    counts = np.asarray(table.X.todense() if hasattr(table.X, "todense") else table.X)
    by_id = dict(zip(table.obs["instance_id"].astype(int), range(table.n_obs)))
    return img, lab, counts, by_id, list(table.var_names)


def _contour(mask: np.ndarray) -> np.ndarray:
    """The outline (x, y) of a binary mask in spatialdata's pixel coordinates (centres at +0.5)."""
    from skimage.measure import find_contours

    ring = max(find_contours(np.pad(mask, 1).astype(float), 0.5), key=len) - 1 + 0.5
    return np.c_[ring[:, 1], ring[:, 0]]


def _write_10x_h5(path, counts: np.ndarray, barcodes, genes) -> None:
    """A 10x feature-barcode matrix (``matrix/`` CSC, genes x cells) as scanpy reads it."""
    import h5py
    from scipy.sparse import csr_matrix

    m = csr_matrix(np.asarray(counts, dtype=np.int32))  # cells x genes = CSC of genes x cells
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g["barcodes"] = np.array([str(b).encode() for b in barcodes])
        g["data"], g["indices"], g["indptr"] = m.data, m.indices, m.indptr
        g["shape"] = np.array([m.shape[1], m.shape[0]], dtype=np.int32)
        feats = g.create_group("features")
        feats["id"] = np.array([f"ENSG{i:08d}".encode() for i in range(len(genes))])
        feats["name"] = np.array([str(x).encode() for x in genes])
        feats["feature_type"] = np.array([b"Gene Expression"] * len(genes))
        feats["genome"] = np.array([b"GRCh38"] * len(genes))


# --- CosMx ---------------------------------------------------------------------------------


def write_cosmx(tissue, root, dataset="Synth"):
    """Two FOVs (left and right halves) as CosMx flat files; ids restart at 1 per FOV."""
    import tifffile

    img, lab, counts, by_id, genes = tissue_arrays(tissue)
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
        tifffile.imwrite(
            root / "CellComposite" / f"CellComposite_F{f:03d}.tif",
            np.flipud(np.moveaxis(crop, 0, -1)),
        )
        tifffile.imwrite(root / "CellLabels" / f"CellLabels_F{f:03d}.tif", np.flipud(lfov))
        for cid, oid in enumerate(old, start=1):
            yy, xx = np.nonzero(lfov == cid)
            meta.append(
                {
                    "fov": f,
                    "cell_ID": cid,
                    "CenterX_local_px": xx.mean(),
                    "CenterY_local_px": yy.mean(),
                    "CenterX_global_px": xx.mean() + x0,
                    "CenterY_global_px": yy.mean(),
                }
            )
            expr.append([f, cid, *counts[by_id[int(oid)]].astype(int)])
        fovs.append({"fov": f, "x_global_px": x0, "y_global_px": 0})
    pd.DataFrame(meta).to_csv(root / f"{dataset}_metadata_file.csv", index=False)
    pd.DataFrame(expr, columns=["fov", "cell_ID", *genes]).to_csv(
        root / f"{dataset}_exprMat_file.csv", index=False
    )
    pd.DataFrame(fovs).to_csv(root / f"{dataset}_fov_positions_file.csv", index=False)
    return len(meta)


@pytest.fixture(scope="session")
def cosmx_folder(reader_tissue, tmp_path_factory):
    """``(folder, n_cells)``: CosMx flat files of two FOVs."""
    root = tmp_path_factory.mktemp("vendor") / "cosmx"
    return root, write_cosmx(reader_tissue, root)


@pytest.fixture(scope="session")
def cosmx_real_folder(tmp_path_factory):
    """The real CosMx crop with the two flat files spatialdata_io.cosmx needs, written here.

    The crop (shared/data/cosmx_lung_mini) lacks ``*_exprMat_file.csv`` and
    ``*_metadata_file.csv``; both are written from its transcripts and label images
    (counts per cell, label centroids) beside copies of its images.
    """
    import tifffile

    if not COSMX.is_dir():
        pytest.skip(f"real CosMx data not found at {COSMX} (shared/data is absent)")
    root = tmp_path_factory.mktemp("vendor") / "Lung12"
    shutil.copytree(COSMX, root, ignore=shutil.ignore_patterns("*.md", "*_tx_file.csv"))
    tx = pd.read_csv(COSMX / "Lung12_tx_file.csv")
    tx = tx[tx["cell_ID"] > 0]
    counts = tx.groupby(["fov", "cell_ID"])["target"].value_counts().unstack(fill_value=0)
    meta = []
    for f in (2, 3):
        lab = tifffile.imread(root / "CellLabels" / f"CellLabels_F{f:03d}.tif")
        for cid in np.unique(lab[lab > 0]).astype(int):
            yy, xx = np.nonzero(lab == cid)
            meta.append(
                {
                    "fov": f,
                    "cell_ID": cid,
                    "CenterX_local_px": xx.mean(),
                    "CenterY_local_px": yy.mean(),
                    "CenterX_global_px": xx.mean() + 1000 * f,
                    "CenterY_global_px": yy.mean(),
                }
            )
    meta = pd.DataFrame(meta)
    counts = counts.reindex(pd.MultiIndex.from_frame(meta[["fov", "cell_ID"]]), fill_value=0)
    meta.to_csv(root / "Lung12_metadata_file.csv", index=False)
    counts.reset_index().to_csv(root / "Lung12_exprMat_file.csv", index=False)
    return root


# --- MERSCOPE ------------------------------------------------------------------------------


def write_merscope(tissue, root):
    """A MERSCOPE region folder: mosaics, micron transform, cell table, polygons in microns."""
    import geopandas as gpd
    import tifffile
    from shapely.geometry import MultiPolygon, Polygon

    img, lab, counts, by_id, genes = tissue_arrays(tissue)
    (root / "images").mkdir(parents=True)
    for stain, plane in zip(["DAPI", "PolyT", "Cellbound1", "Cellbound2"], img):
        tifffile.imwrite(root / "images" / f"mosaic_{stain}_z3.tif", plane)
    np.savetxt(root / "images" / "micron_to_mosaic_pixel_transform.csv", MICRON_TO_PX)
    inv = np.linalg.inv(MICRON_TO_PX)
    rows, polys, entity = [], [], []
    for oid in np.unique(lab[lab > 0]):
        ring = _contour(lab == oid)
        xy = np.c_[ring, np.ones(len(ring))] @ inv.T
        eid = str(ENTITY_OFFSET + int(oid))  # MERSCOPE EntityIDs: large integers as text
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
        [counts[by_id[int(e) - ENTITY_OFFSET]].astype(int) for e in entity],
        columns=genes,
        index=pd.Index(entity, name="cell"),
    )
    cbg.to_csv(root / "cell_by_gene.csv")
    return len(entity)


@pytest.fixture(scope="session")
def merscope_folder(reader_tissue, tmp_path_factory):
    """``(region folder, n_cells)`` of a MERSCOPE run."""
    root = tmp_path_factory.mktemp("vendor") / "20260101_run" / "region_0"
    return root, write_merscope(reader_tissue, root)


# --- Xenium --------------------------------------------------------------------------------


def write_xenium(tissue, root):
    """A Xenium output folder (XOA 2.0 layout, DAPI-only morphology), as small as the reader allows.

    ``spatialdata_io.xenium`` always opens ``cells.zarr.zip`` (cell ids, cell summary,
    label masks, polygon sets) and reads ``experiment.xenium``, ``cells.parquet``,
    ``cell_feature_matrix.h5``, ``cell_boundaries.parquet`` and ``nucleus_boundaries.parquet``
    (polygons in microns) and ``morphology_focus/morphology_focus_0000.ome.tif``. Returns the cell ids in table order
    and the label value of each (``1..n``, Xenium's polygon index + 1).
    """
    import tifffile
    import zarr
    from spatialdata_io.readers.xenium import cell_id_str_from_prefix_suffix_uint32

    img, lab, counts, by_id, genes = tissue_arrays(tissue)
    ps = XENIUM_PIXEL_SIZE
    (root / "morphology_focus").mkdir(parents=True)
    olds = np.unique(lab[lab > 0])
    n = len(olds)
    relabel = np.zeros(int(lab.max()) + 1, dtype=np.uint32)
    relabel[olds] = np.arange(1, n + 1)
    masks = relabel[lab]
    prefix = (np.arange(n, dtype=np.uint32) * 7919 + 40_000).astype(np.uint32)
    suffix = np.ones(n, dtype=np.uint32)
    ids = cell_id_str_from_prefix_suffix_uint32(prefix, suffix).astype(str)
    (root / "experiment.xenium").write_text(
        json.dumps({"pixel_size": ps, "analysis_sw_version": "xenium-2.0.0.10"})
    )
    store = zarr.storage.ZipStore(root / "cells.zarr.zip", mode="w")
    g = zarr.open_group(store, mode="w")
    g.create_array("cell_id", data=np.c_[prefix, suffix])
    cols = [
        "cell_centroid_x",
        "cell_centroid_y",
        "cell_area",
        "nucleus_centroid_x",
        "nucleus_centroid_y",
        "nucleus_area",
        "z_level",
        "nucleus_count",
    ]
    rows, verts = [], []
    for k, oid in enumerate(olds):
        yy, xx = np.nonzero(lab == oid)
        cx, cy, area = (xx.mean() + 0.5) * ps, (yy.mean() + 0.5) * ps, len(xx) * ps * ps
        rows.append([cx, cy, area, cx, cy, area, 0.0, 1.0])
        ring = _contour(lab == oid) * ps
        verts.append(
            pd.DataFrame(
                {
                    "cell_id": ids[k],
                    "vertex_x": ring[:, 0],
                    "vertex_y": ring[:, 1],
                    "label_id": k + 1,
                }
            )
        )
    summary = np.asarray(rows)
    g.create_array("cell_summary", data=summary).attrs["column_names"] = cols
    for mask in ("0", "1"):  # nuclei = cells here
        g.create_array(f"masks/{mask}", data=masks, chunks=masks.shape)
        g.create_array(f"polygon_sets/{mask}/cell_index", data=np.arange(n, dtype=np.uint32))
    store.close()
    pd.DataFrame(
        {
            "cell_id": ids,
            "x_centroid": summary[:, 0],
            "y_centroid": summary[:, 1],
            "transcript_counts": counts[[by_id[int(o)] for o in olds]].sum(axis=1),
            "cell_area": summary[:, 2],
            "nucleus_area": summary[:, 5],
        }
    ).to_parquet(root / "cells.parquet")
    verts = pd.concat(verts, ignore_index=True)
    for name in ("cell_boundaries", "nucleus_boundaries"):  # nuclei = cells here
        verts.to_parquet(root / f"{name}.parquet")
    _write_10x_h5(
        root / "cell_feature_matrix.h5", counts[[by_id[int(o)] for o in olds]], ids, genes
    )
    tifffile.imwrite(root / "morphology_focus" / "morphology_focus_0000.ome.tif", img[0])
    return ids, olds


@pytest.fixture(scope="session")
def xenium_folder(reader_tissue, tmp_path_factory):
    """``(folder, cell ids, tissue label id of each)`` of a Xenium run."""
    root = tmp_path_factory.mktemp("vendor") / "xenium_outs"
    ids, olds = write_xenium(reader_tissue, root)
    return root, ids, olds


# --- Visium HD -----------------------------------------------------------------------------


def write_visium_hd(tissue, root, dataset="Synth"):
    """Visium HD cell segmentation outputs and an H&E-like RGB full-resolution image.

    ``spatialdata_io.visium_hd(..., load_segmentations_only=True)`` needs
    ``<dataset>_feature_slice.h5`` (its metadata: the layout's file format),
    ``segmented_outputs/filtered_feature_cell_matrix.h5``,
    ``segmented_outputs/cell_segmentations.geojson`` (polygons in full-resolution pixels),
    ``segmented_outputs/spatial/scalefactors_json.json`` and the image in
    ``microscope_image/``. Returns the cell ids (``cellid_000000001-1``, ...) and the tissue
    label id of each.
    """
    import h5py
    import tifffile

    img, lab, counts, by_id, genes = tissue_arrays(tissue)
    seg = root / "segmented_outputs"
    (seg / "spatial").mkdir(parents=True)
    (root / "microscope_image").mkdir()
    with h5py.File(root / f"{dataset}_feature_slice.h5", "w") as f:
        f.attrs["metadata_json"] = json.dumps(
            {"hd_layout_json": json.dumps({"file_format": "1.0"})}
        )
    (seg / "spatial" / "scalefactors_json.json").write_text(
        json.dumps(
            {
                "tissue_hires_scalef": 0.5,
                "tissue_lowres_scalef": 0.1,
                "spot_diameter_fullres": 7.3,
                "bin_size_um": 2.0,
                "microns_per_pixel": 0.274,
            }
        )
    )
    rgb = np.stack([img[c] / max(float(np.percentile(img[c], 99.9)), 1.0) for c in range(3)], -1)
    tifffile.imwrite(
        root / "microscope_image" / "image.tif", (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    )
    olds = np.unique(lab[lab > 0])
    features = [
        {
            "type": "Feature",
            "properties": {"cell_id": k + 1},
            "geometry": {"type": "Polygon", "coordinates": [_contour(lab == o).tolist()]},
        }
        for k, o in enumerate(olds)
    ]
    (seg / "cell_segmentations.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": features})
    )
    ids = np.array([f"cellid_{k + 1:09d}-1" for k in range(len(olds))])
    _write_10x_h5(
        seg / "filtered_feature_cell_matrix.h5", counts[[by_id[int(o)] for o in olds]], ids, genes
    )
    return ids, olds


@pytest.fixture(scope="session")
def visium_hd_folder(reader_tissue, tmp_path_factory):
    """``(folder, cell ids, tissue label id of each)`` of a Visium HD run."""
    root = tmp_path_factory.mktemp("vendor") / "visium_hd_outs"
    ids, olds = write_visium_hd(reader_tissue, root)
    return root, ids, olds
