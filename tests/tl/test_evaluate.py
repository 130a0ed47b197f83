import logging

import numpy as np
import pandas as pd
import pytest

from madspatial.tl._evaluate import evaluate

FAST = {"max_epochs": 40, "patience": 10}


@pytest.fixture
def adata(toy_embedding_adata):
    a = toy_embedding_adata(n_per=40, n_genes=12)
    rng = np.random.default_rng(5)
    a.obsm["X_noise"] = rng.normal(size=a.obsm["X_mad"].shape).astype(np.float32)
    # views of one shared space: each cell's two views are close, as MAD trains them to be
    morph = a.obsm["X_mad_morphology"]
    a.obsm["X_mad_microenvironment"] = morph + 0.05 * rng.normal(size=morph.shape).astype(
        np.float32
    )
    return a


def test_evaluate_returns_a_tidy_table_that_ranks_embeddings(adata):
    table = evaluate(
        adata,
        reps=["X_mad", "X_noise"],
        labels="cell_type",
        expression="counts",
        seeds=(0, 1),
        n_boot=50,
        decoder_kwargs=FAST,
    )
    assert list(table.columns) == ["rep", "metric", "seed", "value", "ci_low", "ci_high", "n"]
    assert str(table["seed"].dtype) == "Int64"
    wide = table.groupby(["metric", "rep"])["value"].mean().unstack()
    for metric in (
        "louvain_ari",
        "kmeans_ari",
        "knn_accuracy",
        "linear_accuracy",
        "decoder_accuracy",
        "expression_pearson",
    ):
        assert wide.loc[metric, "X_mad"] > wide.loc[metric, "X_noise"] + 0.3, metric
    assert wide.loc["kmeans_ari", "X_mad"] > 0.95 and wide.loc["knn_accuracy", "X_mad"] == 1.0
    ci = table.dropna(subset=["ci_low"])
    assert ((ci["ci_low"] <= ci["value"] + 1e-9) & (ci["value"] <= ci["ci_high"] + 1e-9)).all()
    per_seed = table[table["metric"] == "knn_accuracy"]
    assert sorted(per_seed["seed"].tolist()) == [0, 0, 1, 1] and (per_seed["n"] == 120).all()
    recall = table[table["metric"].str.startswith("recall@")]
    assert set(recall["rep"]) == {"X_mad"} and recall["seed"].isna().all()
    assert recall.set_index("metric").loc["recall@10", "value"] > 0.5  # chance: 10/120
    entry = adata.uns["mad_evaluate"]
    assert entry["results"].equals(table)
    assert entry["per_gene"].shape == (2 * 2 * 12, 4)
    assert "mad_decoder_cell_type" not in adata.uns  # inner fits leave adata alone


def test_evaluate_is_reproducible_and_respects_metric_subsets(adata):
    kw = dict(reps="X_mad", labels="cell_type", seeds=(3,), n_boot=20, metrics=["kmeans", "knn"])
    a = evaluate(adata, inplace=False, **kw)
    b = evaluate(adata, inplace=False, **kw)
    pd.testing.assert_frame_equal(a, b)
    assert set(a["metric"]) == {"kmeans_ari", "kmeans_purity", "knn_accuracy"}
    assert "mad_evaluate" not in adata.uns


def test_evaluate_groups_and_rare_classes(adata, caplog):
    adata.obs["cell_type"] = adata.obs["cell_type"].astype(str)
    adata.obs.loc[adata.obs_names[:2], "cell_type"] = "rare"
    adata.obs.loc[adata.obs_names[2], "cell_type"] = np.nan
    with caplog.at_level(logging.WARNING, logger="madspatial"):
        t = evaluate(
            adata,
            labels="cell_type",
            groupby="slide",
            seeds=(0,),
            n_boot=10,
            metrics=["knn", "decoder"],
            n_splits=4,
            decoder_kwargs=FAST,
        )
    assert "'rare': 2" in caplog.text
    assert t.set_index("metric").loc["knn_accuracy", "n"] == 117


def test_evaluate_bad_input(adata):
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate(adata, labels="cell_type", metrics=["ari"])
    with pytest.raises(KeyError, match="X_nope"):
        evaluate(adata, reps=["X_nope"], labels="cell_type")
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate(adata, metrics=["knn"])
    adata.obsm["X_noise"][:4] = np.nan
    with pytest.raises(ValueError, match="NaN/inf in 4 of 120 rows"):
        evaluate(adata, reps=["X_mad", "X_noise"], labels="cell_type")


def test_everything_the_downstream_tools_write_round_trips_through_h5ad(adata, tmp_path):
    import anndata as ad

    import madspatial as mad

    mad.tl.louvain(adata, n_neighbors=10)
    mad.tl.kmeans(adata, k_range=(2, 4))
    dec = mad.tl.fit_decoder(adata, target="counts", max_epochs=3)
    mad.tl.predict(dec, adata)
    mad.tl.cca(adata, groupby="cell_type", n_components=2)
    mad.tl.pseudotime(adata, root=0, expression="counts", n_neighbors=30)
    mad.tl.differential_expression(adata, groupby="cell_type", group="type0")
    evaluate(adata, labels="cell_type", seeds=(0,), n_boot=5, metrics=["kmeans", "recall"])
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    pd.testing.assert_frame_equal(
        back.uns["mad_evaluate"]["results"], adata.uns["mad_evaluate"]["results"]
    )
    assert back.uns["mad_decoder_expression"]["per_gene"].shape == (12, 2)
    assert back.uns["mad_de"]["type0_vs_rest"]["results"]["gene"].tolist() == (
        adata.uns["mad_de"]["type0_vs_rest"]["results"]["gene"].tolist()
    )
    np.testing.assert_array_equal(back.layers["mad_pred"], adata.layers["mad_pred"])
