"""``madspatial prepare`` on multi-image data as spatialdata-io writes it (CosMx: one image and
one labels element per FOV, one table over all): every image the regions need is normalized
and the views of every region go into one store.

Before: ``madspatial prepare: error: the tables of SDATA annotate several segmentations
['1_labels', '2_labels']; pass labels_key (--labels-key) to choose one.``
"""

from __future__ import annotations

import numpy as np
import pytest

import madspatial as mad
from madspatial._constants import UNS_VIEWS
from madspatial.cli import main

from .conftest import vendor_read

sdio = pytest.importorskip(
    "spatialdata_io", reason="spatialdata-io is not installed (pip install 'madspatial[io]')"
)
pytest.importorskip("tifffile", reason="tifffile is needed to write vendor images")

pytestmark = pytest.mark.filterwarnings("ignore")

SIZES = ["--morphology-size", "28", "--microenvironment-size", "56", "--n-neighbors", "6"]
TINY = [
    "--model",
    "vit_pico",
    "--max-steps",
    "1",
    "--batch-size",
    "16",
    "--n-prototypes",
    "16",
    "--head-hidden-dim",
    "16",
    "--head-bottleneck-dim",
    "8",
]


@pytest.fixture(scope="module")
def cosmx_zarr(cosmx_folder, tmp_path_factory):
    """The two-FOV CosMx folder read with spatialdata_io.cosmx and written as a zarr."""
    root, n = cosmx_folder
    path = tmp_path_factory.mktemp("prepare") / "cosmx.zarr"
    vendor_read(sdio.cosmx, root, transcripts=False).write(path)
    return path, n


def test_prepare_two_fovs_into_one_store(cosmx_zarr, tmp_path, capsys):
    import spatialdata

    path, n = cosmx_zarr
    out = tmp_path / "views.zarr"
    assert main(["-q", "prepare", str(path), "--out", str(out), *SIZES]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote the views of {n} cells of table 'table' (2 regions: ")
    for f in (1, 2):  # every FOV's image was normalized and cut
        assert f"'{f}_labels' / '{f}_image_normalized'" in printed, printed
    store = mad.io.read_views(out)
    assert len(store) == n and store.attrs["complete"]
    assert sorted(store.attrs["regions"]) == ["1_labels", "2_labels"]
    # the same views as the library's calls on the same data (normalize each image, then views)
    sdata = spatialdata.read_zarr(path)
    for key in ("1_image", "2_image"):
        mad.pp.normalize(sdata, image_key=key)
    mine = mad.pp.cell_views(
        sdata,
        table_key="table",
        inplace=False,
        morphology_size=28,
        microenvironment_size=56,
        n_neighbors=6,
    )
    for a, b in zip(store.batch(np.arange(n)), mine.batch(np.arange(n))):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(store.instance_id, mine.instance_id)


def test_prepare_regions_subset_then_pretrain_and_embed_the_zarr(cosmx_zarr, tmp_path, capsys):
    import shutil

    import spatialdata

    src, _n = cosmx_zarr
    path = tmp_path / "cosmx.zarr"
    shutil.copytree(src, path)
    out = tmp_path / "views.zarr"
    argv = ["-q", "prepare", str(path), "--out", str(out), "--regions", "2_labels", *SIZES]
    assert main([*argv, "--write-table"]) == 0
    table = spatialdata.read_zarr(path).tables["table"]
    n2 = int((table.obs["fov_labels"].astype(str) == "2_labels").sum())
    assert table.n_obs == n2 == len(mad.io.read_views(out))  # only FOV 2's rows and views
    assert table.uns[UNS_VIEWS]["image_key"] == "2_image_normalized"
    capsys.readouterr()
    model, emb = tmp_path / "model", tmp_path / "emb.h5ad"
    assert main(["-q", "pretrain", str(path), "--out", str(model), *TINY]) == 0
    assert main(["-q", "embed", str(path), "--model", str(model), "--out", str(emb)]) == 0
    import anndata as ad

    assert ad.read_h5ad(emb).obsm["X_mad"].shape[0] == n2


def test_prepare_real_cosmx_both_fovs(cosmx_real_folder, tmp_path, capsys):
    path = tmp_path / "lung.zarr"
    vendor_read(sdio.cosmx, cosmx_real_folder, transcripts=False).write(path)
    out = tmp_path / "views.zarr"
    assert main(["-q", "prepare", str(path), "--out", str(out), *SIZES]) == 0
    assert "wrote the views of 120 cells of table 'table' (2 regions: " in capsys.readouterr().out
    store = mad.io.read_views(out)
    assert len(store) == 120 and sorted(store.attrs["regions"]) == ["2_labels", "3_labels"]
    assert store.n_channels == 3  # the RGB composite
