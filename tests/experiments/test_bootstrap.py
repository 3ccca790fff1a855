"""Paired bootstrap intervals of NE differences (dv365.experiments.bootstrap)."""

from __future__ import annotations

import numpy as np
import pytest

from dv365.experiments.bootstrap import paired_ne_difference
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
