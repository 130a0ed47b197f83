import numpy as np
import pytest
from scipy import sparse

from madspatial import metrics


def test_pearson_and_mae_match_hand_computation():
    y = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    p = np.array([[2.0, 1.0], [4.0, 2.0], [5.0, 3.0]])
    r = metrics.pearson_per_gene(y, p)
    assert r[0] == pytest.approx(9 / np.sqrt(84))
    assert np.isnan(r[1])  # constant measured gene: undefined, not 0
    np.testing.assert_allclose(metrics.mae_per_gene(y, p), [5 / 3, 2.0])
    np.testing.assert_allclose(metrics.mse_per_gene(y, p), [3.0, 14 / 3])


def test_pearson_agrees_with_numpy_and_accepts_sparse_and_names():
    rng = np.random.default_rng(0)
    y = rng.poisson(2.0, size=(40, 5)).astype(float)
    p = y + rng.normal(size=y.shape)
    r = metrics.pearson_per_gene(sparse.csr_matrix(y), p, gene_names=list("ABCDE"))
    expected = [np.corrcoef(y[:, g], p[:, g])[0, 1] for g in range(5)]
    np.testing.assert_allclose(r.to_numpy(), expected)
    assert list(r.index) == list("ABCDE")


def test_constant_prediction_gives_nan():
    y = np.array([[1.0], [2.0], [4.0]])
    assert np.isnan(metrics.pearson_per_gene(y, np.full((3, 1), 7.0))[0])


def test_expression_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        metrics.pearson_per_gene(np.ones((3, 2)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        metrics.mae_per_gene(np.ones((3, 1)), np.array([[1.0], [np.nan], [1.0]]))
