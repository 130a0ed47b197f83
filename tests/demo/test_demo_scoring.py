"""The demo's scores are ``tl.evaluate``'s on the same embeddings, and the scores it keeps
for itself agree with it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from madspatial import metrics, tl
from madspatial._demo import MODELS
from madspatial._demo import _scoring as scoring

EPOCHS = 5


_SCORED: dict = {}  # the fixture's value, computed once for the module's tests (read only)


@pytest.fixture
def scored(toy_embedding_adata):
    """A toy AnnData with the three models' embeddings (MAD with both view tokens), a rare
    class tl.evaluate leaves out, Louvain clusters as the demo draws them, and every score
    of the demo."""
    if not _SCORED:
        _SCORED["value"] = _score(toy_embedding_adata)
    return _SCORED["value"]


def _score(toy_embedding_adata):
    import anndata as ad

    base = toy_embedding_adata(n_per=40, n_types=4, seed=1)
    rng = np.random.default_rng(1)
    extra = base[:3].copy()  # three cells of a class too small to score
    extra.obs_names = [f"rare{i}" for i in range(3)]
    adata = ad.concat([base, extra])
    adata.obs["cell_type"] = pd.Categorical(list(base.obs["cell_type"].astype(str)) + ["rare"] * 3)
    X = adata.obsm["X_mad"]
    adata.obsm[MODELS[1].rep] = X + rng.normal(size=X.shape).astype(np.float32) * 2
    adata.obsm[MODELS[2].rep] = rng.normal(size=X.shape).astype(np.float32)
    for m in MODELS:
        tl.louvain(adata, use_rep=m.rep, key_added=m.louvain_key, seed=0)
    parts = [
        scoring.cluster_scores(adata, MODELS, labels="cell_type", seed=0),
        scoring.label_scores(adata, MODELS, labels="cell_type", seed=0, decoder_epochs=EPOCHS),
    ]
    expr, per_gene = scoring.expression_scores(adata, MODELS, seed=0, decoder_epochs=EPOCHS)
    parts += [expr, scoring.recall_scores(adata, MODELS)]
    demo = pd.concat(parts, ignore_index=True)
    return adata, demo, per_gene


def _as_dict(df: pd.DataFrame) -> dict[tuple[str, str], float]:
    return {(r.model, r.metric): r.value for r in df.itertuples(index=False)}


def test_demo_scores_equal_tl_evaluate_on_the_same_embeddings(scored):
    adata, demo, _ = scored
    reps = [m.rep for m in MODELS]
    names = {m.rep: m.name for m in MODELS}
    dec = {"max_epochs": EPOCHS, "patience": 10}
    ref = pd.concat(
        [
            tl.evaluate(
                adata,
                reps=reps,
                labels="cell_type",
                seeds=(0,),
                n_boot=0,
                metrics=("louvain", "knn", "decoder", "recall"),
                recall_k=(10,),
                decoder_kwargs={"loss": "cross_entropy", **dec},
                inplace=False,
            ),
            tl.evaluate(
                adata,
                reps=reps,
                expression="X",
                seeds=(0,),
                n_boot=0,
                metrics=("expression",),
                decoder_kwargs=dec,
                inplace=False,
            ),
        ]
    )
    ref = ref[ref["metric"] != "louvain_n_clusters"]  # the demo counts all cells' clusters
    expected = {
        (names[r.rep], {"recall@10": "crossview_recall@10"}.get(r.metric, r.metric)): r.value
        for r in ref.itertuples(index=False)
    }
    got = {k: v for k, v in _as_dict(demo).items() if k[1] != "louvain_n_clusters"}
    assert set(got) == set(expected)
    assert got == pytest.approx(expected, abs=1e-9)
    # every metric the report shows from tl.evaluate, for every model (recall: MAD only)
    metric_names = {k[1] for k in got}
    assert metric_names == {
        "louvain_ari",
        "louvain_purity",
        "knn_accuracy",
        "decoder_accuracy",
        "decoder_balanced_accuracy",
        "expression_pearson",
        "crossview_recall@10",
    }
    assert [k[0] for k in got if k[1] == "crossview_recall@10"] == ["MAD"]


def test_scored_clusters_are_the_drawn_ones(scored):
    adata, demo, _ = scored
    d = _as_dict(demo)
    labelled = adata.obs["cell_type"].astype(str) != "rare"  # tl.evaluate leaves it out
    for m in MODELS:
        drawn = adata.obs[m.louvain_key].astype(str).to_numpy()
        assert d[(m.name, "louvain_n_clusters")] == len(set(drawn))
        truth = adata.obs["cell_type"].astype(str).to_numpy()
        ari = metrics.ari(truth[labelled], drawn[labelled])
        assert d[(m.name, "louvain_ari")] == pytest.approx(ari, abs=1e-12)
    # the report's column order: count, ARI, purity per model
    assert demo["metric"].iloc[:3].tolist() == [
        "louvain_n_clusters",
        "louvain_ari",
        "louvain_purity",
    ]
    # the planted structure is found by MAD and not by the random embedding
    assert d[("MAD", "louvain_ari")] > 0.8 > 0.2 > d[("microenvironment only", "louvain_ari")]


def test_pair_predictions_score_what_tl_evaluate_scores(scored):
    adata, demo, _ = scored
    d = _as_dict(demo)
    truth, preds = scoring.knn_predictions(adata, MODELS, labels="cell_type", seed=0)
    assert len(truth) == adata.n_obs - 3 and "rare" not in set(truth)
    for m in MODELS:
        assert np.mean(preds[m.name] == truth) == pytest.approx(d[(m.name, "knn_accuracy")])
    pairs = scoring.pair_accuracy(
        truth, preds, {"niche": [("type0", "type1")], "morphology": [("type2", "rare")]}
    )
    # the 'rare' pair has 40 scored cells of type2 only; both rows kept, in the given order
    assert pairs["pair"].tolist() == ["type0 / type1", "type2 / rare"]
    assert pairs["told apart by"].tolist() == ["niche only", "morphology only"]
    assert pairs["cells"].tolist() == [80, 40]
    sel = np.isin(truth, ["type0", "type1"])
    assert pairs.loc[0, "MAD"] == pytest.approx(np.mean(preds["MAD"][sel] == truth[sel]))


def test_per_gene_pearson_is_tl_evaluates(scored):
    adata, demo, per_gene = scored
    d = _as_dict(demo)
    assert list(per_gene.columns) == [m.name for m in MODELS]
    assert list(per_gene.index) == list(adata.var_names)
    for m in MODELS:
        assert per_gene[m.name].mean() == pytest.approx(d[(m.name, "expression_pearson")])
    long = adata.uns["mad_evaluate"]["per_gene"]
    assert set(long["rep"]) == {m.rep for m in MODELS}


def test_cluster_scores_without_labels_only_count(toy_embedding_adata):
    adata = toy_embedding_adata(n_per=20, n_types=2)
    mad = MODELS[0]
    tl.louvain(adata, use_rep=mad.rep, key_added=mad.louvain_key, seed=0)
    out = scoring.cluster_scores(adata, [mad], labels=None, seed=0)
    assert out.to_dict("records") == [
        {
            "model": "MAD",
            "metric": "louvain_n_clusters",
            "value": float(adata.obs[mad.louvain_key].nunique()),
        }
    ]
