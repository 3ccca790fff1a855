"""Paired bootstrap intervals for metric differences between two models on the same examples.

Two models evaluated on the same held-out examples differ by an NE difference whose noise is
dominated by the rare positives, or by a retrieval hit-rate difference over a few thousand
queries; the paper-style "variant beats baseline" claim needs an interval, not one number.
The resampling unit is a *cluster* of examples (the user): examples of one user share a
history and an embedding, so resampling single examples would treat them as independent and
make the interval too narrow.

Each replicate draws clusters with replacement and recomputes, on the same draw, the metric of
the variant and of the baseline -- for NE including the base rate in its denominator -- so the
interval is for the *paired* difference. Several training seeds per model are averaged inside
each replicate: the interval then covers the example sampling of the held-out set for the
seed-averaged models (the seed-to-seed spread is reported separately).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dv365.model.metrics import binary_entropy, example_log_loss


@dataclass(frozen=True)
class Interval:
    """``estimate`` (on the full data) and the percentile interval ``[low, high]``."""

    estimate: float
    low: float
    high: float
    replicates: int


def paired_ne_difference(labels: np.ndarray, probs: np.ndarray, baseline_probs: np.ndarray,
                         clusters: np.ndarray | None = None, *, replicates: int = 1000,
                         seed: int = 0, level: float = 0.95, relative: bool = False
                         ) -> Interval:
    """Bootstrap interval of ``NE(variant) - NE(baseline)`` (or of that over NE(baseline)
    with ``relative``).

    ``probs`` and ``baseline_probs`` are ``[n]`` or ``[seeds, n]`` (averaged over seeds);
    ``clusters`` gives each example's resampling unit (default: every example its own).
    Negative means the variant is better.
    """
    y = np.asarray(labels, dtype=np.float64)
    a = _per_seed(probs, y.size, "predictions")
    b = _per_seed(baseline_probs, y.size, "predictions")
    cluster, c = _cluster_index(clusters, y.size)
    if c == 0 or y.sum() == 0 or y.sum() == y.size:
        return _NO_INTERVAL
    # Per-cluster sums: NE of any reweighting of clusters is a ratio of weighted sums.
    count = np.bincount(cluster, minlength=c).astype(np.float64)
    positives = np.bincount(cluster, weights=y, minlength=c)

    def cluster_loss(seeds: np.ndarray) -> np.ndarray:  # [C, seeds]
        return np.stack([np.bincount(cluster, weights=example_log_loss(y, s), minlength=c)
                         for s in seeds], axis=1)

    loss_a, loss_b = cluster_loss(a), cluster_loss(b)

    def difference(weights: np.ndarray) -> np.ndarray:
        n = weights @ count
        entropy = binary_entropy((weights @ positives) / n)
        ne_a = (weights @ loss_a).mean(-1) / n / entropy
        ne_b = (weights @ loss_b).mean(-1) / n / entropy
        return (ne_a - ne_b) / ne_b if relative else ne_a - ne_b

    return _cluster_bootstrap(difference, c, replicates=replicates, seed=seed, level=level)


def paired_mean_difference(values: np.ndarray, baseline_values: np.ndarray,
                           clusters: np.ndarray | None = None, *, replicates: int = 1000,
                           seed: int = 0, level: float = 0.95, relative: bool = False
                           ) -> Interval:
    """Bootstrap interval of ``mean(variant) - mean(baseline)`` of a per-example metric (a
    query's hit, 0 or 1; an example's squared error), or of that over ``mean(baseline)`` with
    ``relative``.

    ``values`` and ``baseline_values`` are ``[n]`` or ``[seeds, n]`` (averaged over seeds),
    example ``i`` of both being the same example; ``clusters`` gives each example's resampling
    unit (default: every example its own). The sign means what the metric means: positive is
    better for a hit rate, worse for a squared error. No examples, or a relative difference
    over a baseline that is zero everywhere, give an interval of NaNs.
    """
    a = _per_seed(values, None, "values")
    n = a.shape[1]
    b = _per_seed(baseline_values, n, "values")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("values must be finite")
    cluster, c = _cluster_index(clusters, n)
    if c == 0 or (relative and not b.any()):
        return _NO_INTERVAL
    # The mean over seeds commutes with the mean over examples: average the seeds first.
    count = np.bincount(cluster, minlength=c).astype(np.float64)
    sum_a = np.bincount(cluster, weights=a.mean(0), minlength=c)
    sum_b = np.bincount(cluster, weights=b.mean(0), minlength=c)

    def difference(weights: np.ndarray) -> np.ndarray:
        total_a, total_b = weights @ sum_a, weights @ sum_b
        with np.errstate(divide="ignore", invalid="ignore"):
            return (total_a - total_b) / (total_b if relative else weights @ count)

    return _cluster_bootstrap(difference, c, replicates=replicates, seed=seed, level=level)


_NO_INTERVAL = Interval(float("nan"), float("nan"), float("nan"), 0)


def _per_seed(x: np.ndarray, n: int | None, what: str) -> np.ndarray:
    """``x`` as ``[seeds, n]`` float64, refusing another number of examples than ``n``."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if x.ndim != 2 or (n is not None and x.shape[1] != n):
        raise ValueError(f"{what} of shape {x.shape} for {n} examples")
    return x


def _cluster_index(clusters: np.ndarray | None, n: int) -> tuple[np.ndarray, int]:
    """Each example's cluster as ``0 .. C-1`` and ``C`` (default: every example its own)."""
    if clusters is None:
        clusters = np.arange(n)
    clusters = np.asarray(clusters)
    if clusters.shape != (n,):
        raise ValueError(f"clusters of shape {clusters.shape} for {n} examples")
    _, cluster = np.unique(clusters, return_inverse=True)
    return cluster.reshape(-1), int(cluster.max()) + 1 if n else 0


def _cluster_bootstrap(statistic: Callable[[np.ndarray], np.ndarray], c: int, *,
                       replicates: int, seed: int, level: float) -> Interval:
    """The percentile interval of ``statistic`` over cluster resamples.

    ``statistic`` maps cluster weights ``[k, C]`` (how often each cluster was drawn) to ``k``
    values; the estimate is its value at weight one everywhere. Replicates whose value is not
    finite are dropped (``replicates`` counts the rest).
    """
    estimate = float(statistic(np.ones((1, c)))[0])
    rng = np.random.default_rng(seed)
    draws = []
    for lo in range(0, replicates, 100):  # bounded memory: 100 x C weights at a time
        k = min(100, replicates - lo)
        weights = rng.multinomial(c, np.full(c, 1.0 / c), size=k).astype(np.float64)
        draws.append(statistic(weights))
    values = np.concatenate(draws)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Interval(estimate, float("nan"), float("nan"), 0)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high), int(values.size))
