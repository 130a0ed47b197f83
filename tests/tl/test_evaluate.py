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


def test_hest_protocol_ranks_embeddings_and_matches_a_hand_computation(adata):
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GroupKFold
    from sklearn.preprocessing import StandardScaler

    from madspatial.metrics import pearson_per_gene
    from madspatial.tl._inputs import get_expression

    table = evaluate(
        adata,
        reps=["X_mad", "X_noise"],
        expression="counts",
        groupby="slide",
        metrics=["hest"],
        seeds=(0,),
        n_boot=20,
        hest_genes=5,
        hest_components=4,
    )
    v = table.set_index("rep")["value"]
    assert set(table["metric"]) == {"hest_pearson"}
    assert v["X_mad"] > 0.5 and v["X_mad"] > v["X_noise"] + 0.3
    # by hand: 4 slides -> 4 grouped folds; top-5 variable genes; PCA 4; HEST's ridge
    Y, _, _ = get_expression(adata, layer="counts", normalize="auto")
    top = np.argsort(-Y.var(0), kind="stable")[:5]
    X, g = adata.obsm["X_mad"], adata.obs["slide"].astype(str).to_numpy()
    per_fold = []
    for tr, te in GroupKFold(4).split(X, groups=g):
        sc = StandardScaler().fit(X[tr])
        pca = PCA(4, random_state=0).fit(sc.transform(X[tr]))
        z_tr, z_te = (pca.transform(sc.transform(X[i])) for i in (tr, te))
        yt = Y[tr][:, top]
        reg = Ridge(alpha=100 / (4 * 5), solver="lsqr", fit_intercept=False, max_iter=1000)
        reg.fit(z_tr, yt - yt.mean(0))
        pred = reg.predict(z_te) + yt.mean(0)
        per_fold.append(np.nanmean(pearson_per_gene(Y[te][:, top], pred)))
    assert v["X_mad"] == pytest.approx(np.mean(per_fold), abs=1e-4)
    assert adata.uns["mad_evaluate"]["per_gene_hest"].shape == (2 * 5, 4)


def test_knn_expression_regression_matches_a_hand_computation(adata):
    from sklearn.model_selection import GroupKFold

    from madspatial.metrics import pearson_per_gene
    from madspatial.tl._inputs import get_expression

    table = evaluate(
        adata,
        reps=["X_mad", "X_noise"],
        expression="counts",
        groupby="slide",
        metrics=["knn_expression"],
        seeds=(0,),
        n_boot=20,
        n_neighbors=7,
        knn_genes=6,
    )
    v = table.set_index("rep")["value"]
    assert set(table["metric"]) == {"knn_expression_pearson"}
    assert v["X_mad"] > 0.5 and v["X_mad"] > v["X_noise"] + 0.3
    # by hand: 4 grouped folds, the 6 most variable genes, the mean of the 7 nearest
    # training cells by cosine distance
    Y, _, _ = get_expression(adata, layer="counts", normalize="auto")
    top = np.argsort(-Y.var(0), kind="stable")[:6]
    X, g = adata.obsm["X_mad"].astype(np.float64), adata.obs["slide"].astype(str).to_numpy()
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    per_fold = []
    for tr, te in GroupKFold(4).split(X, groups=g):
        near = np.argsort(-(unit[te] @ unit[tr].T), axis=1, kind="stable")[:, :7]
        pred = Y[tr][:, top][near].mean(axis=1)
        per_fold.append(np.nanmean(pearson_per_gene(Y[te][:, top], pred)))
    assert v["X_mad"] == pytest.approx(np.mean(per_fold), abs=1e-4)
    per_gene = adata.uns["mad_evaluate"]["per_gene_knn_expression"]
    assert per_gene.shape == (2 * 6, 4) and set(per_gene["rep"]) == {"X_mad", "X_noise"}
    assert adata.uns["mad_evaluate"]["params"]["knn_genes"] == 6
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate(adata, reps=["X_mad"], metrics=["knn_expression"], inplace=False)


def test_concatenated_reps_are_scored_as_one(adata):
    table = evaluate(
        adata,
        reps=[("X_mad_morphology", "X_mad_microenvironment"), "X_noise"],
        labels="cell_type",
        metrics=["knn"],
        seeds=(0,),
        n_boot=0,
        inplace=False,
    )
    assert list(table["rep"]) == ["X_mad_morphology+X_mad_microenvironment", "X_noise"]
    named = evaluate(
        adata,
        reps={"both": ["X_mad_morphology", "X_mad_microenvironment"]},
        labels="cell_type",
        metrics=["knn"],
        seeds=(0,),
        n_boot=0,
        inplace=False,
    )
    assert named["rep"].tolist() == ["both"] and named["value"][0] == table["value"][0]
    with pytest.raises(ValueError, match="lists of them"):
        evaluate(adata, reps=[[]], labels="cell_type", metrics=["knn"], inplace=False)


def test_split_column_fits_on_train_and_scores_test_only(adata):
    import madspatial as mad

    mad.pp.split(adata, method="spatial_blocks", block_size=250.0, guard=60.0, seed=0)
    split = adata.obs["mad_split"].astype(str)
    n_test = int((split == "test").sum())
    assert (split == "guard").any()
    table = evaluate(
        adata,
        reps=["X_mad", "X_noise"],
        labels="cell_type",
        expression="counts",
        split="mad_split",
        metrics=["louvain", "knn", "linear", "decoder", "expression", "hest"],
        seeds=(0,),
        n_boot=0,
        hest_genes=5,
        decoder_kwargs=FAST,
    )
    n = table.set_index(["rep", "metric"])["n"]
    for metric in ("louvain_ari", "knn_accuracy", "linear_accuracy", "decoder_accuracy"):
        assert n["X_mad", metric] == n_test, metric
    assert n["X_mad", "expression_pearson"] == n_test and n["X_mad", "hest_pearson"] == n_test
    wide = table.set_index(["rep", "metric"])["value"]
    assert wide["X_mad", "knn_accuracy"] == 1.0 and wide["X_noise", "knn_accuracy"] < 0.7
    assert wide["X_mad", "hest_pearson"] > wide["X_noise", "hest_pearson"] + 0.3
    adata.obs["bad"] = "train"
    with pytest.raises(ValueError, match="needs 'train' and 'test' cells"):
        evaluate(adata, reps=["X_mad"], labels="cell_type", split="bad", metrics=["knn"])
