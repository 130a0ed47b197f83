"""The main plots against stored images (tests/pl/baseline/*.png).

After an intended change of a plot, regenerate the images with
``MADSPATIAL_REGEN_BASELINES=1 .venv/bin/python -m pytest tests/pl/test_images.py`` and look at
them before committing. The tolerance (RMS on 0-255) lets font and antialiasing differences
between matplotlib/freetype versions pass, while a moved, missing or recoloured element fails.
"""

from __future__ import annotations

import madspatial as mad


def test_volcano_image(de_table, check_image):
    fig = mad.pl.volcano(de_table, label_top=6, title="cluster 3 vs rest", return_fig=True)
    check_image(fig, "volcano")


def test_gene_correlation_image(pearson_table, check_image):
    fig = mad.pl.gene_correlation(pearson_table, return_fig=True)
    check_image(fig, "gene_correlation")


def test_spatial_expression_image(spatial_adata, check_image):
    fig = mad.pl.spatial_expression(spatial_adata, genes=["EPCAM", "CD3E"], return_fig=True)
    check_image(fig, "spatial_expression")


def test_embedding_comparison_image(evaluate_table, check_image):
    fig = mad.pl.embedding_comparison(evaluate_table, return_fig=True)
    check_image(fig, "embedding_comparison")


def test_enrichment_image(enrich_table, check_image):
    fig = mad.pl.enrichment(enrich_table, title="cluster 3 markers", return_fig=True)
    check_image(fig, "enrichment")


def test_training_curves_image(history, check_image):
    partial = {"step": list(range(40)), "loss": [5.5 - 0.05 * i for i in range(40)], "ln_k": 5.545}
    fig = mad.pl.training_curves({"mad": history, "morphology": partial}, return_fig=True)
    check_image(fig, "training_curves")


def test_cell_views_image(view_store, check_image):
    fig = mad.pl.cell_views(view_store, cells=[0, 3, 5, 2], ncols=2, return_fig=True)
    check_image(fig, "cell_views")
