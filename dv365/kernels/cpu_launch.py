"""Launching the generated CPU kernels (:mod:`dv365.kernels.cpu_source`) on a batch.

``fused`` gives the pooled output directly. The jagged output takes two passes: ``count``
(counts and weight sums per slice, and each event's slot bits and weights) and then
``fill`` (rows and bag weights at key-major positions scanned from the counts).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from dv365.kernels import codegen
from dv365.kernels.checks import check_tables, raise_bad_weight
from dv365.kernels.jagged_slices import JaggedSlices
from dv365.kernels.launch import Launch
from dv365.kernels.plan import KernelPlan
from dv365.kernels.source import POOL_CODES, weight_columns
from dv365.kernels.tables import host_array, widening_lut


def slice_arrays(plan: KernelPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per slice: its slot, its band and its pooling code (finalize tables of a kernel)."""
    slot = np.array([s.slot for s in plan.slices], np.int64)
    band = np.array([s.band for s in plan.slices], np.int64)
    pool = np.array([POOL_CODES[s.pooling] for s in plan.slices], np.int64)
    return slot, band, pool


def _columns(launch: Launch) -> list[np.ndarray]:
    return [np.asarray(launch.store.columns[c]) for c in launch.plan.columns]


class CpuLauncher:
    """Runs launches with the generated Numba CPU kernels (``prange`` over batch rows)."""

    def pooled(self, launch: Launch, tables: Mapping[str, Any]
               ) -> tuple[torch.Tensor, torch.Tensor]:
        plan, store, batch = launch.plan, launch.store, launch.batch
        elem = check_tables(plan, tables)
        module = codegen.load(plan, "cpu", elem)
        arrays = [host_array(tables[t.name]) for t in plan.tables]
        B, S = len(batch), len(plan.slices)
        out = np.zeros((B, S, plan.dim), np.float32)
        counts = np.zeros((B, S), np.int64)
        bad = np.zeros(B, np.int64)
        module.fused(np.asarray(store.offsets), batch.users, batch.request_ts,
                     np.asarray(store.columns["ts"]), *_columns(launch), *arrays,
                     widening_lut(elem), *slice_arrays(plan), out, counts, bad)
        raise_bad_weight(plan, launch.ir, bad)
        return torch.from_numpy(out), torch.from_numpy(counts)

    def jagged(self, launch: Launch) -> JaggedSlices:
        plan, store, batch = launch.plan, launch.store, launch.batch
        module = codegen.load(plan, "cpu")
        cols = _columns(launch)
        offsets, ts = np.asarray(store.offsets), np.asarray(store.columns["ts"])
        users, times = batch.users, batch.request_ts
        B, S = len(batch), len(plan.slices)
        counts = np.zeros((B, S), np.int64)
        wsums = np.zeros((B, S), np.float64)
        bad = np.zeros(B, np.int64)
        slot, band, _ = slice_arrays(plan)
        base = batch.event_positions(store)
        n_ev = max(int(batch.history_lengths(store).sum()), 1)
        words = (len(plan.slots) + 63) // 64
        n_w = len(weight_columns(plan))
        # Read back only where the count pass wrote them.
        masks = np.empty((n_ev, words), np.uint64)
        wvals = np.empty((n_ev, max(n_w, 1)), np.float64)
        module.count(offsets, users, times, ts, *cols, slot, band, counts, wsums, bad, base,
                     masks, wvals)
        raise_bad_weight(plan, launch.ir, bad)
        lengths = np.ascontiguousarray(counts.T).reshape(-1)
        bag_start = np.cumsum(lengths) - lengths
        total = int(lengths.sum())
        values = np.empty(total, np.int64)
        weights = np.empty(total, np.float32)
        module.fill(offsets, users, times, ts, *cols, bag_start, counts, wsums, values,
                    weights, base, masks, wvals)
        return JaggedSlices(launch.ir.slice_names, torch.from_numpy(lengths),
                            torch.from_numpy(values), torch.from_numpy(weights),
                            torch.from_numpy(counts))

    def pooled_and_jagged(self, launch: Launch, tables: Mapping[str, Any]
                          ) -> tuple[torch.Tensor, torch.Tensor, JaggedSlices]:
        pooled, counts = self.pooled(launch, tables)
        return pooled, counts, self.jagged(launch)
