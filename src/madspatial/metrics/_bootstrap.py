"""Percentile bootstrap confidence intervals over cells, optionally stratified."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


def bootstrap_ci(
    data: ArrayLike | tuple[ArrayLike, ...],
    *,
    statistic: Callable = np.mean,
    n_boot: int = 1000,
    ci: float = 0.95,
    strata=None,
    resample: Literal["bootstrap", "half"] = "bootstrap",
    center: bool = False,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Estimate and percentile-bootstrap confidence interval of a statistic over cells.

    Cells (rows) are resampled with replacement ``n_boot`` times and the statistic is
    recomputed on each resample. With ``strata`` (e.g. slide or cell type), each
    stratum is resampled separately with its own size, so every replicate keeps the
    composition of the data (a stratified bootstrap).

    Parameters
    ----------
    data
        One array (cells first) or a tuple of arrays with the same number of rows that
        are resampled together, e.g. ``(labels, clusters)`` for an ARI.
    statistic
        Function of the (resampled) array(s), returning a float: called as
        ``statistic(a)`` for one array, ``statistic(a, b, ...)`` for a tuple.
    n_boot
        Bootstrap replicates.
    ci
        Coverage of the interval (0.95: the 2.5th and 97.5th percentiles).
    strata
        Optional stratum per cell.
    resample
        ``"bootstrap"``: ``n`` cells drawn with replacement (the classic bootstrap).
        ``"half"``: half of the cells drawn without replacement (half-sampling; for a
        mean, its variance equals that of the full-sample estimate). Use ``"half"`` for
        pair-counting statistics such as the ARI or purity: duplicated cells in a
        bootstrap resample always agree with themselves, which biases those statistics
        upwards and can push the whole interval above the estimate.
    center
        Re-centre the replicates on the estimate before taking percentiles (replicates
        minus their median plus the estimate). The interval then measures the spread
        of the statistic around the estimate, without the small-sample bias that
        statistics like purity (a maximum) carry in every resample; it always contains
        the estimate.
    seed
        Seed of the resampling.

    Returns
    -------
    ``(estimate, low, high)``: the statistic on the full data and the interval bounds.
    Replicates where the statistic is NaN are ignored; if all are, the bounds are NaN.
    """
    arrays = tuple(np.asarray(a) for a in data) if isinstance(data, tuple) else (np.asarray(data),)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"arrays in data have different lengths: {[len(a) for a in arrays]}.")
    if n == 0:
        raise ValueError("data is empty: nothing to bootstrap.")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}.")
    estimate = float(statistic(*arrays))
    rng = np.random.default_rng(seed)
    if strata is None:
        blocks = [np.arange(n)]
    else:
        s = np.asarray(strata)
        if len(s) != n:
            raise ValueError(f"strata has {len(s)} entries for {n} cells.")
        _, codes = np.unique(s.astype(str), return_inverse=True)
        blocks = [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]
    if resample not in ("bootstrap", "half"):
        raise ValueError(f"resample must be 'bootstrap' or 'half', got {resample!r}.")
    reps = np.empty(n_boot)
    for b in range(n_boot):
        if resample == "bootstrap":
            parts = [blk[rng.integers(0, len(blk), len(blk))] for blk in blocks]
        else:
            parts = [rng.choice(blk, max(1, len(blk) // 2), replace=False) for blk in blocks]
        idx = np.concatenate(parts)
        reps[b] = statistic(*(a[idx] for a in arrays))
    reps = reps[np.isfinite(reps)]
    if len(reps) == 0:
        return estimate, float("nan"), float("nan")
    if center:
        reps = reps - np.median(reps) + estimate
    alpha = (1 - ci) / 2
    low, high = np.quantile(reps, [alpha, 1 - alpha])
    return estimate, float(low), float(high)
