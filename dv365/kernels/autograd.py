"""A pooling op with gradients into the embedding tables, for training without torchrec.

Forward is the fused kernel (:func:`dv365.kernels.fused.pool_fused`). Backward is a scatter-
add: every event a slice selected adds ``bag_weight * grad[b, s]`` into the gradient of the
row it pooled. The rows and bag weights come from the jagged kernel (run in the forward, kept
for the backward), so forward and backward agree on selection by construction and gradients
are dense ``[num_rows, dim]`` tensors like ``nn.EmbeddingBag``'s default.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from dv365.kernels.backend import Backend
from dv365.kernels.fused import pool_fused
from dv365.kernels.jagged import slice_jagged
from dv365.slices.ir import SpecIR


class _FusedPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ir: SpecIR, store: Any, users: Any, times: Any, backend: Backend,
                *tables: torch.Tensor) -> torch.Tensor:
        named = {t.name: x.detach() for t, x in zip(ir.tables, tables)}
        pooled, counts = pool_fused(ir, store, users, times, named, backend)
        jag = slice_jagged(ir, store, users, times, backend)
        ctx.ir = ir
        ctx.shapes = [(x.shape, x.dtype, x.device) for x in tables]
        ctx.save_for_backward(jag.lengths, jag.values, jag.weights)
        ctx.mark_non_differentiable(counts)
        return pooled.to(tables[0].device), counts.to(tables[0].device)

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _grad_counts=None):
        lengths, values, weights = ctx.saved_tensors
        ir: SpecIR = ctx.ir
        B, S = grad.shape[0], grad.shape[1]
        device = grad.device
        lengths, values, weights = (x.to(device) for x in (lengths, values, weights))
        key = torch.repeat_interleave(torch.arange(S * B, device=device), lengths)
        s, b = key // B, key % B
        table_of_slice = torch.tensor([[t.name for t in ir.tables].index(sl.table)
                                       for sl in ir.slices], device=device)
        contrib = weights[:, None] * grad.float()[b, s]
        grads = []
        for i, (shape, dtype, dev) in enumerate(ctx.shapes):
            g = torch.zeros(shape, dtype=torch.float32, device=device)
            mask = table_of_slice[s] == i
            g.index_add_(0, values[mask], contrib[mask])
            grads.append(g.to(dtype).to(dev))
        return (None, None, None, None, None, *grads)


def fused_pool(ir: SpecIR, store: Any, user_indices: Any, request_ts: Any,
               tables: Sequence[torch.Tensor], backend: Backend | str = Backend.cpu
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled ``[B, S, D]`` (differentiable in ``tables``, given in IR order) and counts."""
    return _FusedPool.apply(ir, store, user_indices, request_ts, Backend(backend), *tables)
