"""``mad.pp.normalize``: per-channel flat-field correction, percentile clipping, scaling to [0, 1].

Flat-field estimator
    Illumination inhomogeneity is slow and multiplicative (vignetting, uneven
    lamp or laser fields), so it is estimated from the image itself as a
    heavily smoothed *tissue* intensity:

    1. an overview: the image averaged in blocks of ``f`` x ``f`` pixels
       (``f`` so that the overview is at most 512 pixels on a side), in one
       pass over the (dask) image;
    2. per channel, a foreground mask on the overview (Otsu threshold), so
       empty slide does not drag the estimate down at tissue borders (for
       bright-field H&E the mask is the bright glass, the purest view of the
       illumination);
    3. per channel, a first-order normalised convolution of the masked
       overview: at every point a plane is fitted to the foreground values with
       Gaussian weights (``sigma = flatfield_sigma``, default 1/8 of the longer
       image side), which, unlike plain Gaussian smoothing, follows linear
       gradients up to the image edges; the field is divided by its mean over
       the foreground and clipped to [0.1, 10];
    4. the image is divided by this field, bilinearly upsampled on the fly.

    Structures smaller than ``sigma`` (cells, niches) are kept; gradients at
    the scale of the slide are removed.

Clipping and scaling
    The ``clip`` percentiles of the corrected intensities are computed on a
    seeded random subsample of pixels (``n_samples``, drawn per block so the
    result does not depend on scheduling), then ``(I / F - lo) / (hi - lo)`` is
    clipped to [0, 1], lazily (dask ``map_blocks``), and stored in the input's dtype
    class: float32 for float input, the full range of uint8 / uint16 for integer input
    (``round(v * 255)`` / ``round(v * 65535)``; not float32 at 2-4x the bytes).

Pyramid
    Images longer than ``PYRAMID_SIDE`` pixels get a multiscale result (levels halving
    until the coarsest fits in it), as the readers write their inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._constants import NORMALIZED_SUFFIX
from .._logging import added, logger
from .._settings import settings
from .._version import __version__
from ._cell_views import NORMALIZE_ATTR
from ._dask import scheduler, scheduler_threads
from ._inputs import get_image, scale0
from ._options import check_int, check_real

#: Longest side of the overview used for the flat field.
OVERVIEW_SIDE = 512
#: Spatial chunk side of the normalized image (bounded so tiles read small pieces).
OUT_CHUNK = 1024
#: The normalized image gets pyramid levels (x2 each) until its longest side fits this.
PYRAMID_SIDE = 1024


def output_dtype(dtype: np.dtype) -> np.dtype:
    """Return the normalized image's dtype: uint8 for uint8/bool, uint16 for ints, else float32."""
    dtype = np.dtype(dtype)
    if dtype in (np.dtype(np.uint8), np.dtype(bool)):
        return np.dtype(np.uint8)
    if np.issubdtype(dtype, np.integer):
        return np.dtype(np.uint16)
    return np.dtype(np.float32)


