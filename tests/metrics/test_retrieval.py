import numpy as np
import pytest

from madspatial import metrics


def test_ranks_match_hand_computation():
    q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    c = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    # q0's partner [0, 1] has cosine 0, beaten by c1 (1) and c2 (0.71); q2 finds c2 first
    np.testing.assert_array_equal(metrics.retrieval_ranks(q, c), [2, 2, 0])
    assert metrics.recall_at_k(q, c, k=1) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(q, c, k=(1, 3)) == {1: pytest.approx(1 / 3), 3: 1.0}


def test_identical_views_are_retrieved_first_and_batches_agree():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8))
    assert metrics.recall_at_k(x, x * 3.0, k=1, symmetric=True) == 1.0
    noisy = x + rng.normal(size=x.shape)
    np.testing.assert_array_equal(
        metrics.retrieval_ranks(x, noisy, batch_size=7), metrics.retrieval_ranks(x, noisy)
    )


def test_random_views_are_near_chance():
    rng = np.random.default_rng(1)
    r = metrics.recall_at_k(rng.normal(size=(400, 16)), rng.normal(size=(400, 16)), k=10)
    assert r < 0.08  # chance is 10 / 400


def test_retrieval_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        metrics.recall_at_k(np.ones((3, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="all-zero"):
        metrics.recall_at_k(np.zeros((3, 2)), np.ones((3, 2)))
