"""NE, AUC and MSE against hand computations; NE's standard error against simulation."""

import math

import numpy as np
import pytest

from dv365.model.metrics import (
    NE_SE_SCALE,
    auc,
    expected_ne_standard_error,
    log_loss,
    mse,
    ne_standard_error,
    normalized_entropy,
)


def test_ne_is_bce_over_the_entropy_of_the_positive_rate():
    labels = np.array([1, 0, 0, 1, 0])
    probs = np.array([0.9, 0.2, 0.1, 0.6, 0.3])
    bce = -(math.log(0.9) + math.log(0.8) + math.log(0.9) + math.log(0.6) + math.log(0.7)) / 5
    p = 0.4
    assert normalized_entropy(labels, probs) == pytest.approx(
        bce / -(p * math.log(p) + (1 - p) * math.log(1 - p)), rel=1e-12)
    assert log_loss(labels, probs) == pytest.approx(bce, rel=1e-12)


def test_predicting_the_base_rate_has_ne_one():
    labels = np.array([1, 0, 0, 0])
    assert normalized_entropy(labels, np.full(4, 0.25)) == pytest.approx(1.0)


def test_ne_is_undefined_without_both_labels():
    assert math.isnan(normalized_entropy(np.zeros(3), np.full(3, 0.5)))


def test_auc_matches_counting_pairs():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200), 1)  # ties on purpose
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert auc(labels, scores) == pytest.approx(pairs / (len(pos) * len(neg)))
    assert auc([0, 1], [0.2, 0.8]) == 1.0 and auc([0, 1], [0.8, 0.2]) == 0.0


def test_mse():
    assert mse([1.0, 2.0], [1.5, 0.0]) == pytest.approx((0.25 + 4.0) / 2)


def _calibrated(rng, n, rate, spread, user_effect=0.0, users=None):
    """True probabilities whose log-odds spread by ``spread`` around ``rate``'s, plus a user
    effect the model does not know; the model predicts without the user effect."""
    logit = np.log(rate / (1 - rate)) + spread * rng.standard_normal(n)
    truth = logit + (user_effect * rng.standard_normal(users.max() + 1)[users]
                     if users is not None else 0.0)
    return 1 / (1 + np.exp(-truth)), 1 / (1 + np.exp(-logit))


@pytest.mark.parametrize("rate, spread", [(0.02, 1.0), (0.2, 2.0)])
def test_ne_standard_error_is_the_spread_of_ne_over_held_out_draws(rate, spread):
    rng = np.random.default_rng(0)
    truth, probs = _calibrated(rng, 20_000, rate, spread)
    draws = [(rng.random(truth.size) < truth).astype(float) for _ in range(200)]
    spread_of_ne = np.std([normalized_entropy(y, probs) for y in draws])
    errors = [ne_standard_error(y, probs) for y in draws[:20]]
    assert np.mean(errors) == pytest.approx(spread_of_ne, rel=0.15)
    # the labels-only expectation is of its order (NE 0.90 and 0.67 here)
    expected = np.mean([expected_ne_standard_error(y) for y in draws[:20]])
    assert 0.5 < expected / np.mean(errors) < 2


def test_the_predictor_of_the_base_rate_has_almost_no_ne_noise():
    # NE's denominator is the set's own entropy: a constant prediction moves with it
    rng = np.random.default_rng(1)
    y = (rng.random(20_000) < 0.02).astype(float)
    assert ne_standard_error(y, np.full(y.size, 0.02)) < 1e-3


def test_clustering_by_user_widens_the_error_as_the_draws_of_users_do():
    rng = np.random.default_rng(2)
    users = np.repeat(np.arange(200), 100)
    nes, clustered, independent = [], [], []
    for _ in range(150):  # new users and labels each time
        truth, probs = _calibrated(rng, users.size, 0.05, 1.0, user_effect=1.0, users=users)
        y = (rng.random(users.size) < truth).astype(float)
        nes.append(normalized_entropy(y, probs))
        clustered.append(ne_standard_error(y, probs, users))
        independent.append(ne_standard_error(y, probs))
    assert np.mean(clustered) == pytest.approx(np.std(nes), rel=0.2)
    assert np.mean(independent) < 0.8 * np.mean(clustered)


def test_the_expected_error_counts_the_rarer_label_and_users_that_crowd_it():
    labels = np.zeros((1000, 2))
    labels[:50, 0] = 1  # 50 positives, all of user 0
    labels[::20, 1] = 1  # 50 positives spread over all users
    users = np.repeat(np.arange(10), 100)
    spread = expected_ne_standard_error(labels[:, 1], users)
    assert spread == pytest.approx(NE_SE_SCALE / np.sqrt(50))  # even: design effect 1
    assert expected_ne_standard_error(labels[:, 0], users) > 3 * spread
    assert expected_ne_standard_error(1 - labels[:, 1], users) == pytest.approx(spread)
    assert math.isnan(expected_ne_standard_error(np.zeros(5)))
    assert math.isnan(ne_standard_error(np.ones(5), np.full(5, 0.5)))
