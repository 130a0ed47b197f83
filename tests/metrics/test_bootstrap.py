import numpy as np
import pytest

from madspatial import metrics


def test_ci_of_a_mean_covers_the_truth_and_has_the_expected_width():
    rng = np.random.default_rng(0)
    x = rng.normal(loc=2.0, scale=1.0, size=400)
    est, lo, hi = metrics.bootstrap_ci(x, n_boot=2000, seed=1)
    assert est == pytest.approx(x.mean())
    assert lo < 2.0 < hi
    # normal theory: width ~ 2 * 1.96 / sqrt(400) = 0.196
    assert hi - lo == pytest.approx(0.196, rel=0.15)


def test_ci_is_reproducible_and_degenerate_for_constant_data():
    x = np.arange(50.0)
    assert metrics.bootstrap_ci(x, seed=3) == metrics.bootstrap_ci(x, seed=3)
    assert metrics.bootstrap_ci(np.ones(20)) == (1.0, 1.0, 1.0)


def test_paired_arrays_and_strata():
    labels = np.repeat(["a", "b"], [30, 70])
    # share of "a" varies under a plain bootstrap but is fixed within strata
    share = lambda lab: np.mean(lab == "a")  # noqa: E731
    _, lo, hi = metrics.bootstrap_ci(labels, statistic=share, n_boot=200)
    assert hi - lo > 0.05
    _, lo, hi = metrics.bootstrap_ci(labels, statistic=share, n_boot=200, strata=labels)
    assert lo == hi == pytest.approx(0.3)
    est, lo, hi = metrics.bootstrap_ci((labels, labels), statistic=metrics.ari, n_boot=50)
    assert est == lo == hi == 1.0


def test_bootstrap_bad_input():
    with pytest.raises(ValueError, match="different lengths"):
        metrics.bootstrap_ci((np.ones(3), np.ones(4)))
    with pytest.raises(ValueError, match="ci must be"):
        metrics.bootstrap_ci(np.ones(3), ci=95)


def test_half_sampling_matches_the_bootstrap_for_a_mean_and_centering_contains_the_estimate():
    rng = np.random.default_rng(4)
    x = rng.normal(size=1000)
    _, lo_b, hi_b = metrics.bootstrap_ci(x, n_boot=1000)
    _, lo_h, hi_h = metrics.bootstrap_ci(x, n_boot=1000, resample="half")
    assert hi_h - lo_h == pytest.approx(hi_b - lo_b, rel=0.15)
    # purity of a random clustering is inflated in resamples (a maximum over fewer cells);
    # the re-centred interval always contains the estimate
    for seed in range(5):
        t = rng.choice(["a", "b", "c"], size=120)
        p = rng.choice([0, 1, 2], size=120)
        est, lo, hi = metrics.bootstrap_ci(
            (t, p), statistic=metrics.purity, n_boot=100, resample="half", center=True, seed=seed
        )
        assert lo <= est <= hi and hi - lo > 0.02
