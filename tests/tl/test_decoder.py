import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from madspatial.tl import _decoder as dm

FAST = {"max_epochs": 150, "patience": 15}


def _linear_adata(n=400, d=8, g=5, seed=0):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, d)).astype(np.float32)
    W = rng.normal(size=(d, g))
    expr = emb @ W + 0.1 * rng.normal(size=(n, g))
    adata = ad.AnnData(
        np.zeros((n, g), np.float32),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(n)]),
        var=pd.DataFrame(index=[f"G{j}" for j in range(g)]),
    )
    adata.layers["expr"] = expr.astype(np.float32)
    adata.obsm["X_mad"] = emb
    return adata, expr


def test_decoder_learns_a_planted_linear_map():
    adata, expr = _linear_adata()
    dec = dm.fit_decoder(adata, target="expr", seed=0, **FAST)
    assert (
        dec.kind == "expression" and dec.normalize == "none" and dec.genes == list(adata.var_names)
    )
    assert dec.metrics["evaluated_on"] == "test" and dec.metrics["n_cells"] == 60
    assert dec.metrics["mean_pearson"] > 0.9
    entry = adata.uns["mad_decoder_expression"]
    assert entry["metrics"]["mean_pearson"] == dec.metrics["mean_pearson"]
    assert list(entry["per_gene"].columns) == ["pearson", "mae"]
    dm.predict(dec, adata)
    test = adata.obs_names.get_indexer(dec.split["test"])
    r = np.corrcoef(adata.layers["mad_pred"][test, 0], expr[test, 0])[0, 1]
    assert r == pytest.approx(dec.metrics["pearson_per_gene"]["G0"], abs=1e-5)
    assert dec.history["epochs"] <= 150 and len(dec.history["val_loss"]) == dec.history["epochs"]


def test_categorical_decoder_both_losses_and_predict(toy_embedding_adata):
    adata = toy_embedding_adata()
    for loss in ("smooth_l1", "cross_entropy"):
        dec = dm.fit_decoder(adata, target="cell_type", loss=loss, seed=0, **FAST)
        assert dec.kind == "categorical" and dec.classes == ["type0", "type1", "type2"]
        assert dec.metrics["accuracy"] > 0.95, loss
    dm.predict(dec, adata)
    pred = adata.obs["mad_pred_cell_type"]
    assert list(pred.cat.categories) == dec.classes
    assert (pred == adata.obs["cell_type"].astype(str)).mean() > 0.95
    proba = dec.predict_proba(adata.obsm["X_mad"])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_class_balancing_on_imbalanced_classes(toy_embedding_adata):
    adata = toy_embedding_adata(n_per=60)
    keep = np.r_[0:60, 60:75, 120:180]  # type1 is rare
    adata = adata[keep].copy()
    for balance in ("weights", "sampler"):
        dec = dm.fit_decoder(adata, target="cell_type", balance=balance, seed=1, **FAST)
        assert dec.metrics["balanced_accuracy"] > 0.9, balance


def test_counts_are_log_normalized_and_gene_subsets(toy_embedding_adata):
    adata = toy_embedding_adata()
    dec = dm.fit_decoder(adata, target=["GENE1", "GENE3"], seed=0, **FAST)
    assert dec.normalize == "log1p" and dec.genes == ["GENE1", "GENE3"]
    dm.predict(dec, adata)
    layer = adata.layers["mad_pred"]
    assert np.isnan(layer[:, 0]).all() and np.isfinite(layer[:, [1, 3]]).all()
    imaging_only = ad.AnnData(obs=adata.obs[[]].copy(), obsm={"X_mad": adata.obsm["X_mad"]})
    dm.predict(dec, imaging_only)
    assert list(imaging_only.obsm["mad_pred"].columns) == ["GENE1", "GENE3"]
    np.testing.assert_allclose(imaging_only.obsm["mad_pred"].to_numpy(), layer[:, [1, 3]])


