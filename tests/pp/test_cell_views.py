"""mad.pp.cell_views on procedural disk tissues with exactly known centres and values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_erosion

import madspatial as mad
from madspatial._constants import OBS_BORDER, UNS_VIEWS
from madspatial.pp import _cell_views

from .conftest import disk_tissue

SE, SM = 224, 70


@pytest.fixture(scope="module")
def tissue():
    return disk_tissue()


@pytest.fixture(scope="module")
def run(tissue):
    """The default run (in memory), its store and the table."""
    sdata, truth = tissue
    mad.pp.cell_views(sdata, image_key="morphology", labels_key="cell_labels")
    table = sdata.tables["table"]
    return sdata, truth, table, mad.io.read_views(sdata)


def _truth_rows(truth, store):
    """Index into the truth arrays of each store row (rows follow the shuffled table)."""
    return store.instance_id - 1


def test_shapes_dtypes_and_table_order(run):
    _, truth, table, store = run
    n = table.n_obs
    assert len(store) == n == len(truth["ids"])
    assert store.morphology.shape == (n, 2, SM, SM) and store.morphology.dtype == np.uint8
    assert store.microenvironment.shape == (n, 2, SE, SE)
    assert store.microenvironment.dtype == np.uint8
    np.testing.assert_array_equal(store.instance_id, table.obs["instance_id"].to_numpy())
    assert not np.array_equal(store.instance_id, np.sort(store.instance_id))  # really shuffled
    rows = _truth_rows(truth, store)
    np.testing.assert_allclose(store.centroid, truth["centres"][rows])
    assert store.channel_names == ["value", "ramp"]
    assert store.attrs["n_neighbors"] == 25
    info = table.uns[UNS_VIEWS]
    assert info["store"].startswith("memory:") and info["n_cells"] == n
    assert info["missing"]["rows_without_labels"] == 0


def test_morphology_mask_exact_zero_outside_and_values_inside(run):
    _, truth, _, store = run
    rows = _truth_rows(truth, store)
    w_m = store.attrs["morphology_window_px"]
    # Disks of radius 6 (13 px wide): the extent quantile times 1.1 (up to the 0.4% of
    # the rational rescaling factor).
    assert w_m == pytest.approx(13 * 1.1, rel=4e-3)
    scale = SM / w_m
    for i in range(0, len(store), 7):
        morph = store.morphology[i]
        inside = morph[0] > 0
        # Outside the cell every channel is exactly 0, even the ramp channel and the
        # background (0.05) of channel 0 that surround the cell in the image.
        assert not morph[:, ~inside].any()
        area = (2 * truth["radii"][rows[i]] + 1) ** 2 * np.pi / 4
        assert inside.sum() == pytest.approx(area * scale**2, rel=0.15)
        # Inside, away from the edge, the value is the cell's normalized intensity * 255.
        # The nearest-neighbour mask reaches half an image pixel past the last pixel centre
        # and bilinear mixes over one more, so "away" is 1.5 image pixels.
        core = binary_erosion(inside, iterations=int(np.ceil(1.5 * scale)))
        assert core.sum() > 0.3 * inside.sum()
        expected = np.round(truth["values"][rows[i]] * 255)
        assert np.abs(morph[0][core].astype(int) - expected).max() <= 1


def test_views_are_centred_on_the_centroid(run):
    _, truth, _, store = run
    rows = _truth_rows(truth, store)
    s_e = SE / store.attrs["window_px"]
    c_m, c_e = (SM - 1) / 2, (SE - 1) / 2
    for i in range(0, len(store), 5):
        mask = store.morphology[i][0] > 0
        yy, xx = np.nonzero(mask)
        # The crop origin is rounded to the rescaled grid: at most half an output pixel off.
        assert abs(yy.mean() - c_m) <= 0.6 and abs(xx.mean() - c_m) <= 0.6
        micro = store.microenvironment[i][0].astype(int)
        own = np.abs(micro - np.round(truth["values"][rows[i]] * 255)) <= 1
        yy, xx = np.nonzero(binary_erosion(own, iterations=2))
        near = np.hypot(yy - c_e, xx - c_e) < 6 * s_e  # the cell itself, not a look-alike
        assert abs(yy[near].mean() - c_e) <= 0.75 and abs(xx[near].mean() - c_e) <= 0.75


def test_window_holds_n_neighbors(run):
    """By construction the median cell's window holds exactly n_neighbors centroids."""
    _, truth, _, store = run
    half = store.attrs["window_px"] / 2
    c = truth["centres"]
    d = np.abs(c[:, None, :] - c[None, :, :]).max(axis=2)
    counts = (d <= half + 1e-9).sum(axis=1) - 1
    assert np.median(counts) >= 25
    assert np.mean(counts >= 25) >= 0.5 and np.mean(counts <= 25) >= 0.45


