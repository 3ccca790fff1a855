"""Linear probes of the exported user embedding: does it carry what the generator planted?

The exported embedding of a user is the encoder output ``[N_out, D]`` at a given time,
flattened (:func:`dv365.model.foundation.embed_users`). A probe is a multinomial logistic regression fitted on some users and scored on
the others; it says how much of a known per-user label (the generator's top stable topic) a
*linear* read-out can recover.

The fit is full-batch L-BFGS with a strong-Wolfe line search. Without the line search L-BFGS
takes unit steps along its quasi-Newton direction, and on nearly collinear features (layer
normalization ties each token's features of an encoder output together) it can overshoot and end with a training loss hundreds of times its starting value --
which then reads as "the embedding carries nothing". The fit therefore refuses to return a
result whose objective rose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Features whose spread across users is at most this are constant for the probe (zeroed),
# instead of being divided by a tiny standard deviation and turned into amplified noise.
MIN_STD = 1e-6


@dataclass(frozen=True)
class ProbeFit:
    """A fitted probe and its training objective (mean cross-entropy + L2) before and after."""

    linear: torch.nn.Linear
    start_objective: float
    final_objective: float


@dataclass(frozen=True)
class ProbeResult:
    """Held-out accuracy of a probe, next to what always guessing the most frequent
    training class scores on the same held-out rows."""

    accuracy: float
    majority_accuracy: float
    num_classes: int
    train_rows: int
    test_rows: int
    start_objective: float
    final_objective: float


@dataclass(frozen=True)
class FeatureSpread:
    """How much the embedding varies across users: per-feature standard deviation
    (min / median / max) and the mean absolute value, for scale."""

    min_std: float
    median_std: float
    max_std: float
    mean_abs: float


def feature_spread(features: torch.Tensor) -> FeatureSpread:
    """Per-feature spread of ``[users, features]`` across users (a collapsed, near-constant
    embedding has ``median_std`` far below ``mean_abs``)."""
    x = features.double()
    std = x.std(0)
    return FeatureSpread(float(std.min()), float(std.median()), float(std.max()),
                         float(x.abs().mean()))


def fit_linear_probe(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, l2: float = 1e-3,
                     max_iter: int = 200, seed: int = 0) -> ProbeFit:
    """Multinomial logistic regression ``x -> y`` by L-BFGS with a line search.

    Raises ``RuntimeError`` if the objective ended higher than it started (a failed fit must
    not be reported as a weak embedding).
    """
    torch.manual_seed(seed)
    x = x.float()
    linear = torch.nn.Linear(x.shape[1], num_classes)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=max_iter,
                                  line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        return F.cross_entropy(linear(x), y) + l2 * linear.weight.square().sum()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    with torch.no_grad():
        start = float(objective())
    optimizer.step(closure)
    with torch.no_grad():
        final = float(objective())
    if not np.isfinite(final) or final > start:
        raise RuntimeError(f"the probe's fit diverged: objective {start:.4g} -> {final:.4g}")
    return ProbeFit(linear, start, final)


def standardize(features: torch.Tensor, train_rows: np.ndarray) -> torch.Tensor:
    """Zero mean, unit variance per feature, with the training rows' statistics; features
    (nearly) constant on the training rows become zero."""
    x = features.double()
    mean = x[train_rows].mean(0)
    std = x[train_rows].std(0)
    scale = torch.where(std > MIN_STD, std, torch.full_like(std, float("inf")))
    return ((x - mean) / scale).float()


def linear_probe(features: torch.Tensor, labels: np.ndarray, *, train_fraction: float = 0.7,
                 seed: int = 0, l2: float = 1e-3) -> ProbeResult:
    """Fit on a random ``train_fraction`` of the rows (users), score on the rest."""
    n = len(labels)
    if features.shape[0] != n:
        raise ValueError(f"{features.shape[0]} feature rows for {n} labels")
    order = np.random.default_rng(seed).permutation(n)
    cut = int(train_fraction * n)
    train, test = order[:cut], order[cut:]
    if cut == 0 or cut == n:
        raise ValueError(f"a {train_fraction} split of {n} rows leaves one side empty")
    classes, y = np.unique(labels, return_inverse=True)
    y_t = torch.from_numpy(y.astype(np.int64))
    x = standardize(features, train)
    fit = fit_linear_probe(x[train], y_t[train], len(classes), l2=l2, seed=seed)
    with torch.no_grad():
        predicted = fit.linear(x[test]).argmax(1)
    accuracy = float((predicted == y_t[test]).float().mean())
    majority = int(np.bincount(y[train], minlength=len(classes)).argmax())
    return ProbeResult(accuracy, float(np.mean(y[test] == majority)), len(classes), len(train),
                       len(test), fit.start_objective, fit.final_objective)
