"""Virtual spatial omics: measured vs predicted gene maps, and per-gene accuracy across embeddings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import sparse

from .._constants import LAYER_PRED, OBS_IN_SAMPLE_SUFFIX, OBSM_MAD, OBSM_SPATIAL
from .._docs import doc_params, doc_show
from .._logging import logger
from ._utils import finish, new_axes

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Token in ``layers`` for the measured expression (``.X`` or ``measured_layer``).
MEASURED = "measured"


def _dense_columns(x, cols: np.ndarray) -> np.ndarray:
    sub = x[:, cols]
    return np.asarray(sub.toarray() if sparse.issparse(sub) else sub, dtype=np.float64)


def measured_expression(
    adata, genes: Sequence[str], *, layer: str | None = None, normalize: bool | None = None
) -> tuple[np.ndarray, bool]:
    """Measured expression of ``genes`` (cells x genes) on the decoders' scale.

    Returned with whether it was normalized.

    The same transform as :func:`madspatial.tl.fit_decoder`'s expression targets:
    ``normalize=None`` normalizes (to 10,000 counts per cell over *all* genes, then ``log1p``)
    when the matrix holds raw counts and takes it as it is otherwise (already log-normalized).
    """
    from ..tl._inputs import get_expression

    mode = "auto" if normalize is None else ("log1p" if normalize else None)
    vals, _, applied = get_expression(adata, layer=layer, genes=list(genes), normalize=mode)
    return np.asarray(vals, dtype=np.float64), applied == "log1p"


def _pearson_mae(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < 2:
        return np.nan, np.nan
    mae = float(np.abs(a - b).mean())
    if a.std() == 0 or b.std() == 0:
        return np.nan, mae  # undefined for a constant gene, never reported as 0
    return float(np.corrcoef(a, b)[0, 1]), mae


def _scored_cells(adata, layer: str) -> tuple[np.ndarray | None, str]:
    """Cells the r/MAE of a predicted ``layer`` are computed on, and the note that says so.

    With in-sample marks (``obs[layer + "_in_sample"]``, from ``mad.tl.predict``) only the
    out-of-sample cells are scored, since the decoder's training cells flatter it; all
    cells when every one is in-sample, and the title says so. Without marks: all cells.
    """
    key = f"{layer}{OBS_IN_SAMPLE_SUFFIX}"
    if key not in adata.obs.columns:
        if layer == LAYER_PRED:
            logger.info(
                "    layer %r has no in-sample marks (obs[%r]): r/MAE over all cells, some "
                "of which the decoder may have trained on",
                layer,
                key,
            )
        return None, ""
    flag = adata.obs[key].to_numpy(dtype=bool)
    n_in, n = int(flag.sum()), len(flag)
    if n_in == 0:
        logger.info("    layer %r: all %d predictions are out-of-sample", layer, n)
        return None, " (out-of-sample)"
    if n_in == n:
        logger.warning(
            "    layer %r: all %d predictions are in-sample (the decoder trained on them): "
            "r/MAE are optimistic; fit the decoder with cross_fit=5 for out-of-fold maps",
            layer,
            n,
        )
        return None, " (in-sample)"
    logger.info(
        "    layer %r: r/MAE over the %d out-of-sample cells; %d in-sample cells (the "
        "decoder trained on them) are drawn but not scored",
        layer,
        n - n_in,
        n_in,
    )
    return ~flag, f" ({n - n_in} out-of-sample cells)"


@doc_params(doc_show=doc_show)
def spatial_expression(
    adata: AnnData,
    *,
    genes: str | Sequence[str],
    layers: Sequence[str] = (MEASURED, LAYER_PRED),
    spatial_key: str = OBSM_SPATIAL,
    measured_layer: str | None = None,
    normalize: bool | None = None,
    cmap: str = "viridis",
    vmax_percentile: float = 99.0,
    size: float | None = None,
    panel_size: float = 3.2,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | np.ndarray | None:
    """Measured and predicted expression of genes as maps in tissue coordinates, side by side.

    One row per gene, one column per entry of ``layers``; the panels of a gene share one colour
    scale (from the minimum to the ``vmax_percentile`` of all its panels) and one colour bar.
    Every panel after the first is annotated with its Pearson r and mean absolute error against
    the first (the measured values), over the cells where both are finite. For predictions
    carrying in-sample marks (``obs[layer + "_in_sample"]``, written by
    :func:`madspatial.tl.predict`) only the out-of-sample cells are scored, and the title says
    which cells were (``(out-of-sample)``, ``(n out-of-sample cells)`` or ``(in-sample)``);
    the choice is also logged. Cells are drawn at
    ``obsm[spatial_key]`` (x, y) with y growing downwards, as in the image.

    Parameters
    ----------
    adata
        AnnData with cell coordinates and expression.
    genes
        Gene name(s) from ``adata.var_names``.
    layers
        What to draw, left to right: ``"measured"`` is the measured expression (``.X``, or
        ``layers[measured_layer]``, log-normalized as described under ``normalize``); any other
        entry is a layer taken as it is (default the decoder's ``layers["mad_pred"]``, which
        predicts log-normalized expression).
    spatial_key
        obsm key of the (x, y) cell centroids.
    measured_layer
        Layer holding the measured expression (default ``.X``).
    normalize
        Normalize the measured values to 10,000 counts per cell and ``log1p`` them, as
        :func:`madspatial.tl.fit_decoder` does with expression targets. Default: only when they
        look like raw counts, so raw ``.X`` and an already log-normalized ``.X`` both end up on
        the decoder's scale.
    cmap
        Colour map.
    vmax_percentile
        Upper end of each gene's shared colour scale, as a percentile (robust to outliers).
    size
        Marker size (default from the number of cells).
    panel_size
        Width of one panel in inches.
    {doc_show}

    Returns
    -------
    Array of Axes, genes x layers (``show=False``), the Figure (``return_fig=True``) or None.
    """
    import matplotlib.pyplot as plt

    genes = [genes] if isinstance(genes, str) else list(genes)
    layers = list(layers)
    if not genes or not layers:
        raise ValueError("pass at least one gene and one entry in layers.")
    missing = [g for g in genes if g not in adata.var_names]
    if missing:
        raise KeyError(f"genes not in adata.var_names: {missing}; e.g. {list(adata.var_names[:5])}")
    if spatial_key not in adata.obsm:
        raise KeyError(
            f"spatial_key={spatial_key!r} is not in adata.obsm (available: "
            f"{list(adata.obsm.keys())}); pass the key of the (x, y) cell centroids."
        )
    for lay in layers:
        if lay != MEASURED and lay not in adata.layers:
            raise KeyError(
                f"layer {lay!r} is not in adata.layers (available: {list(adata.layers.keys())}); "
                f"use {MEASURED!r} for the measured expression, or predict first "
                "(mad.tl.fit_decoder / mad.tl.predict write layers['mad_pred'])."
            )
    if measured_layer is not None and measured_layer not in adata.layers:
        raise KeyError(f"measured_layer={measured_layer!r} is not in adata.layers.")

    xy = np.asarray(adata.obsm[spatial_key], dtype=np.float64)[:, :2]
    cols = adata.var_names.get_indexer(genes)
    values = {}
    scoring = {lay: _scored_cells(adata, lay) for lay in layers[1:] if lay != MEASURED}
    for lay in layers:
        if lay == MEASURED:
            values[lay], _ = measured_expression(
                adata, genes, layer=measured_layer, normalize=normalize
            )
        else:
            values[lay] = _dense_columns(adata.layers[lay], cols)

    n = adata.n_obs
    size = size if size is not None else float(np.clip(12_000 / max(n, 1), 0.5, 20))
    span = np.ptp(xy, axis=0) + 1e-9
    aspect = float(span[1] / span[0])
    nr, nc = len(genes), len(layers)
    fig, axes = plt.subplots(
        nr,
        nc,
        figsize=(panel_size * nc + 0.8, (panel_size * aspect + 0.6) * nr),
        layout="constrained",
        squeeze=False,
    )
    for i, gene in enumerate(genes):
        stack = np.concatenate([values[lay][:, i] for lay in layers])
        stack = stack[np.isfinite(stack)]
        vmin = float(stack.min()) if stack.size else 0.0
        vmax = float(np.percentile(stack, vmax_percentile)) if stack.size else 1.0
        vmax = vmax if vmax > vmin else vmin + 1e-6
        ref = values[layers[0]][:, i]
        sc = None
        for j, lay in enumerate(layers):
            ax = axes[i, j]
            v = values[lay][:, i]
            order = np.argsort(np.where(np.isfinite(v), v, -np.inf))  # bright cells on top
            sc = ax.scatter(
                xy[order, 0],
                xy[order, 1],
                c=v[order],
                s=size,
                cmap=cmap,
                vmin=vmin,
                vmax=vmax,
                linewidths=0,
                plotnonfinite=True,
            )
            ax.set_aspect("equal")
            if not ax.yaxis_inverted():
                ax.invert_yaxis()  # image convention: y grows downwards
            ax.set_xticks([])
            ax.set_yticks([])
            head = f"{gene} · {lay}"
            if j > 0:
                cells, note = scoring.get(lay, (None, ""))
                r, mae = (
                    _pearson_mae(ref, v) if cells is None else _pearson_mae(ref[cells], v[cells])
                )
                head += f"\nr = {r:.2f}, MAE = {mae:.2f}{note}"
            elif nc > 1:
                head += "\n"  # keep the panels of a row aligned
            ax.set_title(head, fontsize=10)
        fig.colorbar(sc, ax=list(axes[i]), shrink=0.8, label="log expression")
    return finish(fig, axes, show=show, return_fig=return_fig)


def _as_table(results) -> pd.DataFrame:
    if isinstance(results, pd.DataFrame):
        if {"rep", "gene", "pearson"} <= set(results.columns):
            # tl.evaluate's long per-gene table (rep, seed, gene, pearson): mean over seeds
            return results.pivot_table(
                index="gene", columns="rep", values="pearson", aggfunc="mean", sort=False
            )
        return results
    if isinstance(results, Mapping):
        return pd.DataFrame({k: pd.Series(v) for k, v in results.items()})
    raise TypeError(
        "results must be a DataFrame (index genes, one column of Pearson r per "
        f"representation) or a dict name -> per-gene Series; got {type(results).__name__}"
    )


def share_above_diagonal(results, *, reference: str, baseline: str) -> float:
    """Share of genes (both values finite) where ``reference`` beats ``baseline``."""
    t = _as_table(results)
    ok = t[reference].notna() & t[baseline].notna()
    if not ok.any():
        return float("nan")
    return float((t.loc[ok, reference] > t.loc[ok, baseline]).mean())


@doc_params(doc_show=doc_show)
def gene_correlation(
    results: pd.DataFrame | Mapping[str, pd.Series],
    *,
    reference: str = OBSM_MAD,
    baselines: Sequence[str] | None = None,
    kind: str = "both",
    max_gene_labels: int = 40,
    palette: Mapping[str, str] | None = None,
    title: str | None = None,
    ax=None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | Axes | np.ndarray | None:
    """Per-gene prediction accuracy of one representation against baselines (paper Figs. 4a-b).

    Left: the reference's per-gene Pearson r as bars sorted from best to worst, the baselines
    as lines over the same gene order. Right: reference vs each baseline per gene, with the
    diagonal and the share of genes above it (where the reference predicts better).

    Parameters
    ----------
    results
        Per-gene Pearson r: a DataFrame indexed by gene with one column per representation
        (e.g. ``X_mad``, ``X_mad_morphology``, ``X_mad_microenvironment``, ``pixel_pca``), a
        dict name -> Series indexed by gene, or :func:`madspatial.tl.evaluate`'s long table
        ``uns["mad_evaluate"]["per_gene"]`` (columns ``rep``, ``gene``, ``pearson``; averaged
        over seeds).
    reference
        Column to sort by and to compare against (default ``X_mad``).
    baselines
        Columns to compare with (default: all other columns).
    kind
        ``"both"``, ``"bars"`` or ``"scatter"``.
    max_gene_labels
        Write gene names under the bars when there are at most this many genes.
    palette
        Representation -> colour.
    title
        Figure title.
    ax
        Axes to draw into (``kind="bars"`` or ``"scatter"`` only).
    {doc_show}

    Returns
    -------
    Two Axes (``kind="both"``) or one (``show=False``), the Figure (``return_fig=True``) or None.
    """
    import matplotlib.pyplot as plt

    table = _as_table(results)
    baselines = _check_gene_correlation(table, reference, baselines, kind=kind, ax=ax)
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = [reference, *baselines]
    colors = {n: cycle[k % len(cycle)] for k, n in enumerate(names)}
    colors.update(palette or {})

    if kind == "both":
        fig, axs = plt.subplots(
            1, 2, figsize=(12, 4.5), layout="constrained", gridspec_kw={"width_ratios": [1.7, 1]}
        )
        bar_ax, sc_ax = axs
    else:
        fig, one = new_axes(ax, figsize=(7.5, 4.5) if kind == "bars" else (4.8, 4.5))
        bar_ax, sc_ax = (one, None) if kind == "bars" else (None, one)

    if bar_ax is not None:
        _correlation_bars(bar_ax, table, reference, baselines, colors, max_gene_labels)
    if sc_ax is not None:
        _correlation_scatter(sc_ax, table, reference, baselines, colors)
    if title:
        fig.suptitle(title)
    out = np.array([bar_ax, sc_ax], dtype=object) if kind == "both" else (bar_ax or sc_ax)
    return finish(fig, out, show=show, return_fig=return_fig)


def _check_gene_correlation(
    table: pd.DataFrame, reference: str, baselines: Sequence[str] | None, *, kind: str, ax
) -> list[str]:
    """Check :func:`gene_correlation`'s options; return the baselines (default: the rest)."""
    if reference not in table:
        raise KeyError(
            f"reference={reference!r} is not a column of results; columns: {list(table.columns)}"
        )
    baselines = [c for c in table.columns if c != reference] if baselines is None else baselines
    unknown = [b for b in baselines if b not in table]
    if unknown:
        raise KeyError(f"baselines {unknown} are not columns of results: {list(table.columns)}")
    if kind not in ("both", "bars", "scatter"):
        raise ValueError(f"kind must be 'both', 'bars' or 'scatter', not {kind!r}")
    if ax is not None and kind == "both":
        raise ValueError("ax= takes a single panel: pass kind='bars' or kind='scatter'.")
    if table[reference].notna().sum() == 0:
        raise ValueError(f"results[{reference!r}] has no finite values to plot.")
    return list(baselines)


