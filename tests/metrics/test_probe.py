import numpy as np
import pytest

from madspatial import metrics


def _blobs(n_per=40, k=3, d=8, sep=6.0, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * sep
    X = np.concatenate([c + rng.normal(size=(n_per, d)) for c in centers])
    y = np.repeat([f"t{i}" for i in range(k)], n_per)
    return X, y


def test_probes_separate_blobs_perfectly():
    X, y = _blobs()
    assert metrics.knn_accuracy(X, y, n_neighbors=5) == 1.0
    assert metrics.linear_probe_accuracy(X, y) == 1.0
    pred = metrics.probe_predictions(X, y, method="knn", n_neighbors=5)
    assert pred.dtype == y.dtype and set(pred) == set(y)


def test_probes_are_at_chance_on_random_labels():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 5))
    y = rng.choice(["a", "b"], size=300)
    assert 0.35 < metrics.knn_accuracy(X, y) < 0.65
    assert 0.35 < metrics.linear_probe_accuracy(X, y) < 0.65


def test_group_aware_folds_remove_a_group_leak():
    # features identify the group, the group determines the label: a leak, not biology
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(20), 15)
    labels = np.where(groups % 2 == 0, "a", "b")
    X = rng.normal(size=(20, 6))[groups] * 5 + rng.normal(size=(300, 6)) * 0.1
    leaky = metrics.knn_accuracy(X, labels, n_neighbors=5)
    honest = metrics.knn_accuracy(X, labels, n_neighbors=5, groups=groups)
    assert leaky > 0.95
    assert honest < 0.8


def test_balanced_accuracy_weights_classes_equally():
    # 90 cells of an easy class, 10 of a class that is indistinguishable from it
    rng = np.random.default_rng(3)
    X = rng.normal(size=(100, 3))
    y = np.array(["big"] * 90 + ["small"] * 10)
    plain = metrics.knn_accuracy(X, y, n_neighbors=15)
    balanced = metrics.knn_accuracy(X, y, n_neighbors=15, balanced=True)
    assert plain >= 0.85 and balanced == pytest.approx(0.5, abs=0.1)


def test_probe_bad_input():
    X, y = _blobs()
    y = y.copy()
    y[:118] = "t0"  # only two cells of class t2 remain
    with pytest.raises(ValueError, match="too few cells per class"):
        metrics.knn_accuracy(X, y)
    X2 = X.copy()
    X2[[3, 7], 0] = np.nan
    with pytest.raises(ValueError, match="2 row"):
        metrics.linear_probe_accuracy(X2, _blobs()[1])
    with pytest.raises(ValueError, match="at least n_splits=5 groups"):
        metrics.knn_accuracy(X, _blobs()[1], groups=np.arange(120) % 3)
