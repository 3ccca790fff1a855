"""Gradients of the fused pooling op: finite differences of the reference, and EmbeddingBag."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dv365.kernels.autograd import fused_pool
from dv365.slices import reference


def _grads(small_case):
    ir, store, users, times, tables = small_case
    params = [torch.from_numpy(tables[t.name]).clone().requires_grad_(True) for t in ir.tables]
    pooled, counts = fused_pool(ir, store, users, times, params, "cpu")
    upstream = torch.from_numpy(np.random.default_rng(7).standard_normal(pooled.shape)).float()
    (pooled * upstream).sum().backward()
    return ir, store, users, times, tables, params, upstream


def test_gradients_match_finite_differences_of_the_reference(small_case):
    ir, store, users, times, tables, params, upstream = _grads(small_case)
    G = upstream.double().numpy()

    def loss(tabs):
        pooled, _ = reference.pool_batch(ir, store, users, times, tabs)
        return float((pooled * G).sum())

    rng = np.random.default_rng(0)
    base = {k: v.astype(np.float64) for k, v in tables.items()}
    checked = 0
    for ti, t in enumerate(ir.tables):
        grad = params[ti].grad.numpy()
        touched = np.flatnonzero(np.abs(grad).sum(1))
        rows = list(rng.choice(touched, size=min(3, len(touched)), replace=False)) + [
            int(rng.integers(t.num_rows))]
        for r in rows:
            d = int(rng.integers(t.dim))
            eps = 1e-3
            up = {k: v.copy() for k, v in base.items()}
            up[t.name][r, d] += eps
            down = {k: v.copy() for k, v in base.items()}
            down[t.name][r, d] -= eps
            numeric = (loss(up) - loss(down)) / (2 * eps)
            assert grad[r, d] == pytest.approx(numeric, rel=1e-4, abs=1e-5)
            checked += 1
    assert checked >= len(ir.tables)


def test_gradients_match_embedding_bag_over_the_jagged_reference(small_case):
    ir, store, users, times, tables, params, upstream = _grads(small_case)
    ref = reference.jagged_batch(ir, store, users, times)
    B = len(users)
    lengths = torch.from_numpy(ref.lengths)
    offsets = torch.cumsum(lengths, 0) - lengths
    values, weights = torch.from_numpy(ref.values), torch.from_numpy(ref.weights)
    for ti, t in enumerate(ir.tables):
        table = torch.from_numpy(tables[t.name]).clone().requires_grad_(True)
        total = 0
        for s, sl in enumerate(ir.slices):
            if sl.table != t.name:
                continue
            lo = int(offsets[s * B])
            hi = int(offsets[s * B + B - 1] + lengths[s * B + B - 1])
            bag_offsets = offsets[s * B:(s + 1) * B] - lo
            pooled = F.embedding_bag(values[lo:hi], table, bag_offsets, mode="sum",
                                     per_sample_weights=weights[lo:hi])
            total = total + (pooled * upstream[:, s]).sum()
        total.backward()
        torch.testing.assert_close(params[ti].grad, table.grad, rtol=1e-5, atol=1e-6)


def test_the_backward_in_small_chunks_gives_the_same_gradients(small_case, monkeypatch):
    import dv365.kernels.autograd as autograd

    whole = _grads(small_case)[5]
    monkeypatch.setattr(autograd, "BACKWARD_CHUNK", 7)  # many chunks, a ragged last one
    chunked = _grads(small_case)[5]
    for a, b in zip(whole, chunked):
        assert a.grad.abs().sum() > 0
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-6)
