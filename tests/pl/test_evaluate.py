from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

import madspatial as mad
from madspatial.pl._evaluate import summarize_comparison


def test_summary_means_over_seeds(evaluate_table):
    s = summarize_comparison(evaluate_table)
    assert len(s) == 12 and (s["n"] == 2).all()
    t = evaluate_table
    m = t[(t.rep == "X_mad") & (t.metric == "ARI")]
    row = s[(s.rep == "X_mad") & (s.metric == "ARI")].iloc[0]
    assert row["value"] == pytest.approx(m["value"].mean())
    assert row["ci_low"] == pytest.approx(m["ci_low"].mean())


def test_embedding_comparison_bars_errorbars_seeds(evaluate_table):
    axes = mad.pl.embedding_comparison(evaluate_table, show=False)
    assert len(axes) == 3
    assert [a.get_title() for a in axes] == ["ARI", "kNN accuracy", "gene Pearson"]
    a = axes[0]
    s = summarize_comparison(evaluate_table)
    s = s[s.metric == "ARI"]
    np.testing.assert_allclose([p.get_height() for p in a.patches], s["value"])
    assert [t.get_text() for t in a.get_xticklabels()] == list(s["rep"])
    # error bars span the CI; seed dots: 4 reps x 2 seeds
    err = next(c for c in a.collections if c.__class__.__name__ == "LineCollection")
    segs = err.get_segments()
    np.testing.assert_allclose([seg[0][1] for seg in segs], s["ci_low"])
    np.testing.assert_allclose([seg[1][1] for seg in segs], s["ci_high"])
    dots = [c for c in a.collections if c.__class__.__name__ == "PathCollection"]
    assert sum(len(c.get_offsets()) for c in dots) == 8


def test_embedding_comparison_single_metric_no_ci_and_errors(evaluate_table):
    t = evaluate_table[evaluate_table.seed == 0].drop(columns=["ci_low", "ci_high", "seed"])
    _, ax = plt.subplots()
    out = mad.pl.embedding_comparison(
        t, metrics=["ARI"], reps=["pixel_pca", "X_mad"], ax=ax, show=False
    )
    assert out is ax and len(ax.patches) == 2
    assert not [c for c in ax.collections if c.__class__.__name__ == "LineCollection"]
    with pytest.raises(KeyError, match="Recall"):
        mad.pl.embedding_comparison(t, metrics=["Recall"], show=False)
    with pytest.raises(ValueError, match="single metric"):
        mad.pl.embedding_comparison(t, ax=ax, show=False)
    with pytest.raises(KeyError, match="rep_key"):
        mad.pl.embedding_comparison(t.rename(columns={"rep": "embedding"}), show=False)
    fig = mad.pl.embedding_comparison(t, return_fig=True)
    assert isinstance(fig, plt.Figure)