def test_continuous_obs_target():
    adata, expr = _linear_adata(n=300)
    adata.obs["score"] = expr[:, 0]
    adata.obs.loc[adata.obs_names[:5], "score"] = np.nan  # unlabelled cells are skipped
    dec = dm.fit_decoder(adata, target="score", seed=0, **FAST)
    assert dec.kind == "continuous" and dec.metrics["mean_pearson"] > 0.9
    assert sum(len(v) for v in dec.split.values()) == 295
    dm.predict(dec, adata)
    assert np.isfinite(adata.obs["mad_pred_score"]).all()


def test_save_load_round_trip_and_reproducibility(tmp_path, toy_embedding_adata):
    adata = toy_embedding_adata(n_per=30)
    state = torch.random.get_rng_state()
    dec = dm.fit_decoder(adata, target="cell_type", seed=3, max_epochs=30)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    again = dm.fit_decoder(adata, target="cell_type", seed=3, max_epochs=30)
    X = adata.obsm["X_mad"]
    np.testing.assert_array_equal(dec.predict_proba(X), again.predict_proba(X))
    path = dec.save(tmp_path / "dec")
    loaded = dm.Decoder.load(path)
    np.testing.assert_allclose(loaded.predict_proba(X), dec.predict_proba(X), rtol=1e-6)
    assert loaded.metrics == dec.metrics and loaded.classes == dec.classes
    assert loaded.split == dec.split
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"backbone": "vit_pico"}')
    (tmp_path / "other" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not a decoder"):
        dm.Decoder.load(tmp_path / "other")


def test_group_aware_and_obs_splits(toy_embedding_adata):
    adata = toy_embedding_adata(n_slides=6)
    dec = dm.fit_decoder(adata, target="cell_type", groupby="slide", seed=0, max_epochs=20)
    slide = adata.obs["slide"]
    seen = [set(slide[dec.split[s]]) for s in ("train", "val", "test")]
    assert all(seen) and not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    adata.obs["fold"] = np.where(np.arange(adata.n_obs) % 5 == 0, "test", "train")
    adata.obs.loc[adata.obs_names[1::5], "fold"] = "Validation"
    dec = dm.fit_decoder(adata, target="cell_type", split="fold", max_epochs=20)
    assert set(dec.split["test"]) == set(adata.obs_names[::5])
    assert len(dec.split["val"]) == adata.n_obs // 5


def test_make_split_is_stratified():
    labels = np.repeat([0, 1], [50, 4])
    out = dm.make_split(54, fractions=(0.7, 0.15, 0.15), labels=labels, seed=0)
    for s in ("train", "val", "test"):
        assert (labels[out == s] == 1).any()
    assert (out == "test").sum() == 8 + 1


def test_decoder_bad_input(toy_embedding_adata):
    adata = toy_embedding_adata(n_per=20)
    with pytest.raises(KeyError, match=r"neither an adata.obs column \(\['cell_type', 'slide'\]\)"):
        dm.fit_decoder(adata, target="celltype")
    adata.obs["rare"] = adata.obs["cell_type"].astype(str)
    adata.obs.loc[adata.obs_names[:2], "rare"] = "tiny"
    with pytest.raises(ValueError, match=r"too few cells per class.*'tiny': 2"):
        dm.fit_decoder(adata, target="rare")
    two_slides = toy_embedding_adata(n_per=20, n_slides=2)
    with pytest.raises(ValueError, match="needs at least 3 groups, groupby has 2"):
        dm.fit_decoder(two_slides, target="cell_type", groupby="slide")
    bad = adata.copy()
    bad.obsm["X_mad"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN/inf in 1 of 60 rows"):
        dm.fit_decoder(bad, target="cell_type")
    with pytest.raises(KeyError, match="1 gene"):
        dm.fit_decoder(adata, target=["GENE1", "NOPE"])
    dec = dm.fit_decoder(adata, target="cell_type", max_epochs=2)
    with pytest.raises(ValueError, match="expects embeddings with 16 dimensions"):
        dec.predict(np.zeros((3, 4)))