def _correlation_bars(
    bar_ax,
    table: pd.DataFrame,
    reference: str,
    baselines: Sequence[str],
    colors: Mapping[str, str],
    max_gene_labels: int,
) -> None:
    """Draw the reference's per-gene r as sorted bars, the baselines as lines over them."""
    order = table[reference].sort_values(ascending=False, na_position="last").index
    sorted_t = table.loc[order]
    x = np.arange(len(order))

    def lab(n: str) -> str:
        return f"{n} (mean r = {np.nanmean(table[n].to_numpy(dtype=float)):.2f})"

    bar_ax.bar(x, sorted_t[reference], width=0.85, color=colors[reference], label=lab(reference))
    for b in baselines:
        bar_ax.plot(
            x,
            sorted_t[b],
            color=colors[b],
            lw=1.5,
            marker="o" if len(x) <= max_gene_labels else None,
            ms=3,
            label=lab(b),
        )
    bar_ax.axhline(0, color="black", lw=0.6)
    if len(x) <= max_gene_labels:
        bar_ax.set_xticks(x, [str(g) for g in order], rotation=90, fontsize=8)
        bar_ax.set_xlabel(f"genes, sorted by {reference}")
    else:
        bar_ax.set_xticks([])
        bar_ax.set_xlabel(f"{len(x)} genes, sorted by {reference}")
    bar_ax.set_xlim(-0.6, len(x) - 0.4)
    bar_ax.set_ylabel("Pearson r (measured vs predicted)")
    bar_ax.legend(fontsize=8, frameon=False, loc="lower left", bbox_to_anchor=(0, 1.0), ncols=2)