def pyramid_factors(h: int, w: int) -> list[int]:
    """Scale factors (2 each) until the longest side is at most ``PYRAMID_SIDE``."""
    out, side = [], max(h, w)
    while side > PYRAMID_SIDE:
        out.append(2)
        side = -(-side // 2)
    return out


def _scan_block(block: np.ndarray, y0: int, x0: int, f: int, k: int, seed: int) -> dict:
    """Block sums on the overview grid, non-finite counts and a random pixel sample."""
    c, h, w = block.shape
    ry = np.unique(np.r_[0, np.arange((-y0) % f, h, f)])
    rx = np.unique(np.r_[0, np.arange((-x0) % f, w, f)])
    sums = np.empty((c, len(ry), len(rx)))
    nonfinite = np.zeros(c, dtype=np.int64)
    for ch in range(c):
        plane = block[ch]
        if np.issubdtype(plane.dtype, np.floating):
            bad = ~np.isfinite(plane)
            nonfinite[ch] = int(bad.sum())
        part = np.add.reduceat(plane, ry, axis=0, dtype=np.float64)
        sums[ch] = np.add.reduceat(part, rx, axis=1, dtype=np.float64)
    ny = np.diff(np.r_[ry, h])
    nx = np.diff(np.r_[rx, w])
    if k >= h * w:  # small images: every pixel, so the percentiles are exact
        iy, ix = (a.ravel() for a in np.indices((h, w)))
    else:
        rng = np.random.default_rng([seed, y0, x0])
        iy = rng.integers(0, h, k)
        ix = rng.integers(0, w, k)
    return {
        "oy": y0 // f,
        "ox": x0 // f,
        "sums": sums,
        "counts": np.outer(ny, nx).astype(np.float64),
        "nonfinite": nonfinite,
        "values": block[:, iy, ix].astype(np.float32),
        "y": (iy + y0).astype(np.float32),
        "x": (ix + x0).astype(np.float32),
    }


def _local_linear(values: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-weighted local *linear* fit of ``values`` over ``mask``, evaluated everywhere.

    First-order normalised convolution: at every point, a plane ``a + b x + c y``
    is fitted by least squares to the masked values with Gaussian weights, and
    ``a + b x + c y`` at that point is the estimate. Unlike plain smoothing it
    reproduces linear trends up to the image edge and across gaps in the mask;
    where the fit is ill-posed it falls back to the weighted mean.
    """
    from scipy.ndimage import gaussian_filter

    h, w = values.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yy = yy / max(h - 1, 1) * 2 - 1  # [-1, 1] keeps the 3x3 systems well conditioned
    xx = xx / max(w - 1, 1) * 2 - 1
    m = mask.astype(np.float64)
    v = values * m

    def g(a):
        return gaussian_filter(a, sigma, mode="constant", cval=0.0)

    a, b, c = g(m), g(m * xx), g(m * yy)  # the symmetric 3x3 normal equations per point:
    d, e, f = g(m * xx * xx), g(m * xx * yy), g(m * yy * yy)  # [[a b c] [b d e] [c e f]]
    r0, r1, r2 = g(v), g(v * xx), g(v * yy)
    # Solved in closed form (adjugate / determinant): no per-point matrices in memory.
    i00, i01, i02 = d * f - e * e, c * e - b * f, b * e - c * d
    i11, i12, i22 = a * f - c * c, b * c - a * e, a * d - b * b
    det = a * i00 + b * i01 + c * i02
    with np.errstate(invalid="ignore", divide="ignore"):
        beta0 = (i00 * r0 + i01 * r1 + i02 * r2) / det
        beta1 = (i01 * r0 + i11 * r1 + i12 * r2) / det
        beta2 = (i02 * r0 + i12 * r1 + i22 * r2) / det
        mean = np.where(a > 1e-6, r0 / a, np.nan)
        ok = det > 1e-9 * np.maximum(a, 1e-12) ** 3
        return np.where(ok, beta0 + beta1 * xx + beta2 * yy, mean)


def _flatfield(overview: np.ndarray, sigma: float) -> np.ndarray:
    """Per-channel illumination field on the overview grid (mean 1 over the foreground)."""
    from skimage.filters import threshold_otsu

    flat = np.ones_like(overview)
    for c, ov in enumerate(overview):
        if not ov.max() > ov.min():
            continue  # constant: nothing to correct (and it fails the variance check)
        mask = ov >= threshold_otsu(ov)
        ref = ov[mask].mean()
        if ref <= 0:
            continue
        local = _local_linear(ov, mask, sigma)
        local = np.where(np.isfinite(local), local, ref)
        flat[c] = np.clip(local / ref, 0.1, 10.0)
    return flat


def _interp_axis(n_over: int, start: int, length: int, f: int):
    """Return indices and weights of linear interpolation from overview cells to pixels on one axis.

    Overview cell ``i`` averages pixels ``[i f, (i + 1) f)``, so its centre is at
    pixel coordinate ``(i + 0.5) f - 0.5``; beyond the outer centres the field is constant.
    """
    o = (np.arange(start, start + length) + 0.5) / f - 0.5
    o = np.clip(o, 0, n_over - 1)
    i0 = np.floor(o).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_over - 1)
    return i0, i1, (o - i0).astype(np.float32)


def _upsample(flat: np.ndarray, y0: int, h: int, x0: int, w: int, f: int) -> np.ndarray:
    """Return the flat field at pixels ``[y0, y0+h) x [x0, x0+w)`` (C, h, w), bilinear."""
    iy0, iy1, wy = _interp_axis(flat.shape[1], y0, h, f)
    ix0, ix1, wx = _interp_axis(flat.shape[2], x0, w, f)
    rows = flat[:, iy0] * (1 - wy)[None, :, None] + flat[:, iy1] * wy[None, :, None]
    return rows[:, :, ix0] * (1 - wx) + rows[:, :, ix1] * wx


def _apply(block, flat, lo, hi, f, out_dtype=np.float32, block_info=None):
    loc = block_info[0]["array-location"]
    (y0, y1), (x0, x1) = loc[1], loc[2]
    out = block.astype(np.float32)
    if flat is not None:
        out /= _upsample(flat, y0, y1 - y0, x0, x1 - x0, f)
    out -= lo[:, None, None]
    out /= (hi - lo)[:, None, None]
    np.clip(out, 0.0, 1.0, out=out)
    if out_dtype != np.float32:
        out *= float(np.iinfo(out_dtype).max)
        return np.rint(out, out=out).astype(out_dtype)
    return out


def sample_coords_flat(flat: np.ndarray, y: np.ndarray, x: np.ndarray, f: int) -> np.ndarray:
    """Bilinear flat-field values (C, k) at pixel coordinates ``y``, ``x``."""
    from scipy.ndimage import map_coordinates

    oy = (y + 0.5) / f - 0.5
    ox = (x + 0.5) / f - 0.5
    return np.stack([map_coordinates(fc, [oy, ox], order=1, mode="nearest") for fc in flat])


def normalize(
    sdata: Any,
    *,
    image_key: str,
    flatfield: bool = True,
    clip: tuple[float, float] = (0.01, 99.99),
    key_added: str | None = None,
    flatfield_sigma: float | None = None,
    n_samples: int = 1_000_000,
    seed: int | None = None,
    n_jobs: int | None = None,
    dtype: str | None = None,
    multiscale: bool = True,
) -> None:
    """Flat-field correct, clip and scale every channel of an image to [0, 1].

    Per channel, as in the MAD paper: (1) flat-field correction of
    illumination inhomogeneity, estimated from the image itself as a heavily
    smoothed foreground intensity (a Gaussian-weighted local linear fit to a
    block-averaged overview restricted to the channel's Otsu foreground, mean
    1; see the module docstring); (2) clipping at the ``clip`` percentiles, computed on a
    seeded random subsample of ``n_samples`` pixels; (3) scaling to [0, 1].
    Works for any channel count and dtype (uint8/uint16/float, RGB H&E), one
    block at a time on dask-backed images (the result is lazy). The result keeps
    the input's dtype class: float32 in [0, 1] for float input, uint8 / uint16
    over their full range for integer input (uint8 stays uint8; other integers
    become uint16). Transformations and channel names are kept. Multiscale
    images are read at full resolution; images longer than ``PYRAMID_SIDE`` px
    give a multiscale result (levels halving).

    Parameters
    ----------
    sdata
        SpatialData holding the image.
    image_key
        The image (``c, y, x``) to normalize.
    flatfield
        Estimate and divide out the illumination field.
    clip
        Lower and upper percentiles (0-100) mapped to 0 and 1.
    key_added
        Name of the new image (default ``f"{image_key}_normalized"``).
    flatfield_sigma
        Gaussian sigma of the flat field in pixels (default: 1/8 of the longer side).
    n_samples
        Pixels sampled for the percentiles.
    seed
        Seed of the pixel sample (default ``mad.settings.seed``).
    n_jobs
        Threads for the scan over the image (default ``mad.settings.n_jobs``). With an
        active ``dask.distributed`` client the blocks run on its workers instead.
    dtype
        ``None`` (the input's class, see above), or ``"float32"``, ``"uint16"``, ``"uint8"``.
    multiscale
        Write pyramid levels for images longer than ``PYRAMID_SIDE`` px.

    Returns
    -------
    ``None``. Adds the image ``sdata.images[key_added]`` (float32 in [0, 1] or
    the full uint8/uint16 range, same transformations and channel names) whose ``.attrs["mad_normalize"]``
    records the parameters and the per-channel ``lo``/``hi`` values; the same
    record is kept in ``sdata.attrs["mad_normalize"][key_added]`` (which
    survives writing to zarr), see :func:`madspatial.pp.normalization_params`.

    Raises
    ------
    ValueError
        NaN/inf pixels (with counts per channel), constant (zero-variance)
        channels, bad ``clip``.
    """
    lo_pct, hi_pct, flatfield_sigma, n_samples, seed, n_jobs = _check_options(
        clip, flatfield_sigma, n_samples, seed, n_jobs, key_added
    )
    key_added = key_added or f"{image_key}{NORMALIZED_SUFFIX}"
    el, data, names = get_image(sdata, image_key)
    out_dtype = _out_dtype(dtype, data.dtype)
    c, h, w = data.shape
    if h == 0 or w == 0:
        raise ValueError(f"image {image_key!r} is empty (shape {data.shape}).")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    data = data.rechunk({0: -1, 1: min(h, OUT_CHUNK), 2: min(w, OUT_CHUNK)})
    f = max(1, int(np.ceil(max(h, w) / OVERVIEW_SIDE)))

    # --- one pass: overview sums, non-finite counts, pixel sample -------------------------
    sums, counts, values, sy_, sx_ = _scan(data, f, n_samples, seed, n_jobs, names, image_key)

    # --- flat field and percentiles --------------------------------------------------------
    sigma = float(flatfield_sigma) if flatfield_sigma is not None else max(h, w) / 8.0
    flat = None
    if flatfield:
        overview = sums / np.maximum(counts, 1)[None]
        flat = _flatfield(overview, max(sigma / f, 0.5))
        values = values / sample_coords_flat(flat, sy_, sx_, f)
    lo = np.percentile(values, lo_pct, axis=1)
    hi = np.percentile(values, hi_pct, axis=1)
    const = [names[i] for i in range(c) if not hi[i] > lo[i]]
    if const:
        raise ValueError(
            f"channel(s) {const} of image {image_key!r} have zero variance between the "
            f"{lo_pct} and {hi_pct} percentiles (constant or nearly empty) and cannot be "
            f"scaled; drop them, e.g. sdata.images[{image_key!r}] = image.sel(c=[...]), or "
            "widen clip=."
        )

    # --- lazy output -------------------------------------------------------------------------
    params = {
        "source": image_key,
        "flatfield": bool(flatfield),
        "flatfield_sigma": sigma,
        "flatfield_estimator": "local-linear Gaussian fit to the Otsu foreground of the overview",
        "overview_factor": f,
        "clip": [lo_pct, hi_pct],
        "lo": lo.tolist(),
        "hi": hi.tolist(),
        "channel_names": list(names),
        "n_samples": int(values.shape[1]),
        "seed": seed,
        "dtype": str(out_dtype),
        "madspatial_version": __version__,
    }
    new = _lazy_output(el, data, names, flat, lo, hi, f, out_dtype, multiscale=multiscale)
    scale0(new).attrs[NORMALIZE_ATTR] = params
    sdata.images[key_added] = new
    record = dict(getattr(sdata, "attrs", {}).get(NORMALIZE_ATTR, {}))
    record[key_added] = params
    sdata.attrs[NORMALIZE_ATTR] = record
    logger.info(
        "normalize %r: flat field %s (sigma %.0f px), clip %s%% -> lo %s, hi %s",
        image_key,
        "on" if flatfield else "off",
        sigma,
        list(clip),
        np.round(lo, 4).tolist(),
        np.round(hi, 4).tolist(),
    )
    added(key_added, "images")


# ------------------------------------------------------------------ steps of normalize
def _check_options(clip, flatfield_sigma, n_samples, seed, n_jobs, key_added):
    """Check the options of :func:`normalize`.

    Returns ``(lo_pct, hi_pct, flatfield_sigma, n_samples, seed, n_jobs)`` with the seed and
    thread count resolved from ``mad.settings``.
    """
    try:
        lo_pct, hi_pct = (check_real("clip", v, low=0.0, low_open=False, example=1) for v in clip)
    except (TypeError, ValueError):
        lo_pct = hi_pct = -1.0
    if not 0 <= lo_pct < hi_pct <= 100:
        raise ValueError(
            f"clip must be two percentiles 0 <= lo < hi <= 100, e.g. (0.01, 99.99); got {clip!r}."
        )
    if flatfield_sigma is not None:
        flatfield_sigma = check_real("flatfield_sigma", flatfield_sigma, example=64)
    n_samples = check_int("n_samples", n_samples, example=1_000_000)
    if seed is not None:
        seed = check_int("seed", seed, minimum=0, example=0, rule="a non-negative int")
    if n_jobs is not None:
        n_jobs = check_int(
            "n_jobs", n_jobs, minimum=-(2**62), example=4, rule="an int (-1: all cores)"
        )
    if key_added is not None and (not isinstance(key_added, str) or not key_added):
        raise ValueError(f"key_added must be a non-empty str or None; got {key_added!r}.")
    seed = settings.seed if seed is None else int(seed)
    n_jobs = settings.resolve_n_jobs(n_jobs)
    return lo_pct, hi_pct, flatfield_sigma, n_samples, seed, n_jobs


def _out_dtype(dtype, in_dtype) -> np.dtype:
    if dtype is None:
        return output_dtype(in_dtype)
    if str(dtype) in ("float32", "uint16", "uint8"):
        return np.dtype(str(dtype))
    raise ValueError(
        f"dtype must be None (the input's class), 'float32', 'uint16' or 'uint8'; got {dtype!r}."
    )


def _scan(data, f: int, n_samples: int, seed: int, n_jobs: int, names, image_key: str):
    """Scan the blocks once: overview sums and counts, and a pixel sample.

    Returns ``(overview sums, overview counts, sampled values, their y, their x)``; NaN/inf
    pixels raise, counted per channel.
    """
    import dask

    c, h, w = data.shape
    ho, wo = -(-h // f), -(-w // f)
    ys = np.r_[0, np.cumsum(data.chunks[1])]
    xs = np.r_[0, np.cumsum(data.chunks[2])]
    blocks = data.to_delayed()
    frac = min(1.0, n_samples / (h * w))
    tasks = []
    for i in range(len(ys) - 1):
        for j in range(len(xs) - 1):
            size = (ys[i + 1] - ys[i]) * (xs[j + 1] - xs[j])
            k = int(np.ceil(frac * size))
            tasks.append(
                dask.delayed(_scan_block)(blocks[0, i, j], int(ys[i]), int(xs[j]), f, k, seed)
            )
    sums = np.zeros((c, ho, wo))
    counts = np.zeros((ho, wo))
    nonfinite = np.zeros(c, dtype=np.int64)
    vals, yy, xx = [], [], []
    # Blocks are dask tasks: an active dask.distributed client spreads them over its workers.
    sched = scheduler(n_jobs)
    wave = max(2, 2 * scheduler_threads(sched, n_jobs))
    for a in range(0, len(tasks), wave):
        for r in dask.compute(*tasks[a : a + wave], **sched):
            sy, sx = r["sums"].shape[1:]
            sums[:, r["oy"] : r["oy"] + sy, r["ox"] : r["ox"] + sx] += r["sums"]
            counts[r["oy"] : r["oy"] + sy, r["ox"] : r["ox"] + sx] += r["counts"]
            nonfinite += r["nonfinite"]
            vals.append(r["values"])
            yy.append(r["y"])
            xx.append(r["x"])
    if nonfinite.any():
        detail = ", ".join(f"{names[i]}: {int(n)}" for i, n in enumerate(nonfinite) if n)
        raise ValueError(
            f"image {image_key!r} holds NaN/inf pixels ({detail}); replace them first, e.g. "
            f"sdata.images[{image_key!r}] = image.fillna(0) (and check why they are there)."
        )
    return sums, counts, np.concatenate(vals, axis=1), np.concatenate(yy), np.concatenate(xx)


def _lazy_output(el, data, names, flat, lo, hi, f, out_dtype, *, multiscale: bool):
    """Build the normalised image as a lazy (multiscale when long) SpatialData image."""
    import dask.array as da
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import get_transformation

    c, h, w = data.shape
    out = da.map_blocks(
        _apply,
        data,
        flat=flat.astype(np.float32) if flat is not None else None,
        lo=lo.astype(np.float32),
        hi=hi.astype(np.float32),
        f=f,
        out_dtype=out_dtype,
        dtype=out_dtype,
        meta=np.empty((0, 0, 0), dtype=out_dtype),
    )
    factors = pyramid_factors(h, w) if multiscale else []
    return Image2DModel.parse(
        out,
        dims=("c", "y", "x"),
        c_coords=names,
        transformations=dict(get_transformation(el, get_all=True)),
        scale_factors=factors or None,
        chunks=(c, min(h, OUT_CHUNK), min(w, OUT_CHUNK)) if factors else None,
    )


def normalization_params(sdata: Any, *, image_key: str) -> dict:
    """Return the parameters :func:`normalize` recorded for the image it wrote.

    Parameters
    ----------
    sdata
        SpatialData holding the normalized image.
    image_key
        Name of the normalized image (``key_added`` of :func:`normalize`).

    Returns
    -------
    A dict: ``source``, ``flatfield``, ``flatfield_sigma``, ``clip``, per-channel
    ``lo`` and ``hi`` (intensities mapped to 0 and 1), ``channel_names``,
    ``n_samples``, ``seed`` and the madspatial version.
    """
    from ._inputs import scale0

    if image_key in sdata.images:
        attrs = getattr(scale0(sdata.images[image_key]), "attrs", {})
        if NORMALIZE_ATTR in attrs:
            return dict(attrs[NORMALIZE_ATTR])
    record = getattr(sdata, "attrs", {}).get(NORMALIZE_ATTR, {})
    if image_key in record:
        return dict(record[image_key])
    raise KeyError(f"image {image_key!r} was not made by mad.pp.normalize (no parameters found).")
