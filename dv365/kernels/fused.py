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

from dv365.data.event_store import EventStore
from dv365.kernels.backend import Backend, launcher_for, resolve
from dv365.kernels.cuda_tuning import CudaTuning
from dv365.kernels.launch import prepare
from dv365.kernels.tables import to_float32
from dv365.slices import reference
from dv365.slices.ir import SpecIR


def pool_fused(ir: SpecIR, store: EventStore, user_indices: Any, request_ts: Any,
               tables: Mapping[str, Any], backend: Backend | str = Backend.cpu, *,
               tuning: CudaTuning | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled slice vectors ``[B, S, D]`` (float32) and counts ``[B, S]`` (int64).

    ``user_indices`` index the store's users; ``request_ts`` is one time (ms) per row or one
    for all; ``tables`` maps table names to ``[num_rows, dim]`` fp32/fp16/bf16 arrays.
    ``tuning`` applies to the ``cuda`` backend.
    """
    backend = resolve(backend)
    if backend is Backend.reference:
        host = {name: to_float32(t) for name, t in tables.items()}
        pooled, counts = reference.pool_batch(ir, store, user_indices, request_ts, host)
        return torch.from_numpy(pooled.astype(np.float32)), torch.from_numpy(counts)
    launch = prepare(ir, store, user_indices, request_ts)
    return launcher_for(backend, tuning).pooled(launch, tables)
