"""Paired bootstrap intervals of NE and mean differences (dv365.experiments.bootstrap)."""

from __future__ import annotations

import numpy as np
import pytest

from dv365.experiments.bootstrap import paired_mean_difference, paired_ne_difference
from dv365.model.metrics import normalized_entropy


def _data(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.01, 0.3, n)  # every example's true positive rate
    labels = (rng.uniform(size=n) < truth).astype(np.float64)
    return rng, truth, labels


def test_the_estimate_is_the_ne_difference_on_the_full_data():
    rng, truth, y = _data()
    a, b = np.clip(truth + rng.normal(0, 0.05, y.size), 0.001, 0.999), np.full(y.size, y.mean())
    iv = paired_ne_difference(y, a, b, replicates=50)
    assert iv.estimate == pytest.approx(normalized_entropy(y, a) - normalized_entropy(y, b))
    rel = paired_ne_difference(y, a, b, replicates=50, relative=True)
    assert rel.estimate == pytest.approx(iv.estimate / normalized_entropy(y, b))


def test_identical_models_differ_by_exactly_zero():
    _, truth, y = _data()
    iv = paired_ne_difference(y, truth, truth, replicates=100)
    assert (iv.estimate, iv.low, iv.high) == (0.0, 0.0, 0.0)


def test_a_model_that_knows_the_true_rates_beats_the_base_rate_with_an_interval_below_zero():
    _, truth, y = _data()
    iv = paired_ne_difference(y, truth, np.full(y.size, y.mean()), replicates=300)
    assert iv.low <= iv.estimate <= iv.high < 0


def test_a_noise_only_difference_has_an_interval_around_zero():
    rng, truth, y = _data(seed=1)
    a = np.clip(truth * np.exp(rng.normal(0, 0.2, y.size)), 1e-3, 0.999)
    b = np.clip(truth * np.exp(rng.normal(0, 0.2, y.size)), 1e-3, 0.999)
    iv = paired_ne_difference(y, a, b, replicates=300)
    assert iv.low < 0 < iv.high


def test_resampling_users_not_examples_widens_the_interval_of_correlated_examples():
    # Each user's 20 examples share label and predictions: 20 times fewer independent units
    # than examples; resampling examples would pretend otherwise.
    rng, truth, y = _data(n=300, seed=2)
    a = np.clip(truth + rng.normal(0, 0.1, y.size), 0.001, 0.999)
    b = np.full(y.size, y.mean())
    rep = lambda v: np.repeat(v, 20)  # noqa: E731
    users = np.repeat(np.arange(y.size), 20)
    by_example = paired_ne_difference(rep(y), rep(a), rep(b), replicates=400)
    by_user = paired_ne_difference(rep(y), rep(a), rep(b), users, replicates=400)
    assert by_user.estimate == pytest.approx(by_example.estimate)
    assert (by_user.high - by_user.low) > 3 * (by_example.high - by_example.low)


def test_seeds_are_averaged_inside_each_replicate():
    rng, truth, y = _data()
    a1 = np.clip(truth + rng.normal(0, 0.05, y.size), 0.001, 0.999)
    a2 = np.clip(truth + rng.normal(0, 0.05, y.size), 0.001, 0.999)
    b = np.full(y.size, y.mean())
    both = paired_ne_difference(y, np.stack([a1, a2]), np.stack([b, b]), replicates=50)
    expected = (normalized_entropy(y, a1) + normalized_entropy(y, a2)) / 2 - \
        normalized_entropy(y, b)
    assert both.estimate == pytest.approx(expected)


def test_a_task_without_positives_has_no_interval():
    y = np.zeros(100)
    iv = paired_ne_difference(y, np.full(100, 0.1), np.full(100, 0.2), replicates=20)
    assert np.isnan(iv.estimate) and iv.replicates == 0


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError):
        paired_ne_difference(np.zeros(10), np.zeros(9), np.zeros(10))


# paired_mean_difference: per-example metrics such as a query's hit (0/1) or a squared error.

def _hits(n=3000, seed=0, rates=(0.30, 0.25)):
    """Per-query hits of a variant and a baseline, correlated the way two retrieval models on
    the same queries are: both find the easy queries."""
    rng = np.random.default_rng(seed)
    easy = rng.uniform(size=n)
    return (easy < rates[0]).astype(np.float64), (easy < rates[1]).astype(np.float64), rng


def test_the_mean_estimate_is_the_plain_difference_of_means_and_lies_in_its_interval():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 2000) ** 2, rng.normal(1.1, 1.0, 2000) ** 2
    iv = paired_mean_difference(a, b, replicates=300)
    assert iv.estimate == pytest.approx(a.mean() - b.mean(), rel=1e-12)
    assert iv.low <= iv.estimate <= iv.high and iv.replicates == 300


