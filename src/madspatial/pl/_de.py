"""Differential expression and enrichment results: volcano plot and enriched-term bars."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._docs import doc_ax_show_returns, doc_params
from ._utils import finish, new_axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

UP_COLOR, DOWN_COLOR, NS_COLOR = "#d62728", "#1f77b4", "#c7c7c7"


def _column(df: pd.DataFrame, key: str, aliases: Sequence[str], what: str) -> str:
    """Find the column holding ``what``: ``key`` or a known alias (gseapy/scanpy spellings)."""
    for k in (key, *aliases):
        if k in df.columns:
            return k
    raise KeyError(
        f"no {what} column {key!r} in the table (columns: {list(df.columns)}); pass the right "
        f"name via the {what}_key argument."
    )


def _neglog10(p: np.ndarray) -> np.ndarray:
    """-log10 with p = 0 (underflow) drawn just above the smallest non-zero p."""
    p = np.asarray(p, dtype=float)
    pos = p[(p > 0) & np.isfinite(p)]
    floor = pos.min() * 0.1 if pos.size else 1e-300
    return -np.log10(np.clip(p, floor, 1.0))


def place_labels(ax, xs, ys, texts, *, fontsize: float = 8) -> list:
    """Annotate points with texts, each at the first free offset around its point.

    A text goes to the first of a few offsets where it overlaps no label placed before (a
    greedy, dependency-free label repel).
    """
    ax.get_xlim(), ax.get_ylim()  # bring autoscaled limits up to date before transforming
    trans = ax.transData
    scale = ax.figure.dpi / 72.0  # points -> pixels
    h = fontsize * 1.25 * scale
    frame = ax.get_window_extent()
    placed: list[tuple[float, float, float, float]] = []
    out = []
    for x, y, text in zip(xs, ys, texts, strict=True):
        px, py = trans.transform((x, y))
        w = len(text) * fontsize * 0.62 * scale
        side = 1 if x >= 0 else -1  # write away from the centre first
        cands = [(side * dx, dy) for dy in (3, -11, 12, -20, 21, -29) for dx in (4, -4)]
        choice, fallback = None, None
        for dx, dy in cands:
            x0 = px + dx * scale - (w if dx < 0 else 0)
            y0 = py + dy * scale
            box = (x0, y0, x0 + w, y0 + h)
            free = all(
                box[2] < b[0] or b[2] < box[0] or box[3] < b[1] or b[3] < box[1] for b in placed
            )
            inside = frame.x0 <= box[0] and box[2] <= frame.x1 and box[3] <= frame.y1
            if free and inside:
                choice = (dx, dy)
                break
            if free and fallback is None:
                fallback = (dx, dy)
        choice = choice or fallback or cands[0]
        dx, dy = choice
        x0 = px + dx * scale - (w if dx < 0 else 0)
        placed.append((x0, py + dy * scale, x0 + w, py + dy * scale + h))
        out.append(
            ax.annotate(
                text,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                ha="left" if dx > 0 else "right",
                va="bottom",
                fontsize=fontsize,
            )
        )
    return out


@doc_params(doc_ax_show_returns=doc_ax_show_returns)
def volcano(
    de: pd.DataFrame,
    *,
    fdr: float = 0.05,
    lfc: float = 1.0,
    label_top: int = 10,
    group: str | None = None,
    gene_key: str = "gene",
    lfc_key: str = "log2FC",
    pvalue_key: str = "pvalue",
    fdr_key: str = "fdr",
    group_key: str = "group",
    title: str | None = None,
    ax=None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | Axes | None:
    """Volcano plot: log2 fold change against -log10 p-value, significant genes coloured.

    A gene is called up (red) or down (blue) when its BH-adjusted p-value is at most ``fdr``
    and ``|log2FC| >= lfc``. Dashed lines mark ``±lfc`` and the p-value at which the FDR
    crosses ``fdr``; the ``label_top`` significant genes with the smallest FDR are named.

    Parameters
    ----------
    de
        Result of :func:`madspatial.tl.differential_expression`: one row per gene with the
        gene name (column or index), log2 fold change, p-value and FDR.
    fdr
        FDR threshold.
    lfc
        Absolute log2 fold-change threshold.
    label_top
        How many significant genes to name (0: none).
    group
        When ``de`` holds several comparisons (a ``group_key`` column), the one to draw.
    gene_key, lfc_key, pvalue_key, fdr_key, group_key
        Column names (scanpy/gseapy spellings such as ``names``, ``logfoldchanges``,
        ``pvals``, ``pvals_adj`` are recognised too).
    title
        Axes title.
    {doc_ax_show_returns}
    """
    if not isinstance(de, pd.DataFrame):
        raise TypeError(f"de must be a DataFrame, got {type(de).__name__}")
    if group_key in de.columns:
        groups = list(pd.unique(de[group_key]))
        if group is None and len(groups) > 1:
            raise ValueError(
                f"de holds {len(groups)} comparisons in column {group_key!r} ({groups[:5]}...); "
                "choose one with group=."
            )
        if group is not None:
            if group not in groups:
                raise KeyError(f"group={group!r} not in de[{group_key!r}]: {groups}")
            de = de[de[group_key] == group]
    elif group is not None:
        raise KeyError(f"group= given but de has no {group_key!r} column: {list(de.columns)}")
    if title is None and group_key in de.columns and "reference" in de.columns and len(de):
        # tl.differential_expression records what was compared; say it
        title = f"{de[group_key].iloc[0]} vs {de['reference'].iloc[0]}"
    lk = _column(de, lfc_key, ("logfoldchanges", "log2fc", "logFC", "log2FoldChange"), "lfc")
    pk = _column(de, pvalue_key, ("pvals", "pval", "P-value", "pvalue"), "pvalue")
    fk = _column(de, fdr_key, ("pvals_adj", "padj", "FDR", "qvalue", "Adjusted P-value"), "fdr")
    genes = (
        de[_column(de, gene_key, ("names", "gene_name", "Gene"), "gene")]
        if any(k in de.columns for k in (gene_key, "names", "gene_name", "Gene"))
        else pd.Series(de.index, index=de.index)
    ).astype(str)

    x = de[lk].to_numpy(dtype=float)
    p = de[pk].to_numpy(dtype=float)
    q = de[fk].to_numpy(dtype=float)
    y = _neglog10(p)
    sig = (q <= fdr) & (np.abs(x) >= lfc)
    up, down = sig & (x > 0), sig & (x < 0)
    ns = ~(up | down)

    fig, ax = new_axes(ax, figsize=(6.4, 4.8))
    ax.scatter(x[ns], y[ns], s=8, color=NS_COLOR, linewidths=0, label=f"n.s. ({ns.sum()})")
    ax.scatter(x[down], y[down], s=12, color=DOWN_COLOR, linewidths=0, label=f"down ({down.sum()})")
    ax.scatter(x[up], y[up], s=12, color=UP_COLOR, linewidths=0, label=f"up ({up.sum()})")
    for v in (-lfc, lfc):
        ax.axvline(v, ls="--", lw=0.8, color="grey")
    passing = q <= fdr
    if passing.any():
        # BH is monotone in p, so the largest passing p-value is where the FDR crosses fdr
        ax.axhline(_neglog10(p)[passing].min(), ls="--", lw=0.8, color="grey")
    ax.margins(x=0.08, y=0.08)
    if label_top and sig.any():
        idx = np.flatnonzero(sig)
        idx = idx[np.lexsort((-np.abs(x[idx]), q[idx]))][:label_top]
        place_labels(ax, x[idx], y[idx], [genes.iloc[i] for i in idx], fontsize=8)
    ax.set_xlabel("log2 fold change")
    ax.set_ylabel("-log10 p-value")
    ax.legend(
        fontsize=8,
        frameon=False,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        title=f"FDR ≤ {fdr:g}\n|log2FC| ≥ {lfc:g}",
        title_fontsize=8,
    )
    if title:
        ax.set_title(title)
    return finish(fig, ax, show=show, return_fig=return_fig)


@doc_params(doc_ax_show_returns=doc_ax_show_returns)
def enrichment(
    result: pd.DataFrame,
    *,
    top: int = 15,
    fdr: float = 0.05,
    term_key: str = "term",
    fdr_key: str = "fdr",
    overlap_key: str = "overlap",
    set_size_key: str = "set_size",
    max_label: int = 45,
    color: str = "#4c72b0",
    title: str | None = None,
    ax=None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | Axes | None:
    """Horizontal bars of -log10 FDR for the most enriched terms, annotated with the overlap.

    Parameters
    ----------
    result
        Result of :func:`madspatial.tl.enrich`: one row per term with its name, FDR and overlap
        (a count next to ``set_size``, or gseapy's ``"k/n"`` string). gseapy's ``Term``, ``Adjusted P-value`` and
        ``Overlap`` columns are recognised too.
    top
        How many terms (smallest FDR first).
    fdr
        Significance threshold, drawn as a dashed line; bars above it are greyed.
    term_key, fdr_key, overlap_key, set_size_key
        Column names (with a set-size column the overlap reads ``k/n``).
    max_label
        Term names longer than this are shortened with an ellipsis.
    color
        Colour of significant bars.
    title
        Axes title.
    {doc_ax_show_returns}
    """
    if not isinstance(result, pd.DataFrame):
        raise TypeError(f"result must be a DataFrame, got {type(result).__name__}")
    tk = _column(result, term_key, ("Term", "gene_set", "name"), "term")
    fk = _column(result, fdr_key, ("Adjusted P-value", "FDR q-val", "padj", "FDR"), "fdr")
    ok = (
        _column(result, overlap_key, ("Overlap", "n_overlap"), "overlap")
        if any(k in result.columns for k in (overlap_key, "Overlap", "n_overlap"))
        else None
    )
    res = result.sort_values(fk, kind="stable").head(top)
    fig, ax = new_axes(ax, figsize=(7, 0.35 * max(len(res), 3) + 1.2))
    if res.empty:
        ax.text(0.5, 0.5, "no terms to show", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return finish(fig, ax, show=show, return_fig=return_fig)
    vals = _neglog10(res[fk].to_numpy(dtype=float))
    labels = [s if len(s) <= max_label else s[: max_label - 1] + "…" for s in res[tk].astype(str)]
    ypos = np.arange(len(res))[::-1]  # most significant on top
    sig = res[fk].to_numpy(dtype=float) <= fdr
    ax.barh(ypos, vals, color=np.where(sig, color, NS_COLOR), height=0.7)
    ax.set_yticks(ypos, labels, fontsize=9)
    if ok is not None:
        over = res[ok].astype(str)
        if set_size_key in res.columns:  # tl.enrich: a count and the set size -> "k/n"
            over = over + "/" + res[set_size_key].astype(str)
        for yy, v, o in zip(ypos, vals, over, strict=True):
            ax.text(v, yy, f" {o}", va="center", ha="left", fontsize=8)
    ax.axvline(-np.log10(fdr), ls="--", lw=0.8, color="grey")
    ax.set_xlim(0, max(vals.max(), -np.log10(fdr)) * 1.18)
    ax.set_xlabel("-log10 FDR")
    if title:
        ax.set_title(title)
    return finish(fig, ax, show=show, return_fig=return_fig)
