"""The fused pooled output: ``[batch, slices, dim]`` straight from events and tables.

For inference and export: each event is read once, every distinct predicate evaluated once,
each needed table row gathered once per event and added into every slot that selects it;
slices are read off their slots per time band (see :mod:`dv365.kernels.plan`). Accumulation
is float32 whatever the table dtype.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from dv365.kernels import codegen
from dv365.kernels.backend import (Backend, bad_weight_error, check_tables, prepare, resolve)
from dv365.kernels.tables import ELEM_OF_DTYPE, host_array, to_float32, widening_lut
from dv365.slices import reference
from dv365.slices.ir import SpecIR


def slice_arrays(plan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per slice: its slot, its band and its pooling code (finalize tables of a kernel)."""
    slot = np.array([s.slot for s in plan.slices], np.int64)
    band = np.array([s.band for s in plan.slices], np.int64)
    pool = np.array([codegen.POOL_CODES[s.pooling] for s in plan.slices], np.int64)
    return slot, band, pool


def pool_fused(ir: SpecIR, store: Any, user_indices: Any, request_ts: Any,
               tables: Mapping[str, Any], backend: Backend | str = Backend.cpu
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled slice vectors ``[B, S, D]`` (float32) and counts ``[B, S]`` (int64).

    ``user_indices`` index the store's users; ``request_ts`` is one time (ms) per row or one
    for all; ``tables`` maps table names to ``[num_rows, dim]`` fp32/fp16/bf16 arrays.
    """
    backend = resolve(backend)
    if backend is Backend.reference:
        host = {name: to_float32(t) for name, t in tables.items()}
        pooled, counts = reference.pool_batch(ir, store, user_indices, request_ts, host)
        return torch.from_numpy(pooled.astype(np.float32)), torch.from_numpy(counts)
    plan, users, times = prepare(ir, store, user_indices, request_ts)
    dtype = check_tables(plan, tables)
    elem = ELEM_OF_DTYPE[dtype]
    if backend is Backend.cuda:
        from dv365.kernels import gpu

        return gpu.pool_fused(ir, plan, store, users, times, tables, elem)
    module = codegen.load(plan, "cpu", elem)
    cols = [np.asarray(store.columns[c]) for c in plan.columns]
    arrays = [host_array(tables[t.name]) for t in plan.tables]
    B, S = len(users), len(plan.slices)
    out = np.zeros((B, S, plan.dim), np.float32)
    counts = np.zeros((B, S), np.int64)
    bad = np.zeros(B, np.int64)
    module.fused(np.asarray(store.offsets), users, times, np.asarray(store.columns["ts"]),
                 *cols, *arrays, widening_lut(elem), *slice_arrays(plan), out, counts, bad)
    error = bad_weight_error(plan, ir, bad)
    if error is not None:
        raise error
    return torch.from_numpy(out), torch.from_numpy(counts)
