from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import madspatial as mad
from madspatial.pl._expression import measured_expression, share_above_diagonal


def test_measured_expression_normalizes_counts_only(spatial_adata):
    a = spatial_adata
    vals, did = measured_expression(a, ["EPCAM", "ACTB"])
    assert did
    totals = a.X.sum(1)
    expect = np.log1p(a.X[:, [0, 3]] / totals[:, None] * 1e4)
    np.testing.assert_allclose(vals, expect, rtol=1e-5)
    # an already log-normalized matrix is taken as it is
    a.X = np.log1p(a.X)
    vals2, did2 = measured_expression(a, ["EPCAM"])
    assert not did2
    np.testing.assert_allclose(vals2[:, 0], np.log1p(a.layers["counts"][:, 0]), rtol=1e-5)


def test_spatial_expression_panels_scale_and_metrics(spatial_adata):
    a = spatial_adata
    axes = mad.pl.spatial_expression(a, genes=["EPCAM", "CD3E"], show=False)
    assert axes.shape == (2, 2)
    # shared colour scale within a gene
    for i in range(2):
        c0, c1 = axes[i, 0].collections[0], axes[i, 1].collections[0]
        assert c0.get_clim() == c1.get_clim()
    assert axes[0, 0].collections[0].get_clim() != axes[1, 0].collections[0].get_clim()
    # y grows downwards like the image
    assert axes[0, 0].yaxis_inverted()
    # Pearson and MAE of the prediction against the normalized measurement
    meas, _ = measured_expression(a, ["EPCAM"])
    pred = a.layers["mad_pred"][:, 0]
    r = np.corrcoef(meas[:, 0], pred)[0, 1]
    mae = np.abs(meas[:, 0] - pred).mean()
    assert axes[0, 1].get_title() == f"EPCAM · mad_pred\nr = {r:.2f}, MAE = {mae:.2f}"
    assert r > 0.5  # the fixture's prediction is the measurement plus noise
    # points are at the cells' coordinates (sorted by value)
    offs = axes[0, 0].collections[0].get_offsets()
    assert sorted(map(tuple, np.asarray(offs))) == sorted(map(tuple, a.obsm["spatial"]))
    fig = mad.pl.spatial_expression(a, genes="MKI67", layers=["measured"], return_fig=True)
    assert isinstance(fig, plt.Figure)


def test_spatial_expression_nan_prediction_and_errors(spatial_adata):
    a = spatial_adata
    a.layers["mad_pred"][:10, 0] = np.nan  # cells without a prediction are skipped in r/MAE
    axes = mad.pl.spatial_expression(a, genes=["EPCAM"], show=False)
    assert "r = " in axes[0, 1].get_title() and "nan" not in axes[0, 1].get_title()
    with pytest.raises(KeyError, match="NOPE"):
        mad.pl.spatial_expression(a, genes=["EPCAM", "NOPE"], show=False)
    with pytest.raises(KeyError, match=r"mad\.tl\.fit_decoder"):
        mad.pl.spatial_expression(a, genes="EPCAM", layers=("measured", "pred2"), show=False)
    with pytest.raises(KeyError, match="spatial_key='xy'"):
        mad.pl.spatial_expression(a, genes="EPCAM", spatial_key="xy", show=False)


def test_gene_correlation_bars_sorted_and_share(pearson_table):
    t = pearson_table
    bar_ax, sc_ax = mad.pl.gene_correlation(t, show=False)
    heights = [p.get_height() for p in bar_ax.patches]
    assert heights == sorted(heights, reverse=True)
    np.testing.assert_allclose(heights, t["X_mad"].sort_values(ascending=False))
    assert [tk.get_text() for tk in bar_ax.get_xticklabels()][:3] == list(
        t["X_mad"].sort_values(ascending=False).index[:3]
    )
    # baselines follow the same gene order
    line = next(ln for ln in bar_ax.get_lines() if ln.get_label().startswith("pixel_pca ("))
    np.testing.assert_allclose(
        line.get_ydata(), t.loc[t["X_mad"].sort_values(ascending=False).index, "pixel_pca"]
    )
    share = share_above_diagonal(t, reference="X_mad", baseline="X_mad_morphology")
    assert share == pytest.approx((t["X_mad"] > t["X_mad_morphology"]).mean())
    labels = [tx.get_text() for tx in sc_ax.get_legend().get_texts()]
    assert f"X_mad_morphology: {share:.0%} of genes above" in labels


def test_gene_correlation_options_and_errors(pearson_table):
    t = pearson_table
    _, ax = plt.subplots()
    out = mad.pl.gene_correlation(t, baselines=["pixel_pca"], kind="scatter", ax=ax, show=False)
    assert out is ax and ax.get_xlabel() == "pixel_pca Pearson r"
    big = pd.DataFrame(
        {"X_mad": np.linspace(0, 1, 100), "b": np.linspace(1, 0, 100)},
        index=[f"g{i}" for i in range(100)],
    )
    ax2 = mad.pl.gene_correlation(big, kind="bars", show=False)
    assert ax2.get_xlabel() == "100 genes, sorted by X_mad" and not ax2.get_xticklabels()
    # a dict of per-gene Series works too
    mad.pl.gene_correlation({"X_mad": t["X_mad"], "pixel_pca": t["pixel_pca"]}, show=False)
    with pytest.raises(KeyError, match="reference='X_other'"):
        mad.pl.gene_correlation(t, reference="X_other", show=False)
    with pytest.raises(KeyError, match="nope"):
        mad.pl.gene_correlation(t, baselines=["nope"], show=False)
    with pytest.raises(ValueError, match="single panel"):
        mad.pl.gene_correlation(t, ax=ax, show=False)
    with pytest.raises(TypeError, match="DataFrame"):
        mad.pl.gene_correlation([0.1, 0.2], show=False)
