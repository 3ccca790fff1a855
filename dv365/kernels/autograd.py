"""A pooling op with gradients into the embedding tables, for training without torchrec.

Forward is the fused kernel (:func:`dv365.kernels.fused.pool_fused`). Backward is a scatter-
add: every event a slice selected adds ``bag_weight * grad[b, s]`` into the gradient of the
row it pooled. The rows and bag weights come from the jagged kernel (run in the forward, on
CUDA from the same predicate pass as the pooled output, and kept for the backward), so forward
and backward agree on selection by construction and gradients are dense ``[num_rows, dim]``
tensors like ``nn.EmbeddingBag``'s default.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import torch

from dv365.data.event_store import EventStore
from dv365.kernels.backend import Backend, launcher_for, resolve
from dv365.kernels.cuda_tuning import CudaTuning
from dv365.kernels.fused import pool_fused
from dv365.kernels.jagged import slice_jagged
from dv365.kernels.jagged_slices import JaggedSlices, row_limits, validate
from dv365.kernels.launch import prepare
from dv365.slices.ir import SpecIR

# Lookups per step of the backward's gather-and-add (bounds its scratch to this many rows of
# the pooled gradient: 1 GiB at D = 64).
BACKWARD_CHUNK = 1 << 22


def _pooled_and_rows(ir: SpecIR, store: EventStore, users: Any, times: Any, tables: dict,
                     backend: Backend, tuning: CudaTuning | None
                     ) -> tuple[torch.Tensor, torch.Tensor, JaggedSlices]:
    """The fused output and, for the backward, the jagged rows and bag weights (on CUDA
    from one pass that evaluates the predicates, elsewhere from the two kernels)."""
    if backend is Backend.reference:
        pooled, counts = pool_fused(ir, store, users, times, tables, backend)
        return pooled, counts, slice_jagged(ir, store, users, times, backend)
    launch = prepare(ir, store, users, times)
    pooled, counts, jag = launcher_for(backend, tuning).pooled_and_jagged(launch, tables)
    return pooled, counts, validate(jag, row_limits(ir))


class _FusedPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ir: SpecIR, store: EventStore, users: Any, times: Any, backend: Backend,
                tuning: CudaTuning | None, *tables: torch.Tensor) -> torch.Tensor:
        named = {t.name: x.detach() for t, x in zip(ir.tables, tables)}
        pooled, counts, jag = _pooled_and_rows(ir, store, users, times, named, backend,
                                               tuning)
        ctx.ir = ir
        ctx.shapes = [(x.shape, x.dtype, x.device) for x in tables]
        ctx.save_for_backward(jag.lengths, jag.values, jag.weights)
        ctx.mark_non_differentiable(counts)
        return pooled.to(tables[0].device), counts.to(tables[0].device)

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _grad_counts=None):
        lengths, values, weights = ctx.saved_tensors
        ir: SpecIR = ctx.ir
        B, S, D = grad.shape
        device = grad.device
        lengths, values, weights = (x.to(device) for x in (lengths, values, weights))
        # All tables' gradients are row ranges of one buffer, so one index_add covers every
        # slice (no per-table masks over all lookups); values are key-major, so lookup j
        # belongs to bag key[j] = s * B + b, whose pooled gradient is row key[j] of grad
        # laid out [S, B, D].
        rows = [shape[0] for shape, _, _ in ctx.shapes]
        first_row = torch.tensor([0, *itertools.accumulate(rows)][:-1], device=device)
        names = [t.name for t in ir.tables]
        table_of_slice = torch.tensor([names.index(sl.table) for sl in ir.slices],
                                      device=device)
        key = torch.repeat_interleave(torch.arange(S * B, device=device), lengths)
        target = values + first_row[table_of_slice[key // B]]
        per_bag = grad.float().transpose(0, 1).reshape(S * B, D)
        out = torch.zeros((sum(rows), D), dtype=torch.float32, device=device)
        # In chunks: the gathered [lookups, D] rows would otherwise take lookups * D floats.
        for lo in range(0, len(key), BACKWARD_CHUNK):
            hi = lo + BACKWARD_CHUNK
            part = per_bag.index_select(0, key[lo:hi]).mul_(weights[lo:hi, None])
            out.index_add_(0, target[lo:hi], part)
        grads = [g.to(dtype).to(dev) for g, (_, dtype, dev) in zip(out.split(rows), ctx.shapes)]
        return (None, None, None, None, None, None, *grads)


def fused_pool(ir: SpecIR, store: EventStore, user_indices: Any, request_ts: Any,
               tables: Sequence[torch.Tensor], backend: Backend | str = Backend.cpu, *,
               tuning: CudaTuning | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled ``[B, S, D]`` (differentiable in ``tables``, given in IR order) and counts.
    ``tuning`` applies to the ``cuda`` backend."""
    return _FusedPool.apply(ir, store, user_indices, request_ts, resolve(backend), tuning,
                            *tables)
