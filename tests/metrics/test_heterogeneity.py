import numpy as np
import pytest
from scipy import sparse

from madspatial import metrics

XY = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [11.0, 0.0]])
E = np.array([[0.0, 1.0], [2.0, 1.0], [10.0, 1.0], [10.0, 5.0]])


def test_heterogeneity_matches_hand_computation():
    # windows {0,1}, {0,1}, {2,3}, {2,3}: gene 1 varies in the first pair (var 1),
    # gene 2 in the second (var 4)
    h = metrics.within_patch_heterogeneity(E, XY, n_neighbors=1)
    np.testing.assert_allclose(h, [1.0, 1.0, 4.0, 4.0])
    np.testing.assert_allclose(metrics.within_patch_heterogeneity(E, XY, radius=1.5), h)
    np.testing.assert_allclose(
        metrics.within_patch_heterogeneity(E, XY, n_neighbors=1, ddof=1), [2.0, 2.0, 8.0, 8.0]
    )
    np.testing.assert_allclose(
        metrics.within_patch_heterogeneity(sparse.csr_matrix(E), XY, n_neighbors=1), h
    )


def test_large_window_covers_everything():
    h = metrics.within_patch_heterogeneity(E, XY, n_neighbors=3)
    np.testing.assert_allclose(h, np.full(4, E.var(axis=0).sum()))


def test_singleton_window_with_sample_variance_is_nan():
    h = metrics.within_patch_heterogeneity(E, XY, radius=0.5, ddof=1)
    assert np.isnan(h).all()


def test_heterogeneity_bad_input():
    with pytest.raises(ValueError, match="one per cell"):
        metrics.within_patch_heterogeneity(E[:3], XY)
    with pytest.raises(ValueError, match="n_neighbors must be"):
        metrics.within_patch_heterogeneity(E, XY, n_neighbors=4)