def test_border_flag_and_zero_padding(run):
    _, truth, table, store = run
    border = table.obs[OBS_BORDER].to_numpy()
    assert border.dtype == bool
    half = store.window_px / 2
    cx, cy = store.centroid.T
    h, w = truth["labels"].shape
    expect = (cx - half < -0.5) | (cy - half < -0.5) | (cx + half > w - 0.5) | (cy + half > h - 0.5)
    np.testing.assert_array_equal(border, expect)
    assert 0 < border.sum() < len(border)
    # The top-left-most cell's window starts above/left of the image: its first rows and
    # columns are zero padding, although the image background there is 0.05 (13 of 255).
    i = int(np.argmin(cx + cy))
    micro = store.microenvironment[i]
    pad_y = int((half[i] - cy[i] - 0.5) * SE / store.window_px[i]) - 1
    pad_x = int((half[i] - cx[i] - 0.5) * SE / store.window_px[i]) - 1
    assert pad_y > 2 and pad_x > 2
    assert not micro[:, :pad_y].any() and not micro[:, :, :pad_x].any()
    assert micro[0, pad_y + 4 :, pad_x + 4 :].min() >= 12  # in the image: background or cells


def test_tiles_give_identical_views(tissue, run, monkeypatch):
    """Rescale-once-then-crop holds to the last bit whatever the tiling (small tiles, split regions)."""
    sdata, _ = tissue
    ref = run[3]
    monkeypatch.setattr(_cell_views, "MAX_RESCALED_SIDE", 300)  # force split regions too
    tiled = mad.pp.cell_views(
        sdata,
        image_key="morphology",
        labels_key="cell_labels",
        chunk_size=8,
        cells_per_tile=16,
        n_jobs=2,
        inplace=False,
    )
    np.testing.assert_array_equal(tiled.morphology, ref.morphology)
    np.testing.assert_array_equal(tiled.microenvironment, ref.microenvironment)


def test_zarr_store_round_trip_and_lazy(tissue, run, tmp_path):
    sdata, _ = tissue
    ref = run[3]
    path = tmp_path / "views.zarr"
    mad.pp.cell_views(
        sdata,
        image_key="morphology",
        labels_key="cell_labels",
        store=path,
        chunk_size=16,
        cells_per_tile=32,
        key_added="views_zarr",
    )
    table = sdata.tables["table"]
    assert table.uns["views_zarr"]["store"] == str(path)
    store = mad.io.read_views(sdata, key="views_zarr")
    assert store.path == str(path) and not store.in_memory
    import zarr

    assert isinstance(store.morphology._raw, zarr.Array)  # lazy: nothing read yet
    idx = np.array([5, 0, 77, 5, 140])
    m, e = store.batch(idx)
    rm, re_ = ref.batch(idx)
    np.testing.assert_array_equal(m, rm)
    np.testing.assert_array_equal(e, re_)
    np.testing.assert_array_equal(store.morphology[3], ref.morphology[3])
    np.testing.assert_array_equal(store.microenvironment[10:20], ref.microenvironment[10:20])
    np.testing.assert_array_equal(store.instance_id, ref.instance_id)
    # Storage order is a permutation (tiles) and reading along it returns the same rows.
    order = store.storage_order
    assert sorted(order) == list(range(len(store)))
    np.testing.assert_array_equal(store.batch(order[:16])[0], ref.morphology[order[:16]])
    again = mad.io.read_views(str(path))
    np.testing.assert_array_equal(again.batch([1])[1], ref.batch([1])[1])


