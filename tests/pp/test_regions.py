"""Tables over several regions, labels on other pixel grids, pyramid levels (issue 12)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import spatialdata
from spatialdata.models import Image2DModel, Labels2DModel, TableModel
from spatialdata.transformations import Affine, Identity, Scale, Translation

import madspatial as mad
from madspatial._constants import UNS_VIEWS
from madspatial._elements import pick_table

from .conftest import disk_tissue

SIZES = dict(morphology_size=28, microenvironment_size=56, n_neighbors=4)


def _fov_sdata(n_fov: int = 2):
    """CosMx-like: one image and one labels element per FOV, ids restarting per FOV, one table."""
    images, labels, obs, truths = {}, {}, [], []
    for f in range(1, n_fov + 1):
        _sd, truth = disk_tissue(shape=(120, 120), shuffle_table=False, seed=f)
        truths.append(truth)
        shift = Translation([130.0 * (f - 1), 0.0], axes=("x", "y"))
        images[f"{f}_image"] = Image2DModel.parse(
            truth["image"],
            dims=("c", "y", "x"),
            c_coords=["value", "ramp"],
            transformations={str(f): Identity(), "global": shift},
        )
        labels[f"{f}_labels"] = Labels2DModel.parse(
            truth["labels"], dims=("y", "x"), transformations={str(f): Identity(), "global": shift}
        )
        obs.append(pd.DataFrame({"cell_ID": truth["ids"], "fov": f"{f}", "region": f"{f}_labels"}))
    df = pd.concat(obs, ignore_index=True)
    order = np.random.default_rng(0).permutation(len(df))  # FOVs interleaved in the table
    df = df.iloc[order].reset_index(drop=True)
    df.index = df.index.astype(str)
    df["region"] = pd.Categorical(df["region"])
    table = TableModel.parse(
        ad.AnnData(obs=df), region=sorted(labels), region_key="region", instance_key="cell_ID"
    )
    sdata = spatialdata.SpatialData(images=images, labels=labels, tables={"table": table})
    return sdata, truths


def _single(truth, **kw):
    sd = mad.io.sdata_from_arrays(truth["image"], truth["labels"], instance_ids=truth["ids"])
    mad.pp.cell_views(sd, image_key="morphology", labels_key="cell_labels", **SIZES, **kw)
    return mad.io.read_views(sd)


def test_table_over_two_fovs_one_store_in_table_order():
    """Before: "table 'table' also annotates other regions ... Subset the table"."""
    sdata, truths = _fov_sdata()
    mad.pp.cell_views(sdata, labels_key="1_labels", **SIZES)
    table = sdata.tables["table"]
    views = mad.io.read_views(sdata)
    assert len(views) == table.n_obs == sum(len(t["ids"]) for t in truths)
    info = table.uns[UNS_VIEWS]
    assert info["labels_key"] == ["1_labels", "2_labels"]
    assert info["image_key"] == ["1_image", "2_image"]  # each region found its own image
    # every row's views are those of its FOV cut alone
    for f, truth in enumerate(truths, start=1):
        alone = _single(truth)
        rows = np.flatnonzero(table.obs["fov"].to_numpy() == str(f))
        ids = table.obs["cell_ID"].to_numpy()[rows]
        m, e = views.batch(rows)
        m1, e1 = alone.batch(ids - 1)  # truth ids are 1..n in table order
        np.testing.assert_array_equal(m, m1)
        np.testing.assert_array_equal(e, e1)
        assert info["regions"][f"{f}_labels"]["n_cells"] == len(truth["ids"])
    np.testing.assert_array_equal(views.instance_id, table.obs["cell_ID"].to_numpy())


def test_regions_selects_a_subset_and_zarr_store(tmp_path):
    sdata, truths = _fov_sdata()
    mad.pp.cell_views(
        sdata, table_key="table", regions=["2_labels"], store=tmp_path / "v.zarr", **SIZES
    )
    table = sdata.tables["table"]
    assert table.n_obs == len(truths[1]["ids"])
    assert set(table.obs["region"].astype(str)) == {"2_labels"}
    views = mad.io.read_views(sdata)
    assert views.path is not None and len(views) == table.n_obs
    with pytest.raises(ValueError, match=r"regions \['9_labels'\] are not annotated by table"):
        mad.pp.cell_views(sdata, table_key="table", regions=["9_labels"], **SIZES)


def test_table_choice_by_rows_then_ambiguous():
    sdata, _ = _fov_sdata()
    empty = TableModel.parse(
        ad.AnnData(obs=pd.DataFrame({"region": pd.Categorical(["2_labels"]), "cell_ID": [1]})),
        region="2_labels",
        region_key="region",
        instance_key="cell_ID",
    )
    sdata.tables["other"] = empty  # annotates 2_labels only
    assert pick_table(sdata, "1_labels") == "table"
    with pytest.raises(
        ValueError, match=r"several tables .* annotate '2_labels': \['table', 'other'\]"
    ):
        pick_table(sdata, "2_labels")


@pytest.fixture
def small():
    return disk_tissue(shape=(140, 140), shuffle_table=False)


def _labels_as(sdata, lab, transform):
    sdata.labels["cell_labels"] = Labels2DModel.parse(
        lab, dims=("y", "x"), transformations={"global": transform}
    )


def test_labels_at_half_scale_are_resampled(small):
    """Before: "labels map to the image pixel grid by a transformation that is not the identity"."""
    sdata, truth = small
    lab = truth["labels"]
    reference = _single(truth)
    # the same segmentation made on a 2x downsampled image, upsampled back: the reference
    coarse = lab[::2, ::2]
    up = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)
    ref_up = mad.io.sdata_from_arrays(truth["image"], up, instance_ids=truth["ids"])
    mad.pp.cell_views(ref_up, image_key="morphology", labels_key="cell_labels", **SIZES)
    _labels_as(sdata, coarse, Scale([2.0, 2.0], axes=("y", "x")))
    mad.pp.cell_views(sdata, image_key="morphology", labels_key="cell_labels", **SIZES)
    views, want = mad.io.read_views(sdata), mad.io.read_views(ref_up)
    np.testing.assert_array_equal(views.morphology, want.morphology)
    np.testing.assert_array_equal(views.microenvironment, want.microenvironment)
    src = sdata.tables["table"].uns[UNS_VIEWS]["regions"]["cell_labels"]["labels_source"]
    assert src.startswith("labels resampled") and "2.0" in src
    assert len(reference) == len(views)


def test_rotated_labels_through_an_affine(small):
    sdata, truth = small
    lab = truth["labels"]
    h, w = lab.shape
    # labels stored rotated by 90 degrees; the affine maps them back onto the image
    rot = np.rot90(lab)  # rot[i, j] = lab[j, w - 1 - i]
    # label px (u, v) = (x_r, y_r) -> image (x, y) = (w - v, u)
    aff = Affine(
        np.array([[0, -1, w], [1, 0, 0], [0, 0, 1]], float),
        input_axes=("x", "y"),
        output_axes=("x", "y"),
    )
    _labels_as(sdata, rot, aff)
    mad.pp.cell_views(sdata, image_key="morphology", labels_key="cell_labels", **SIZES)
    got, want = mad.io.read_views(sdata), _single(truth)
    np.testing.assert_array_equal(got.morphology, want.morphology)
    assert h == w


def test_multiscale_level_and_pixel_size(small):
    sdata, truth = small
    sdata.images["morphology"] = Image2DModel.parse(
        truth["image"], dims=("c", "y", "x"), scale_factors=[2], c_coords=["value", "ramp"]
    )
    mad.pp.cell_views(sdata, image_key="morphology", labels_key="cell_labels", **SIZES)
    finest = mad.io.read_views(sdata)
    np.testing.assert_array_equal(finest.morphology, _single(truth).morphology)
    for kw in ({"level": 1}, {"pixel_size": 2.2}):
        mad.pp.cell_views(
            sdata, image_key="morphology", labels_key="cell_labels", overwrite=True, **SIZES, **kw
        )
        info = sdata.tables["table"].uns[UNS_VIEWS]["regions"]["cell_labels"]
        assert info["level"] == 1 and info["image_shape"] == [70, 70]
        assert info["labels_source"].startswith("labels resampled")
    with pytest.raises(ValueError, match=r"level must be 0\.\.1 for image 'morphology'"):
        mad.pp.cell_views(sdata, image_key="morphology", labels_key="cell_labels", level=3, **SIZES)


def test_normalize_keeps_uint16_writes_a_pyramid_and_views_accept_it(tmp_path):
    """Before: normalize returned float32 (2x the bytes of uint16), single-scale."""
    sdata, truth = disk_tissue(shape=(1100, 100), shuffle_table=False)
    raw = (truth["image"] * 3000 + 100).astype(np.uint16)
    sdata.images["morphology"] = Image2DModel.parse(
        raw, dims=("c", "y", "x"), c_coords=["value", "ramp"]
    )
    mad.pp.normalize(sdata, image_key="morphology", flatfield=False)
    mad.pp.normalize(sdata, image_key="morphology", flatfield=False, dtype="float32", key_added="f")
    out = sdata.images["morphology_normalized"]
    assert list(out.children) == ["scale0", "scale1"]
    assert out["scale0"]["image"].dtype == np.uint16 and out["scale1"]["image"].shape == (
        2,
        550,
        50,
    )
    kw = dict(labels_key="cell_labels", inplace=False, **SIZES)
    got = mad.pp.cell_views(sdata, image_key="morphology_normalized", **kw)
    ref = mad.pp.cell_views(sdata, image_key="f", **kw)
    diff = np.abs(got.morphology.astype(int) - ref.morphology.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01  # uint16 quantisation only
    sdata.write(tmp_path / "s.zarr")
    back = spatialdata.read_zarr(tmp_path / "s.zarr")  # the record is back from sdata.attrs
    again = mad.pp.cell_views(back, image_key="morphology_normalized", **kw)
    np.testing.assert_array_equal(again.morphology, got.morphology)


def test_a_named_image_must_cover_every_region():
    sdata, _ = _fov_sdata()
    with pytest.raises(ValueError, match=r"image '1_image' does not cover region '2_labels'"):
        mad.pp.cell_views(sdata, image_key="1_image", table_key="table", **SIZES)
    mad.pp.cell_views(
        sdata,
        image_key={"1_labels": "1_image", "2_labels": "2_image"},
        table_key="table",
        **SIZES,
    )
    assert sdata.tables["table"].uns[UNS_VIEWS]["image_key"] == ["1_image", "2_image"]


def _same_views(a, b):
    n = len(a)
    assert len(b) == n
    for x, y in zip(a.batch(np.arange(n)), b.batch(np.arange(n))):
        np.testing.assert_array_equal(x, y)
    for name in ("instance_id", "centroid", "window_px"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_multi_region_store_is_streamed_and_equals_the_in_memory_one(tmp_path):
    """Before: the views of every region were joined in memory, then saved (no resume,
    memory growing with the cells); now each region's tiles go into the store as they are
    cut, whole chunks region by region and the leftover rows at the end."""
    sdata, _ = _fov_sdata()
    mem = mad.pp.cell_views(sdata, table_key="table", inplace=False, **SIZES)
    path = tmp_path / "v.zarr"
    kw = dict(chunk_size=7, cells_per_tile=7)  # 25 cells per FOV: 3 whole chunks + 4 rows
    mad.pp.cell_views(sdata, table_key="table", store=path, **SIZES, **kw)
    views = mad.io.read_views(sdata)
    assert views.path == str(path.resolve()) and views.attrs["complete"]
    _same_views(views, mem)
    # storage: region 1's whole chunks, region 2's, then the 4 + 4 leftover rows
    region = sdata.tables["table"].obs["region"].astype(str).to_numpy()
    stored = region[views.storage_order]
    assert (stored[:21] == "1_labels").all() and (stored[21:42] == "2_labels").all()
    assert sorted(stored[42:]) == ["1_labels"] * 4 + ["2_labels"] * 4
    info = sdata.tables["table"].uns[UNS_VIEWS]
    assert info["n_cells"] == 50 and set(info["regions"]) == {"1_labels", "2_labels"}
    assert info["store"] == str(path.resolve())
    assert info["regions"]["2_labels"]["n_cells"] == 25


def test_multi_region_store_memory_stays_flat(tmp_path):
    """Six FOVs, 15 MB of views: the run never holds more than a few chunks of them."""
    import tracemalloc

    sdata, _ = _fov_sdata(6)
    big = dict(SIZES, microenvironment_size=224)
    nbytes = 150 * 2 * 224**2  # the microenvironment views alone
    mad.pp.cell_views(
        sdata,
        table_key="table",
        store=tmp_path / "warm.zarr",
        chunk_size=7,
        cells_per_tile=7,
        n_jobs=1,
        regions=["1_labels"],
        inplace=False,
        **big,
    )
    tracemalloc.start()  # (after a first run: imports and caches are not counted)
    try:
        mad.pp.cell_views(
            sdata,
            table_key="table",
            store=tmp_path / "v.zarr",
            chunk_size=7,
            cells_per_tile=7,
            n_jobs=1,
            **big,
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(mad.io.read_views(sdata)) == 150
    assert peak < nbytes / 3, (peak, nbytes)  # joined in memory first: > nbytes


class _Killed(Exception):
    pass


def test_multi_region_store_resumes_after_an_interruption(tmp_path, monkeypatch):
    from madspatial.pp import _cell_views

    sdata, _ = _fov_sdata()
    kw = dict(table_key="table", chunk_size=7, cells_per_tile=7, n_jobs=1, **SIZES)
    mem = mad.pp.cell_views(sdata, inplace=False, **kw)
    original, calls = _cell_views._run_task, []

    def dies_on_the_fifth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5 and not resuming:
            raise _Killed("killed")
        return original(*args, **kwargs)

    resuming = False

    monkeypatch.setattr(_cell_views, "_run_task", dies_on_the_fifth)
    path = tmp_path / "v.zarr"
    with pytest.raises(_Killed):
        mad.pp.cell_views(sdata, store=path, inplace=False, **kw)
    with pytest.raises(ValueError, match="incomplete"):
        mad.io.read_views(path)
    calls.clear()
    resuming = True
    resumed = mad.pp.cell_views(sdata, store=path, inplace=False, **kw)
    # 8 tasks (per FOV 3 whole chunks and its 4 leftover rows): the 3 chunks written before
    # the interruption are not cut again (FOV 1's leftover rows were not written yet: cut again)
    assert len(calls) == 5
    _same_views(resumed, mem)
    # the complete store is reused, nothing is cut
    calls.clear()
    mad.pp.cell_views(sdata, store=path, inplace=False, **kw)
    assert calls == []


def test_multi_region_on_the_fly_is_a_clear_error(tmp_path, monkeypatch):
    """Before: store='on_the_fly' with several regions wrote a zarr folder named 'on_the_fly'."""
    monkeypatch.chdir(tmp_path)
    sdata, _ = _fov_sdata()
    with pytest.raises(ValueError, match=r"store='on_the_fly' cuts the views of one label image"):
        mad.pp.cell_views(sdata, table_key="table", store="on_the_fly", **SIZES)
    assert not (tmp_path / "on_the_fly").exists()
