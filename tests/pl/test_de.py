from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import madspatial as mad
from madspatial.pl._de import DOWN_COLOR, UP_COLOR


def _colour_counts(ax):
    out = {}
    for coll in ax.collections:
        fc = coll.get_facecolors()
        if len(fc):
            out[tuple(np.round(fc[0][:3], 3))] = len(coll.get_offsets())
    return out


def test_volcano_calls_and_labels(de_table):
    de = de_table
    ax = mad.pl.volcano(de, fdr=0.05, lfc=1.0, label_top=5, show=False)
    sig = (de["fdr"] <= 0.05) & (de["log2FC"].abs() >= 1.0)
    n_up, n_down = int((sig & (de["log2FC"] > 0)).sum()), int((sig & (de["log2FC"] < 0)).sum())
    assert n_up > 0 and n_down > 0
    from matplotlib.colors import to_rgb

    counts = _colour_counts(ax)
    assert counts[tuple(np.round(to_rgb(UP_COLOR), 3))] == n_up
    assert counts[tuple(np.round(to_rgb(DOWN_COLOR), 3))] == n_down
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"up ({n_up})" in legend and f"down ({n_down})" in legend
    # the five labelled genes are the significant ones with the smallest FDR
    named = {t.get_text() for t in ax.texts}
    top = set(de[sig].sort_values("fdr")["gene"].head(5))
    assert named == top
    # the horizontal threshold is at the largest p-value passing the FDR
    hline = [ln for ln in ax.get_lines() if len(set(ln.get_ydata())) == 1 and ln.get_ydata()[0] > 0]
    assert hline[0].get_ydata()[0] == pytest.approx(
        -np.log10(de.loc[de["fdr"] <= 0.05, "pvalue"].max())
    )


def test_volcano_groups_aliases_and_errors(de_table):
    de = de_table
    two = pd.concat([de.assign(group="A"), de.assign(group="B")]).assign(reference="rest")
    with pytest.raises(ValueError, match="group="):
        mad.pl.volcano(two, show=False)
    ax = mad.pl.volcano(two, group="B", label_top=0, show=False)
    assert ax.get_title() == "B vs rest" and not ax.texts
    with pytest.raises(KeyError, match="group='C'"):
        mad.pl.volcano(two, group="C", show=False)
    # scanpy spellings and genes in the index
    sc_style = de.set_index("gene").rename(
        columns={"log2FC": "logfoldchanges", "pvalue": "pvals", "fdr": "pvals_adj"}
    )
    mad.pl.volcano(sc_style, show=False)
    with pytest.raises(KeyError, match="lfc_key"):
        mad.pl.volcano(de.drop(columns="log2FC"), show=False)
    # p = 0 (underflow) is drawn, not lost as inf
    de0 = de.copy()
    de0.loc[0, "pvalue"] = 0.0
    ax = mad.pl.volcano(de0, show=False)
    ys = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections])
    assert np.isfinite(ys).all()


def test_enrichment_bars(enrich_table):
    res = enrich_table
    ax = mad.pl.enrichment(res, top=4, show=False)
    widths = [p.get_width() for p in ax.patches]
    np.testing.assert_allclose(widths, -np.log10(res["fdr"][:4]))
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    top = max(zip(ax.get_yticks(), ticks, strict=True))[1]
    assert top == "T cell receptor signaling"  # most significant on top
    assert max(len(t) for t in ticks) <= 45 and any(t.endswith("…") for t in ticks)
    assert [t.get_text().strip() for t in ax.texts] == list(res["overlap"][:4])
    # gseapy column names are recognised; an empty result draws a note
    gp = res.rename(columns={"term": "Term", "fdr": "Adjusted P-value", "overlap": "Overlap"})
    fig = mad.pl.enrichment(gp, return_fig=True)
    assert isinstance(fig, plt.Figure)
    ax = mad.pl.enrichment(res.iloc[:0], show=False)
    assert ax.texts[0].get_text() == "no terms to show"
    with pytest.raises(KeyError, match="fdr"):
        mad.pl.enrichment(res.drop(columns="fdr"), show=False)