def test_identical_per_example_values_differ_by_exactly_zero():
    a, _, _ = _hits()
    iv = paired_mean_difference(a, a.copy(), replicates=200)
    assert (iv.estimate, iv.low, iv.high) == (0.0, 0.0, 0.0)
    rel = paired_mean_difference(a, a.copy(), replicates=200, relative=True)
    assert (rel.estimate, rel.low, rel.high) == (0.0, 0.0, 0.0)


def test_a_clear_hit_rate_gain_has_an_interval_above_zero_and_noise_one_around_zero():
    a, b, rng = _hits()
    gain = paired_mean_difference(a, b, replicates=400)
    assert gain.estimate == pytest.approx(a.mean() - b.mean())
    assert 0 < gain.low <= gain.estimate <= gain.high
    # Two independent coin flips per query with the same rate: no real difference.
    x, y = (rng.uniform(size=(2, 3000)) < 0.3).astype(np.float64)
    noise = paired_mean_difference(x, y, replicates=400)
    assert noise.low < 0 < noise.high


def test_pairing_narrows_the_interval_of_correlated_models():
    # Resampling the two models' values on the same draw keeps their correlation; the
    # difference of two independent bootstraps would not.
    a, b, _ = _hits()
    paired = paired_mean_difference(a, b, replicates=400)
    shuffled = paired_mean_difference(a, np.random.default_rng(1).permutation(b), replicates=400)
    assert paired.estimate == pytest.approx(shuffled.estimate)
    assert (paired.high - paired.low) < 0.5 * (shuffled.high - shuffled.low)


def test_the_relative_mean_difference_is_over_the_baseline_mean():
    a, b, _ = _hits()
    iv = paired_mean_difference(a, b, replicates=300)
    rel = paired_mean_difference(a, b, replicates=300, relative=True)
    assert rel.estimate == pytest.approx((a.mean() - b.mean()) / b.mean())
    assert rel.low <= rel.estimate <= rel.high
    # Same draws (same seed): each relative replicate is its absolute one over a baseline mean
    # near 0.25, so the interval scales by about 1 / 0.25.
    assert rel.high - rel.low == pytest.approx((iv.high - iv.low) / b.mean(), rel=0.25)


def test_mean_seeds_are_averaged_inside_each_replicate():
    rng = np.random.default_rng(3)
    a = rng.uniform(size=(3, 500))
    b = rng.uniform(size=(2, 500))
    both = paired_mean_difference(a, b, replicates=100)
    assert both.estimate == pytest.approx(a.mean(1).mean() - b.mean(1).mean())
    averaged = paired_mean_difference(a.mean(0), b.mean(0), replicates=100)
    assert (both.low, both.high) == pytest.approx((averaged.low, averaged.high))


def test_resampling_users_widens_the_mean_interval_of_correlated_examples():
    # Each user's 20 queries share their hits: 20 times fewer independent units than queries.
    a, b, rng = _hits(n=300, seed=2)
    b = np.where(rng.uniform(size=a.size) < 0.5, b, a)  # some users improve, some do not
    rep = lambda v: np.repeat(v, 20)  # noqa: E731
    users = np.repeat(np.arange(a.size), 20)
    by_example = paired_mean_difference(rep(a), rep(b), replicates=400)
    by_user = paired_mean_difference(rep(a), rep(b), users, replicates=400)
    assert by_user.estimate == pytest.approx(by_example.estimate)
    assert (by_user.high - by_user.low) > 3 * (by_example.high - by_example.low)


def test_the_mean_interval_depends_only_on_the_seed_and_the_level():
    a, b, _ = _hits(n=500)
    first = paired_mean_difference(a, b, replicates=200, seed=7)
    assert paired_mean_difference(a, b, replicates=200, seed=7) == first
    wider = paired_mean_difference(a, b, replicates=200, seed=7, level=0.99)
    assert wider.low <= first.low and first.high <= wider.high


def test_no_examples_or_a_zero_baseline_for_a_relative_difference_give_no_interval():
    empty = paired_mean_difference(np.zeros(0), np.zeros(0), replicates=20)
    assert np.isnan(empty.estimate) and empty.replicates == 0
    rel = paired_mean_difference(np.ones(10), np.zeros(10), replicates=20, relative=True)
    assert np.isnan(rel.estimate) and rel.replicates == 0


@pytest.mark.parametrize("values, baseline, clusters", [
    (np.zeros(10), np.zeros(9), None),
    (np.zeros((2, 10)), np.zeros((2, 9)), None),
    (np.zeros(10), np.zeros(10), np.zeros(9)),
])
def test_mismatched_mean_shapes_are_refused(values, baseline, clusters):
    with pytest.raises(ValueError):
        paired_mean_difference(values, baseline, clusters)


def test_non_finite_values_are_refused():
    with pytest.raises(ValueError, match="finite"):
        paired_mean_difference(np.array([0.0, np.nan]), np.zeros(2))
