"""DE on predictions says what it tested and refuses values its fold change cannot use."""

import numpy as np
import pytest

from madspatial.tl import _decoder as dm
from madspatial.tl._de import differential_expression
from madspatial.tl._inputs import log_normalize


def _with_prediction(toy_embedding_adata):
    adata = toy_embedding_adata(n_per=40, n_genes=10)
    adata.layers["mad_pred"] = log_normalize(adata.X)
    return adata


def test_de_refuses_negative_values_and_says_why(toy_embedding_adata):
    adata = _with_prediction(toy_embedding_adata)
    pred = adata.layers["mad_pred"]
    # a gene lower in type0 that a decoder pushed below 0 there: scanpy's expm1-based
    # log2FC then comes out positive (before: a "significant up-regulation")
    pred[:, 3] = np.where(adata.obs["cell_type"] == "type0", -0.8, -0.2)
    pred[:, 3] += np.random.default_rng(0).normal(0, 0.05, adata.n_obs)
    with pytest.raises(
        ValueError,
        match=r"adata.layers\['mad_pred'\] holds negative values in 1 gene\(s\) \(e.g. "
        r"\['GENE3'\], minimum .*undefined below 0 and can flip its sign",
    ):
        differential_expression(adata, groupby="cell_type", group="type0", layer="mad_pred")


def test_de_on_in_sample_predictions_warns_and_records_it(toy_embedding_adata):
    adata = _with_prediction(toy_embedding_adata)
    adata.obs["mad_pred_in_sample"] = np.arange(adata.n_obs) % 3 == 0
    with pytest.warns(UserWarning, match=r"40 of 120 tested cells have in-sample") as rec:
        df = differential_expression(adata, groupby="cell_type", group="type0", layer="mad_pred")
    assert rec[0].filename == __file__
    params = adata.uns["mad_de"]["type0_vs_rest"]["params"]
    assert params["predictions"] == "in_sample" and params["n_in_sample"] == 40
    assert df.attrs["predictions"] == "in_sample"


def test_de_on_out_of_fold_predictions_is_recorded(toy_embedding_adata, recwarn):
    adata = toy_embedding_adata(n_per=40, n_genes=10)
    dec = dm.fit_decoder(adata, target="expression", cross_fit=3, seed=0, max_epochs=20)
    dm.predict(dec, adata)
    df = differential_expression(adata, groupby="cell_type", group="type0", layer="mad_pred")
    assert not [w for w in recwarn if "in-sample" in str(w.message)]
    assert df.attrs == {"predictions": "out_of_sample", "n_in_sample": 0}
    measured = differential_expression(adata, groupby="cell_type", group="type0", inplace=False)
    assert measured.attrs["predictions"] == "measured"
    del adata.obs["mad_pred_in_sample"]
    unknown = differential_expression(
        adata, groupby="cell_type", group="type0", layer="mad_pred", inplace=False
    )
    assert unknown.attrs == {"predictions": "unknown", "n_in_sample": -1}
