import numpy as np
import pytest

from madspatial.tl._de import differential_expression


def _planted(toy_embedding_adata):
    adata = toy_embedding_adata(n_per=50, n_genes=30)
    rng = np.random.default_rng(0)
    n = adata.n_obs
    counts = rng.poisson(20.0, size=(n, 30)).astype(np.float32)
    is_a = (adata.obs["cell_type"] == "type0").to_numpy()
    counts[is_a, 7] = rng.poisson(160.0, size=is_a.sum())  # GENE7: 8x up in type0
    counts[~is_a, 12] = rng.poisson(80.0, size=(~is_a).sum())  # GENE12: 4x down in type0
    adata.X = counts
    adata.layers["counts"] = counts.copy()
    return adata


def test_de_finds_a_planted_gene(toy_embedding_adata):
    adata = _planted(toy_embedding_adata)
    df = differential_expression(adata, groupby="cell_type", group="type0")
    assert list(df.columns[:5]) == ["gene", "log2FC", "pvalue", "fdr", "score"]
    assert df.iloc[0]["gene"] == "GENE7" and df.iloc[-1]["gene"] == "GENE12"
    top = df.set_index("gene")
    assert top.loc["GENE7", "log2FC"] == pytest.approx(np.log2(8), abs=0.35)
    assert top.loc["GENE12", "log2FC"] == pytest.approx(-2.0, abs=0.35)
    assert top.loc["GENE7", "fdr"] < 1e-10 and top.loc["GENE12", "fdr"] < 1e-10
    # the other genes only move by the per-cell normalisation (GENE7 inflates totals)
    assert top.drop(["GENE7", "GENE12"])["log2FC"].abs().max() < 0.4
    entry = adata.uns["mad_de"]["type0_vs_rest"]
    assert entry["params"]["normalize"] == "log1p" and entry["params"]["n_group"] == 50
    assert entry["results"].equals(df)


def test_de_against_a_reference_and_on_predicted_layer(toy_embedding_adata):
    adata = _planted(toy_embedding_adata)
    measured = differential_expression(
        adata, groupby="cell_type", group="type0", reference="type1", method="t-test"
    )
    assert measured.iloc[0]["gene"] == "GENE7"
    # a "predicted" layer: log-normalized values for half of the genes, NaN elsewhere
    from madspatial.tl._inputs import log_normalize

    pred = log_normalize(adata.X)
    pred[:, 15:] = np.nan
    adata.layers["mad_pred"] = pred
    df = differential_expression(
        adata, groupby="cell_type", group="type0", reference="type1", layer="mad_pred"
    )
    assert len(df) == 15 and df.iloc[0]["gene"] == "GENE7"
    assert set(adata.uns["mad_de"]) == {"type0_vs_type1"}
    assert adata.uns["mad_de"]["type0_vs_type1"]["params"]["layer"] == "mad_pred"


def test_de_bad_input(toy_embedding_adata):
    adata = _planted(toy_embedding_adata)
    with pytest.raises(KeyError, match=r"group='type9' is not a value.*type0"):
        differential_expression(adata, groupby="cell_type", group="type9")
    with pytest.raises(ValueError, match="both 'type0'"):
        differential_expression(adata, groupby="cell_type", group="type0", reference="type0")
    adata.obs["one"] = "x"
    adata.obs.loc[adata.obs_names[0], "one"] = "y"
    with pytest.raises(ValueError, match="group has 1 cell"):
        differential_expression(adata, groupby="one", group="y")
    out = differential_expression(adata, groupby="cell_type", group="type1", inplace=False)
    assert "mad_de" not in adata.uns and len(out) == 30
