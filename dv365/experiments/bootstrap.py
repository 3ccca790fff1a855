"""Paired bootstrap intervals for NE differences between two models on the same examples.

Two models evaluated on the same held-out examples differ by an NE difference whose noise is
dominated by the rare positives; the paper-style "variant beats baseline" claim needs an
interval, not one number. The resampling unit is a *cluster* of examples (the user): examples
of one user share a history and an embedding, so resampling single examples would treat them
as independent and make the interval too narrow.

Each replicate draws clusters with replacement and recomputes, on the same draw, the NE of the
variant and of the baseline -- including the base rate in NE's denominator -- so the interval
is for the *paired* difference. Several training seeds per model are averaged inside each
replicate: the interval then covers the example sampling of the held-out set for the
seed-averaged models (the seed-to-seed spread is reported separately).
"""

from __future__ import annotations

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
    a = np.atleast_2d(np.asarray(probs, dtype=np.float64))
    b = np.atleast_2d(np.asarray(baseline_probs, dtype=np.float64))
    if a.shape[1] != y.size or b.shape[1] != y.size:
        raise ValueError(f"predictions {a.shape} / {b.shape} for {y.size} labels")
    if clusters is None:
        clusters = np.arange(y.size)
    _, cluster = np.unique(np.asarray(clusters), return_inverse=True)
    c = int(cluster.max()) + 1 if y.size else 0
    if c == 0 or y.sum() == 0 or y.sum() == y.size:
        nan = float("nan")
        return Interval(nan, nan, nan, 0)
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

    estimate = float(difference(np.ones((1, c)))[0])
    rng = np.random.default_rng(seed)
    draws = []
    for lo in range(0, replicates, 100):  # bounded memory: 100 x C weights at a time
        k = min(100, replicates - lo)
        weights = rng.multinomial(c, np.full(c, 1.0 / c), size=k).astype(np.float64)
        draws.append(difference(weights))
    values = np.concatenate(draws)
    values = values[np.isfinite(values)]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high), int(values.size))
