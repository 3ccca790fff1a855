"""The one way to run a spec over a batch of histories: :func:`prepare`, then a launcher.

:func:`prepare` turns (IR, event store, user indices, request times) into a checked
:class:`Launch`: the IR lowered against the store's vocabulary (memoized), the store and its
identity ids checked, the batch checked. A :class:`Launcher` runs a launch on one backend
(:func:`dv365.kernels.backend.launcher_for` gives it):

* :class:`~dv365.kernels.cpu_launch.CpuLauncher`, generated Numba CPU kernels;
* :class:`~dv365.kernels.cuda_launch.CudaLauncher`, generated Numba CUDA kernels with a
  :class:`~dv365.kernels.cuda_tuning.CudaTuning`.

The public entry points (:func:`dv365.kernels.fused.pool_fused`,
:func:`dv365.kernels.jagged.slice_jagged`, :func:`dv365.kernels.autograd.fused_pool`) are
thin: resolve the backend, prepare, launch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol

import torch

from dv365.data.event_store import EventStore
from dv365.data.vocabulary import Vocabulary
from dv365.kernels.batch import RequestBatch
from dv365.kernels.cache import CACHES
from dv365.kernels.checks import check_ids, check_store
from dv365.kernels.jagged_slices import JaggedSlices
from dv365.kernels.plan import KernelPlan, build_plan
from dv365.slices.ir import SpecIR


def _ir_hash(ir: SpecIR) -> str:
    # keyed by object identity; the entry holds the IR, so its id is not reused while cached
    hit = CACHES.ir_hashes.get(id(ir))
    if hit is not None and hit[0] is ir:
        return hit[1]
    return CACHES.ir_hashes.put(id(ir), (ir, ir.content_hash()))[1]


def plan_for(ir: SpecIR, store: EventStore) -> KernelPlan:
    """The IR lowered against the store's vocabulary (memoized by IR hash and vocabulary)."""
    vocab = Vocabulary.of_store(store)
    return CACHES.plans.get_or_make((_ir_hash(ir), vocab.key()),
                                    lambda: build_plan(ir, vocab))


@dataclass(frozen=True)
class Launch:
    """One spec over one checked batch of one checked store."""

    ir: SpecIR
    plan: KernelPlan
    store: EventStore
    batch: RequestBatch


def prepare(ir: SpecIR, store: EventStore, user_indices: Any, request_ts: Any) -> Launch:
    """The launch of ``ir`` over the batch, everything checked (see :mod:`dv365.kernels.checks`)."""
    plan = plan_for(ir, store)
    check_store(store, plan.columns)
    check_ids(plan, store)
    return Launch(ir, plan, store, RequestBatch.checked(store, user_indices, request_ts))


class Launcher(Protocol):
    """Runs launches on one backend. Tables map the plan's table names to ``[rows, dim]``
    fp32 / fp16 / bf16 arrays or tensors (one dtype for all)."""

    def pooled(self, launch: Launch, tables: Mapping[str, Any]
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled slice vectors ``[B, S, D]`` (float32) and counts ``[B, S]`` (int64)."""
        ...

    def jagged(self, launch: Launch) -> JaggedSlices:
        """The selected rows and bag weights, key-major (not yet validated)."""
        ...

    def pooled_and_jagged(self, launch: Launch, tables: Mapping[str, Any]
                          ) -> tuple[torch.Tensor, torch.Tensor, JaggedSlices]:
        """Both outputs of one batch (the autograd op's forward and backward)."""
        ...
