"""The jagged output for training: :func:`slice_jagged`, one spec over one batch.

Rows hashed, bag weights normalized per bag, key-major (:class:`~dv365.kernels.jagged_slices.
JaggedSlices`), validated before they are returned.
"""

from __future__ import annotations

from typing import Any

import torch

from dv365.data.event_store import EventStore
from dv365.kernels.backend import Backend, launcher_for, resolve
from dv365.kernels.cuda_tuning import CudaTuning
from dv365.kernels.jagged_slices import JaggedSlices, row_limits, validate
from dv365.kernels.launch import prepare
from dv365.slices import reference
from dv365.slices.ir import SpecIR


def slice_jagged(ir: SpecIR, store: EventStore, user_indices: Any, request_ts: Any,
                 backend: Backend | str = Backend.cpu, *,
                 tuning: CudaTuning | None = None) -> JaggedSlices:
    """The batch's slices as :class:`JaggedSlices` (rows hashed, weights normalized per bag),
    validated. ``tuning`` applies to the ``cuda`` backend."""
    backend = resolve(backend)
    if backend is Backend.reference:
        ref = reference.jagged_batch(ir, store, user_indices, request_ts)
        out = JaggedSlices(ir.slice_names, torch.from_numpy(ref.lengths),
                           torch.from_numpy(ref.values), torch.from_numpy(ref.weights),
                           torch.from_numpy(ref.counts))
    else:
        launch = prepare(ir, store, user_indices, request_ts)
        out = launcher_for(backend, tuning).jagged(launch)
    return validate(out, row_limits(ir))
