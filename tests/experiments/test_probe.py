"""Linear probes of the exported embedding (dv365.experiments.probe)."""

from __future__ import annotations

import numpy as np
import torch

from dv365.experiments.probe import feature_spread, fit_linear_probe, linear_probe, standardize


def _classes(n: int, d: int, k: int, seed: int, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    x = torch.randn(k, d, generator=g)[y] + torch.randn(n, d, generator=g)
    return x * scale, y


def test_the_fit_lowers_its_objective_where_unit_step_lbfgs_diverges():
    # Without a line search L-BFGS ends this fit at an objective of ~340 (from ~27) and 89%
    # held-out accuracy: a broken fit that reads as a weak embedding.
    x, y = _classes(300, 32, 5, seed=1, scale=30.0)
    fit = fit_linear_probe(x[:210], y[:210], 5)
    assert fit.final_objective < 0.01 < fit.start_objective
    accuracy = (fit.linear(x[210:]).argmax(1) == y[210:]).float().mean()
    assert accuracy > 0.95


def test_the_probe_reads_planted_classes_and_not_noise():
    x, y = _classes(400, 16, 5, seed=0)
    informative = linear_probe(x, y.numpy())
    assert informative.accuracy > 0.8 > informative.majority_accuracy
    assert (informative.train_rows, informative.test_rows) == (280, 120)
    noise = linear_probe(torch.randn(400, 16, generator=torch.Generator().manual_seed(5)),
                         y.numpy())
    assert noise.accuracy < noise.majority_accuracy + 0.12


def test_standardize_zeroes_constant_features_instead_of_amplifying_float_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.stack([torch.randn(50, generator=g) * 5 + 3, torch.full((50,), 7.0),
                     7.0 + 1e-9 * torch.randn(50, generator=g)], dim=1)
    z = standardize(x, np.arange(40))
    assert torch.isfinite(z).all()
    assert z[:40, 0].mean().abs() < 1e-5 and (z[:40, 0].std() - 1).abs() < 1e-5
    assert (z[:, 1:] == 0).all()


def test_feature_spread_tells_a_constant_embedding_from_a_varying_one():
    constant = feature_spread(torch.ones(10, 4) * 3)
    assert constant.median_std == 0 and constant.mean_abs == 3
    varying = feature_spread(torch.randn(100, 4))
    assert varying.median_std > 0.5