def _correlation_scatter(
    sc_ax, table: pd.DataFrame, reference: str, baselines: Sequence[str], colors: Mapping[str, str]
) -> None:
    """Draw the reference vs each baseline per gene, the diagonal and the share above it."""
    names = [reference, *baselines]
    vals = table[names].to_numpy(dtype=float)
    finite = vals[np.isfinite(vals)]
    lo, hi = float(finite.min()), float(finite.max())
    pad = 0.05 * max(hi - lo, 1e-3)
    lim = (lo - pad, hi + pad)
    sc_ax.plot(lim, lim, ls="--", color="grey", lw=1)
    for b in baselines:
        share = share_above_diagonal(table, reference=reference, baseline=b)
        sc_ax.scatter(
            table[b],
            table[reference],
            s=14,
            color=colors[b],
            alpha=0.8,
            linewidths=0,
            label=f"{b}: {share:.0%} of genes above",
        )
    sc_ax.set_xlim(lim)
    sc_ax.set_ylim(lim)
    sc_ax.set_aspect("equal")
    sc_ax.set_xlabel(f"{baselines[0]} Pearson r" if len(baselines) == 1 else "baseline Pearson r")
    sc_ax.set_ylabel(f"{reference} Pearson r")
    if baselines:
        sc_ax.legend(fontsize=8, frameon=False, loc="upper left")
