"""NE, AUC and MSE against hand computations."""

import math

import numpy as np
import pytest

from dv365.model.metrics import auc, log_loss, mse, normalized_entropy


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