def test_interrupted_store_resumes_without_recomputing(tissue, run, tmp_path, monkeypatch):
    sdata, _ = tissue
    ref = run[3]
    path = tmp_path / "resume.zarr"
    kw = dict(
        image_key="morphology",
        labels_key="cell_labels",
        store=path,
        chunk_size=16,
        cells_per_tile=32,
        inplace=False,
    )
    original = _cell_views._run_task
    calls = []

    def flaky(start, *args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated interruption")
        calls.append(start)
        return original(start, *args, **kwargs)

    monkeypatch.setattr(_cell_views, "_run_task", flaky)
    with pytest.raises(KeyboardInterrupt):
        mad.pp.cell_views(sdata, **kw)
    with pytest.raises(ValueError, match="incomplete"):
        mad.io.read_views(path)
    first = list(calls)
    assert len(first) == 2

    calls.clear()

    def counting(start, *args, **kwargs):
        calls.append(start)
        return original(start, *args, **kwargs)

    monkeypatch.setattr(_cell_views, "_run_task", counting)
    store = mad.pp.cell_views(sdata, **kw)
    n_tasks = -(-len(ref) // 32)
    assert len(calls) == n_tasks - 2 and not set(calls) & set(first)
    np.testing.assert_array_equal(store.morphology[:], ref.morphology)
    np.testing.assert_array_equal(store.microenvironment[:], ref.microenvironment)
    calls.clear()
    mad.pp.cell_views(sdata, **kw)  # complete store: reused, nothing recomputed
    assert calls == []
    with pytest.raises(
        FileExistsError, match=r"made from different parameters \(n_neighbors 25 -> 10;.*not reused"
    ):
        mad.pp.cell_views(sdata, **{**kw, "n_neighbors": 10})


def test_per_cell_windows(tissue):
    sdata, truth = tissue
    store = mad.pp.cell_views(
        sdata,
        image_key="morphology",
        labels_key="cell_labels",
        microenvironment_window="cell",
        morphology_window="cell",
        inplace=False,
    )
    assert store.window_px.std() > 0  # each cell its own window
    rows = store.instance_id - 1
    for i in range(0, len(store), 11):
        morph = store.morphology[i]
        inside = morph[0] > 0
        assert not morph[:, ~inside].any()
        # A tight crop (extent * 1.1) fills the view with the disk: pi/4 / 1.1^2 of the area.
        assert inside.mean() == pytest.approx(np.pi / 4 / 1.21, abs=0.08)
        yy, xx = np.nonzero(inside)
        assert abs(yy.mean() - (SM - 1) / 2) <= 0.75 and abs(xx.mean() - (SM - 1) / 2) <= 0.75
        centre = store.microenvironment[i][0, SE // 2 - 2 : SE // 2 + 2, SE // 2 - 2 : SE // 2 + 2]
        assert np.abs(centre.astype(int) - np.round(truth["values"][rows[i]] * 255)).max() <= 1


def test_cell_size_stays_visible_in_slide_window():
    radii = np.random.default_rng(1).choice([3, 8], size=200)
    sdata, truth = disk_tissue(radii=radii, spacing=24, shape=(240, 240))
    store = mad.pp.cell_views(
        sdata, image_key="morphology", labels_key="cell_labels", inplace=False
    )
    r = truth["radii"][store.instance_id - 1]
    area = (store.morphology[:, 0] > 0).sum(axis=(1, 2))
    assert area[r == 3].max() < area[r == 8].min()


def test_integer_translation_of_labels_is_accepted(make_disks):
    from spatialdata.models import Labels2DModel
    from spatialdata.transformations import Translation

    sdata, truth = make_disks(shape=(200, 200), shuffle_table=False)
    ref = mad.pp.cell_views(sdata, image_key="morphology", labels_key="cell_labels", inplace=False)
    lab = truth["labels"]
    crop = lab[3:, 2:]  # the labels cover a sub-region, placed by an integer translation
    assert not lab[:3].any() and not lab[:, :2].any()
    sdata.labels["cell_labels"] = Labels2DModel.parse(
        crop, dims=("y", "x"), transformations={"global": Translation([2, 3], axes=("x", "y"))}
    )
    moved = mad.pp.cell_views(
        sdata, image_key="morphology", labels_key="cell_labels", inplace=False
    )
    np.testing.assert_allclose(moved.centroid, ref.centroid)
    np.testing.assert_array_equal(moved.morphology, ref.morphology)
    np.testing.assert_array_equal(moved.microenvironment, ref.microenvironment)


def test_lazy_dask_image_from_zarr_matches_in_memory(make_disks, tmp_path):
    import spatialdata as sd

    sdata, _ = make_disks(shape=(200, 200))
    mad.pp.normalize(sdata, image_key="morphology", flatfield=False)
    ref = mad.pp.cell_views(
        sdata, image_key="morphology_normalized", labels_key="cell_labels", inplace=False
    )
    sdata.write(tmp_path / "t.zarr")
    back = sd.read_zarr(tmp_path / "t.zarr")
    back.images["morphology_normalized"] = back.images["morphology_normalized"].chunk(
        {"y": 64, "x": 64}
    )
    back.labels["cell_labels"] = back.labels["cell_labels"].chunk({"y": 50, "x": 50})
    got = mad.pp.cell_views(
        back,
        image_key="morphology_normalized",
        labels_key="cell_labels",
        inplace=False,
        cells_per_tile=16,
        chunk_size=16,
        cache_mb=0.05,
    )
    np.testing.assert_array_equal(got.morphology, ref.morphology)
    np.testing.assert_array_equal(got.microenvironment, ref.microenvironment)


def test_uint8_rgb_image_is_taken_as_is(make_disks):
    sdata, truth = make_disks(shape=(160, 160), shuffle_table=False)
    rgb = (np.moveaxis(truth["image"][[0, 1, 0]], 0, -1) * 255).round().astype(np.uint8)
    s2 = mad.io.sdata_from_arrays(rgb, truth["labels"])
    store = mad.pp.cell_views(s2, image_key="morphology", labels_key="cell_labels", inplace=False)
    ref = mad.pp.cell_views(sdata, image_key="morphology", labels_key="cell_labels", inplace=False)
    assert store.n_channels == 3
    diff = np.abs(store.morphology[:, 0].astype(int) - ref.morphology[:, 0].astype(int))
    assert diff.max() <= 1


def test_dask_distributed_client_runs_the_tiles(tissue, run, tmp_path):
    """Tiles are dask tasks: an active distributed client executes them (threads here)."""
    distributed = pytest.importorskip("distributed")
    sdata, _ = tissue
    ref = run[3]
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2):
        with distributed.get_task_stream() as ts:
            store = mad.pp.cell_views(
                sdata,
                image_key="morphology",
                labels_key="cell_labels",
                store=tmp_path / "d.zarr",
                chunk_size=16,
                cells_per_tile=32,
                inplace=False,
            )
    n_tiles = -(-len(ref) // 32)
    assert sum("_run_task" in t["key"] for t in ts.data) == n_tiles
    np.testing.assert_array_equal(store.morphology[:], ref.morphology)
    np.testing.assert_array_equal(store.microenvironment[:], ref.microenvironment)
