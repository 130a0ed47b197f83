"""mad.pp.normalize: flat field, percentile clip, [0, 1] scaling, any dtype, lazy, recorded."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from spatialdata.models import Image2DModel
from spatialdata.transformations import Translation, get_transformation

import madspatial as mad

from .conftest import disk_tissue


def _raw(shape=(160, 160), ramp=(0.5, 1.5), seed=0):
    """Disk tissue as uint16 with a multiplicative left-to-right illumination ramp."""
    sdata, truth = disk_tissue(shape=shape, shuffle_table=False, background=0.02, seed=seed)
    gain = np.linspace(*ramp, shape[1])[None, None, :]
    rng = np.random.default_rng(seed)
    raw = truth["image"] * gain * 3000 + 100 + rng.normal(0, 3, truth["image"].shape)
    raw = raw.clip(0, 65535).astype(np.uint16)
    return sdata, truth, raw


def _put(sdata, img, **kw):
    sdata.images["morphology"] = Image2DModel.parse(img, dims=("c", "y", "x"), **kw)


def test_output_range_dtype_lazy_and_metadata():
    sdata, _, raw = _raw()
    _put(
        sdata,
        da.from_array(raw, chunks=(2, 64, 64)),
        c_coords=["value", "ramp"],
        transformations={"global": Translation([7, 3], axes=("x", "y"))},
    )
    mad.pp.normalize(sdata, image_key="morphology", seed=1)
    out = sdata.images["morphology_normalized"]
    assert isinstance(out.data, da.Array)  # lazy
    assert out.dtype == np.uint16 and out.shape == raw.shape  # issue 12: the input's class
    assert list(out.coords["c"].values) == ["value", "ramp"]
    t = get_transformation(out, "global")
    assert isinstance(t, Translation) and list(t.translation) == [7, 3]
    a = out.data.compute()
    assert a.min() == 0 and a.max() == 65535
    params = mad.pp.normalization_params(sdata, image_key="morphology_normalized")
    assert params["source"] == "morphology" and params["clip"] == [0.01, 99.99]
    assert len(params["lo"]) == 2 and params["seed"] == 1
    assert sdata.attrs["mad_normalize"]["morphology_normalized"] == params


def test_params_survive_writing_to_zarr(tmp_path):
    import spatialdata as sd

    sdata, _, raw = _raw(shape=(64, 64))
    _put(sdata, raw)
    mad.pp.normalize(sdata, image_key="morphology", key_added="norm")
    params = mad.pp.normalization_params(sdata, image_key="norm")
    sdata.write(tmp_path / "s.zarr")
    back = sd.read_zarr(tmp_path / "s.zarr")
    got = mad.pp.normalization_params(back, image_key="norm")
    assert got["lo"] == pytest.approx(params["lo"]) and got["hi"] == pytest.approx(params["hi"])
    with pytest.raises(KeyError, match=r"not made by mad\.pp\.normalize"):
        mad.pp.normalization_params(back, image_key="morphology")


def test_flatfield_removes_illumination_gradient():
    """A homogeneous specimen under a 3x left-to-right illumination ramp comes out flat."""
    sdata, truth = disk_tissue(shape=(240, 240), spacing=12, radius=4, shuffle_table=False)
    cells = truth["labels"] > 0
    specimen = np.where(cells, 0.6, 0.03)
    gain = np.linspace(0.5, 1.5, 240)[None, :]
    noise = np.random.default_rng(0).normal(0, 0.01, cells.shape)
    raw = ((specimen * gain + noise) * 4000).clip(0).astype(np.uint16)[None]
    _put(sdata, raw)
    mad.pp.normalize(sdata, image_key="morphology", key_added="flat")
    mad.pp.normalize(sdata, image_key="morphology", key_added="noflat", flatfield=False)

    def profile(key):
        a = sdata.images[key].data.compute()[0]
        cols = np.array_split(np.arange(240), 6)
        return np.array([a[:, c][cells[:, c]].mean() for c in cols])

    raw_p, flat_p = profile("noflat"), profile("flat")
    assert raw_p[-1] / raw_p[0] > 2.2  # the ramp, as seen without correction
    # Corrected: flat to a few percent everywhere, edges included (local linear fit).
    assert flat_p.max() / flat_p.min() < 1.05


def test_percentiles_by_hand_when_every_pixel_is_sampled():
    sdata, _, raw = _raw(shape=(80, 80))
    _put(sdata, raw)
    mad.pp.normalize(sdata, image_key="morphology", flatfield=False, clip=(1, 99))
    got = sdata.images["morphology_normalized"].data.compute()
    x = raw.astype(np.float64)
    lo = np.percentile(x, 1, axis=(1, 2))[:, None, None]
    hi = np.percentile(x, 99, axis=(1, 2))[:, None, None]
    expected = np.clip((x - lo) / (hi - lo), 0, 1)
    assert got.dtype == np.uint16
    np.testing.assert_allclose(got, np.rint(expected * 65535), atol=1)


def test_chunking_does_not_change_the_result():
    sdata, _, raw = _raw(shape=(120, 120))
    _put(sdata, raw)
    mad.pp.normalize(sdata, image_key="morphology", key_added="whole")
    _put(sdata, da.from_array(raw, chunks=(1, 37, 50)))
    mad.pp.normalize(sdata, image_key="morphology", key_added="chunked")
    a = sdata.images["whole"].data.compute()
    b = sdata.images["chunked"].data.compute()
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_seeded_subsample_is_reproducible():
    sdata, _, raw = _raw(shape=(120, 120))
    _put(sdata, raw)
    for key, seed in (("a", 3), ("b", 3), ("c", 4)):
        mad.pp.normalize(sdata, image_key="morphology", key_added=key, n_samples=500, seed=seed)
    pa, pb, pc = (mad.pp.normalization_params(sdata, image_key=k) for k in "abc")
    assert pa["n_samples"] < 120 * 120
    assert pa["hi"] == pb["hi"] and pa["lo"] == pb["lo"]
    assert pa["hi"] != pc["hi"]


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float64, bool])
def test_any_dtype(dtype):
    sdata, truth = disk_tissue(shape=(80, 80), shuffle_table=False)
    img = truth["image"]
    if dtype is np.uint8:
        img = (img * 255).astype(np.uint8)
    elif dtype is np.int16:
        img = (img * 2000 - 1000).astype(np.int16)  # negative values too
    elif dtype is bool:
        img = img > 0.5
    else:
        img = img.astype(np.float64) * 1e-3
    _put(sdata, img)
    mad.pp.normalize(sdata, image_key="morphology")
    a = sdata.images["morphology_normalized"].data.compute()
    want = {np.uint8: np.uint8, np.int16: np.uint16, bool: np.uint8}.get(dtype, np.float32)
    assert a.dtype == want  # issue 12: integer input stays integer (uint8 / uint16)
    a = a / (np.iinfo(a.dtype).max if a.dtype != np.float32 else 1.0)
    assert a.min() >= 0 and a.max() <= 1 and a.max() > 0.9


def test_rgb_and_multiscale():
    _, truth = disk_tissue(shape=(96, 96), shuffle_table=False)
    rgb = (np.moveaxis(truth["image"][[0, 1, 0]], 0, -1) * 200 + 20).astype(np.uint8)
    sdata = mad.io.sdata_from_arrays(rgb, truth["labels"])
    assert sdata.images["morphology"].shape == (3, 96, 96)
    sdata.images["pyramid"] = Image2DModel.parse(
        sdata.images["morphology"].data, dims=("c", "y", "x"), scale_factors=[2]
    )
    mad.pp.normalize(sdata, image_key="pyramid")
    mad.pp.normalize(sdata, image_key="morphology")
    a = sdata.images["pyramid_normalized"].data.compute()
    b = sdata.images["morphology_normalized"].data.compute()
    assert a.shape == (3, 96, 96)
    np.testing.assert_allclose(a, b)


def test_nan_pixels_and_constant_channels_raise():
    sdata, truth = disk_tissue(shape=(80, 80), shuffle_table=False)
    img = truth["image"].copy()
    img[0, 3, 4] = np.nan
    img[1, 5:7, 5] = np.inf
    _put(sdata, img, c_coords=["value", "ramp"])
    with pytest.raises(ValueError, match=r"NaN/inf pixels \(value: 1, ramp: 2\)"):
        mad.pp.normalize(sdata, image_key="morphology")
    img = truth["image"].copy()
    img[1] = 7.0
    _put(sdata, img, c_coords=["value", "flat"])
    with pytest.raises(ValueError, match=r"\['flat'\].*zero variance"):
        mad.pp.normalize(sdata, image_key="morphology")
    with pytest.raises(ValueError, match="clip must be"):
        mad.pp.normalize(sdata, image_key="morphology", clip=(50, 10))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            {"clip": 5},
            r"clip must be two percentiles 0 <= lo < hi <= 100, e\.g\. \(0\.01, 99\.99\); got 5",
        ),
        ({"clip": (1, 2, 3)}, r"clip must be two percentiles.*got \(1, 2, 3\)"),
        ({"clip": ("1", 99)}, r"clip must be two percentiles"),
        ({"flatfield_sigma": 0}, r"flatfield_sigma=0 \(int\) must be a finite number > 0"),
        ({"n_samples": 0}, r"n_samples=0 \(int\) must be a positive int"),
        ({"n_samples": 1e5}, r"n_samples=100000\.0 \(float\).*pass 100000 \(an int\)"),
        ({"seed": -1}, r"seed=-1 \(int\) must be a non-negative int"),
        ({"n_jobs": "2"}, r"n_jobs='2' \(str\) must be an int"),
    ],
)
def test_options_get_clear_errors(kw, message):
    sdata, _ = disk_tissue(shape=(80, 80), shuffle_table=False)
    with pytest.raises(ValueError, match=message):
        mad.pp.normalize(sdata, image_key="morphology", **kw)
