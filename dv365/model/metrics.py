"""Evaluation metrics of the paper, registered as a default plugin: NE, AUC, MSE; and how
much NE moves from the sampling of the held-out examples alone.

All metrics take 1-D arrays of labels and predictions (probabilities for binary tasks) and
return a float, NaN when the metric is undefined on the data (a task with only one label
value).

**NE's standard error.** :func:`ne_standard_error` is the delta method on ``NE = L / H(p)``
with the examples clustered by user (a user's examples share a history and an embedding):
each example contributes ``z = loss - NE * ln((1 - p) / p) * y``, and the variance of NE is
that of the users' sums of ``z`` over ``(N * H(p))^2``. Before a model exists,
:func:`expected_ne_standard_error` bounds it from the labels alone by
``NE_SE_SCALE * sqrt(deff / n_rare)``: ``n_rare`` the positives (or the negatives, when fewer),
``deff`` the design effect of the user clusters on the positive rate. docs/model.md ("The
held-out split") derives both and where the scale 0.3 comes from.
"""

from __future__ import annotations

import numpy as np

from dv365.hookspecs import RegisterMetric, hookimpl

# Predictions are clipped away from 0 and 1 so that one confident mistake costs a large but
# finite log loss (the same clipping for the model and for the baseline entropy).
EPS = 1e-7


def example_log_loss(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-example binary cross-entropy ``-(y ln q + (1 - y) ln(1 - q))`` in nats."""
    y = np.asarray(labels, dtype=np.float64)
    q = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    return -(y * np.log(q) + (1 - y) * np.log(1 - q))


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean binary cross-entropy in nats (see :func:`example_log_loss`)."""
    return float(np.mean(example_log_loss(labels, probs)))


def binary_entropy(p: np.ndarray | float) -> np.ndarray:
    """``-(p ln p + (1 - p) ln(1 - p))``, NE's denominator; NaN where ``p`` is 0 or 1 (a set
    with only one label value, where NE is undefined)."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    return np.where((p > 0) & (p < 1), h, np.nan)


def normalized_entropy(labels: np.ndarray, probs: np.ndarray) -> float:
    """NE = BCE / -(p ln p + (1 - p) ln(1 - p)), p the average positive rate (the paper's).

    1.0 is what predicting the base rate everywhere scores; lower is better.
    """
    y = np.asarray(labels, dtype=np.float64)
    if y.size == 0:
        return float("nan")
    return log_loss(y, probs) / float(binary_entropy(y.mean()))


# A 1% NE difference (0.01 on the scale where the base rate scores 1): the resolution the
# held-out split is checked against.
NE_RESOLUTION = 0.01
# SE(NE) * sqrt(n_rare) of calibrated models at NE 0.87-0.92 and positive rates of 0.5% to 50%
# lay between 0.17 and 0.40 (simulated, docs/model.md): a model that learned something.
NE_SE_SCALE = 0.3


def _user_sums(values: np.ndarray, clusters: np.ndarray | None) -> np.ndarray:
    """``values`` summed per cluster (each example its own cluster when None)."""
    if clusters is None:
        return values
    _, cluster_of = np.unique(clusters, return_inverse=True)
    return np.bincount(cluster_of.reshape(-1), weights=values)


def ne_standard_error(labels: np.ndarray, probs: np.ndarray,
                      clusters: np.ndarray | None = None) -> float:
    """The standard error of :func:`normalized_entropy` over resampled held-out sets, by the
    delta method with examples clustered by ``clusters`` (user ids; None: independent); NaN
    where NE is undefined."""
    y = np.asarray(labels, dtype=np.float64)
    if y.size == 0:
        return float("nan")
    p = float(y.mean())
    entropy = float(binary_entropy(p))
    if not np.isfinite(entropy):
        return float("nan")
    ne = log_loss(y, probs) / entropy
    z = example_log_loss(y, probs) - ne * np.log((1 - p) / p) * y
    centered = _user_sums(z - z.mean(), clusters)
    return float(np.sqrt((centered ** 2).sum()) / (y.size * entropy))


def expected_ne_standard_error(labels: np.ndarray, clusters: np.ndarray | None = None
                               ) -> float:
    """About what :func:`ne_standard_error` will be for a fair model, from the labels alone:
    ``NE_SE_SCALE * sqrt(deff / n_rare)``, ``deff`` (at least 1) the user-clustered variance
    of the positive rate over its variance for independent examples; NaN for one label
    value."""
    y = np.asarray(labels, dtype=np.float64)
    positives = float(y.sum())
    rare = min(positives, y.size - positives)
    if rare == 0:
        return float("nan")
    p = positives / y.size
    deff = float((_user_sums(y - p, clusters) ** 2).sum()) / (y.size * p * (1 - p))
    return NE_SE_SCALE * float(np.sqrt(max(deff, 1.0) / rare))


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted as one half."""
    y = np.asarray(labels, dtype=np.float64) > 0.5
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # Average ranks (1-based) of tied scores.
    values, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average_rank = ends - (counts - 1) / 2.0
    ranks = average_rank[inverse]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def mse(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Mean squared error."""
    y = np.asarray(labels, dtype=np.float64)
    if y.size == 0:
        return float("nan")
    return float(np.mean((np.asarray(predictions, dtype=np.float64) - y) ** 2))


@hookimpl
def dv365_register_metrics(register: RegisterMetric) -> None:
    register("ne", normalized_entropy, applies_to=("binary",),
             doc="normalized entropy: BCE / entropy of the positive rate (lower is better)")
    register("auc", auc, applies_to=("binary",), doc="ROC AUC")
    register("mse", mse, applies_to=("regression",), doc="mean squared error")
