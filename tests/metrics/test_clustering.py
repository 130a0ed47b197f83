import numpy as np
import pytest

from madspatial import metrics


def test_ari_matches_hand_computation():
    # contingency {0: [2, 0, 0], 1: [0, 1, 1]}: index 1, expected 1/3, max 3/2
    assert metrics.ari([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(4 / 7)


def test_ari_is_invariant_to_renaming():
    t = ["a", "a", "b", "b", "c"]
    assert metrics.ari(t, [5, 5, 9, 9, 1]) == pytest.approx(1.0)


def test_purity_matches_hand_computation():
    t = ["a", "a", "b", "b", "b", "c"]
    p = [1, 1, 1, 2, 2, 2]  # majority 2 of 3 in each cluster
    assert metrics.purity(t, p) == pytest.approx(4 / 6)
    assert metrics.purity(t, t) == 1.0
    assert metrics.purity(t, [0] * 6) == pytest.approx(3 / 6)


def test_contingency_table_counts():
    tab = metrics.contingency_table(["a", "a", "b"], [0, 1, 1])
    assert tab.loc["a", 0] == 1 and tab.loc["a", 1] == 1 and tab.loc["b", 1] == 1
    assert tab.to_numpy().sum() == 3


def test_clustering_bad_input():
    with pytest.raises(ValueError, match="3 entries but labels_pred has 2"):
        metrics.ari([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="1 missing"):
        metrics.purity(np.array(["a", None, "b"], dtype=object), [0, 1, 1])


def test_ari_agrees_with_sklearn():
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(0)
    for n, k in [(50, 3), (200, 7), (5, 5)]:
        t, p = rng.integers(0, k, n), rng.integers(0, k + 1, n)
        assert metrics.ari(t, p) == pytest.approx(adjusted_rand_score(t, p))
    assert metrics.ari([0, 0, 0], [1, 1, 1]) == 1.0 == adjusted_rand_score([0, 0, 0], [1, 1, 1])
    assert metrics.ari([0, 1, 2], [0, 1, 2]) == 1.0
