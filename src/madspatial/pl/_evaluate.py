"""Benchmark table of representations: one panel per metric, bars with 95% CIs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._docs import doc_params, doc_show
from ._utils import finish

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def summarize_comparison(
    table: pd.DataFrame,
    *,
    rep_key: str = "rep",
    metric_key: str = "metric",
    value_key: str = "value",
    ci_keys: tuple[str, str] = ("ci_low", "ci_high"),
) -> pd.DataFrame:
    """One row per (metric, rep): mean value over seeds, mean CI bounds, number of seeds.

    With several seeds the bar is the mean over seeds and the interval the mean of the
    per-seed bootstrap intervals (the typical single-run uncertainty); the seeds themselves
    are drawn as dots so their spread stays visible.
    """
    cols = {rep_key: "rep", metric_key: "metric", value_key: "value"}
    missing = [k for k in cols if k not in table.columns]
    if missing:
        raise KeyError(
            f"columns {missing} missing from the table (columns: {list(table.columns)}); "
            "expected mad.tl.evaluate's tidy table or pass rep_key/metric_key/value_key."
        )
    t = table.rename(columns=cols)
    lo, hi = ci_keys
    t["ci_low"] = t[lo] if lo in table.columns else np.nan
    t["ci_high"] = t[hi] if hi in table.columns else np.nan
    g = t.groupby(["metric", "rep"], sort=False, observed=True)
    return g.agg(
        value=("value", "mean"),
        ci_low=("ci_low", "mean"),
        ci_high=("ci_high", "mean"),
        n=("value", "size"),
    ).reset_index()


@doc_params(doc_show=doc_show)
def embedding_comparison(
    table: pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    reps: Sequence[str] | None = None,
    rep_key: str = "rep",
    metric_key: str = "metric",
    value_key: str = "value",
    ci_keys: tuple[str, str] = ("ci_low", "ci_high"),
    palette: Mapping[str, str] | None = None,
    ncols: int = 4,
    annotate: bool = True,
    ax=None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | Axes | np.ndarray | None:
    """Compare representations on every metric of :func:`madspatial.tl.evaluate`.

    One panel per metric (metrics live on different scales), one bar per representation in a
    colour kept across panels, 95% confidence intervals as error bars and, with several
    seeds, each seed as a dot.

    Parameters
    ----------
    table
        Tidy table with one row per (rep, metric[, seed]) and columns ``rep``, ``metric``,
        ``value`` and optionally ``seed``, ``ci_low``, ``ci_high``.
    metrics
        Metrics to show, in order (default: all, in table order).
    reps
        Representations to show, in order (default: all, in table order).
    rep_key, metric_key, value_key
        Column names.
    ci_keys
        Columns of the lower and upper CI bound (absent or NaN: no error bars).
    palette
        Representation -> colour.
    ncols
        Panels per row.
    annotate
        Write each bar's value above it.
    ax
        Axes to draw into (a single metric only).
    {doc_show}

    Returns
    -------
    The Axes (one metric) or array of Axes (``show=False``), the Figure (``return_fig=True``)
    or None.
    """
    import matplotlib.pyplot as plt

    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a DataFrame, got {type(table).__name__}")
    summ = summarize_comparison(
        table, rep_key=rep_key, metric_key=metric_key, value_key=value_key, ci_keys=ci_keys
    )
    all_metrics = list(pd.unique(summ["metric"]))
    all_reps = list(pd.unique(summ["rep"]))
    metrics = all_metrics if metrics is None else list(metrics)
    reps = all_reps if reps is None else list(reps)
    for what, asked, known in (("metrics", metrics, all_metrics), ("reps", reps, all_reps)):
        bad = [m for m in asked if m not in known]
        if bad:
            raise KeyError(f"{what} {bad} not in the table; available: {known}")
    if not metrics or not reps:
        raise ValueError("nothing to plot: the table (or the metrics/reps chosen) is empty.")
    if ax is not None and len(metrics) > 1:
        raise ValueError(f"ax= takes a single metric; got {len(metrics)}: {metrics}")

    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {r: cycle[k % len(cycle)] for k, r in enumerate(reps)}
    colors.update(palette or {})
    if ax is None:
        nc = min(ncols, len(metrics))
        nr = int(np.ceil(len(metrics) / nc))
        width = max(2.6, 0.55 * len(reps) + 1.2)
        fig, axs = plt.subplots(
            nr, nc, figsize=(width * nc, 3.4 * nr), layout="constrained", squeeze=False
        )
        axs = axs.ravel()
        for extra in axs[len(metrics) :]:
            extra.set_visible(False)
        axs = axs[: len(metrics)]
    else:
        fig, axs = ax.figure, np.array([ax])

    raw = table.rename(columns={rep_key: "rep", metric_key: "metric", value_key: "value"})
    x = np.arange(len(reps))
    for a, metric in zip(axs, metrics, strict=True):
        s = summ[summ["metric"] == metric].set_index("rep").reindex(reps)
        vals = s["value"].to_numpy(dtype=float)
        a.bar(x, vals, color=[colors[r] for r in reps], width=0.7)
        lo, hi = s["ci_low"].to_numpy(dtype=float), s["ci_high"].to_numpy(dtype=float)
        has_ci = np.isfinite(lo) & np.isfinite(hi)
        if has_ci.any():
            err = np.vstack([vals - lo, hi - vals])[:, has_ci]
            a.errorbar(
                x[has_ci],
                vals[has_ci],
                yerr=np.clip(err, 0, None),
                fmt="none",
                ecolor="black",
                elinewidth=1,
                capsize=3,
            )
        if (s["n"] > 1).any():
            pts = raw[raw["metric"] == metric]
            for k, r in enumerate(reps):
                v = pts.loc[pts["rep"] == r, "value"].to_numpy(dtype=float)
                jitter = np.linspace(-0.15, 0.15, len(v)) if len(v) > 1 else np.zeros(1)
                a.scatter(k + jitter[: len(v)], v, s=10, color="black", zorder=3, linewidths=0)
        if annotate:
            top = np.where(has_ci, hi, vals)
            for k, (v, t) in enumerate(zip(vals, top, strict=True)):
                if np.isfinite(v):
                    a.annotate(
                        f"{v:.2f}",
                        (k, t),
                        xytext=(0, 2),
                        textcoords="offset points",
                        ha="center",
                        va="bottom",
                        fontsize=7,
                    )
        a.set_xticks(x, reps, rotation=35, ha="right", fontsize=8)
        a.set_title(str(metric), fontsize=10)
        a.axhline(0, color="black", lw=0.6)
        a.margins(y=0.12)
    out = axs[0] if len(axs) == 1 else axs
    return finish(fig, out, show=show, return_fig=return_fig)
