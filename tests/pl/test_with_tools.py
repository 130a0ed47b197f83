"""The plots read the real outputs of mad.tl (column names, long tables) without adapters."""

from __future__ import annotations

import numpy as np
import pandas as pd

import madspatial as mad


def test_volcano_and_enrichment_on_tl_outputs(spatial_adata):
    a = spatial_adata
    a.obs["side"] = pd.Categorical(np.where(a.obsm["spatial"][:, 0] > 150, "right", "left"))
    de = mad.tl.differential_expression(a, groupby="side", group="right", inplace=False)
    ax = mad.pl.volcano(de, lfc=0.5, show=False)
    assert ax.get_title() == "right vs rest"
    # EPCAM rises left to right in the fixture: called up on the right side and labelled
    assert "EPCAM" in {t.get_text() for t in ax.texts}
    sets = {"epithelial": ["EPCAM", "MKI67"], "housekeeping": ["ACTB", "GAPDH"]}
    res = mad.tl.enrich(de, gene_sets=sets, background=a, fdr=0.05, min_log2fc=0.5)
    assert len(res) and res["term"].iloc[0] == "epithelial"
    ax = mad.pl.enrichment(res, show=False)
    top = max(zip(ax.get_yticks(), [t.get_text() for t in ax.get_yticklabels()], strict=True))
    assert top[1] == "epithelial"
    # overlap shown as k/n from tl.enrich's overlap and set_size columns
    row = res.iloc[0]
    assert ax.texts[0].get_text().strip() == f"{row['overlap']}/{row['set_size']}"


def test_gene_correlation_reads_evaluates_long_table(pearson_table):
    long = pearson_table.reset_index().melt(id_vars="gene", var_name="rep", value_name="pearson")
    long = pd.concat([long.assign(seed=0), long.assign(seed=1)])
    bar_ax, _ = mad.pl.gene_correlation(long, show=False)
    np.testing.assert_allclose(
        [p.get_height() for p in bar_ax.patches],
        pearson_table["X_mad"].sort_values(ascending=False),
    )
