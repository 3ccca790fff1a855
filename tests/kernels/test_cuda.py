"""The Numba CUDA kernels equal the reference: in the simulator always, on a GPU with -m gpu.

``tests/kernels/conftest.py`` turns Numba's CUDA simulator on unless torch sees a GPU or
``DV365_REAL_GPU=1`` (the GPU test run on the H200: ``pytest -m gpu tests/kernels``).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dv365.errors import DataError
from dv365.kernels import gpu
from dv365.kernels.fused import pool_fused
from dv365.kernels.jagged import slice_jagged
from tests.kernels.cases import (assert_jagged_equal, assert_pooled_close, canonical,
                                 generator_switches, request_batch)
from tests.strategies import embedding_tables, spec_irs, timeline_stores

SIMULATED = settings(max_examples=int(os.environ.get("DV365_KERNEL_EXAMPLES", "15")),
                     deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

real_gpu = pytest.mark.skipif(gpu.simulator() or not gpu.available(),
                              reason="needs a real CUDA GPU (DV365_REAL_GPU=1)")
simulated = pytest.mark.skipif(not gpu.simulator(), reason="runs in Numba's CUDA simulator")


def _check_random(ir, store, data):
    store = canonical(store)
    users, times = request_batch(store, data)
    tables = embedding_tables(ir, seed=2)
    try:
        want_pool = pool_fused(ir, store, users, times, tables, "reference")
        want_jag = slice_jagged(ir, store, users, times, "reference")
    except DataError:
        with pytest.raises(DataError):
            pool_fused(ir, store, users, times, tables, "cuda")
        return
    assert_pooled_close(pool_fused(ir, store, users, times, tables, "cuda"), want_pool)
    got = slice_jagged(ir, store, users, times, "cuda")
    assert_jagged_equal(_cpu(got), want_jag)


def _cpu(j):
    from dv365.kernels.jagged import JaggedSlices

    return JaggedSlices(j.keys, *(t.cpu() for t in (j.lengths, j.values, j.weights, j.counts)))


@simulated
@SIMULATED
@given(ir=spec_irs(max_slices=8, dim=2), store=timeline_stores(max_users=3, n_max=30),
       data=st.data())
def test_simulated_cuda_equals_reference_on_random_specs(ir, store, data):
    _check_random(ir, store, data)


def _small(small_case, dtype):
    ir, store, users, times, tables = small_case
    half = {k: torch.from_numpy(v).to(dtype) for k, v in tables.items()}
    want = pool_fused(ir, store, users, times, {k: v.float() for k, v in half.items()},
                      "reference")
    got = pool_fused(ir, store, users, times, half, "cuda")
    assert_pooled_close(tuple(t.cpu() for t in got), want)


@simulated
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_simulated_cuda_tables_of_every_dtype(small_case, dtype):
    _small(small_case, dtype)


@pytest.mark.gpu
@real_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gpu_tables_of_every_dtype(small_case, dtype):
    _small(small_case, dtype)
    ir, store, users, times, tables = small_case
    assert_jagged_equal(_cpu(slice_jagged(ir, store, users, times, "cuda")),
                        slice_jagged(ir, store, users, times, "reference"))


@pytest.mark.gpu
@real_gpu
# Each random spec compiles its CUDA kernels (seconds): few examples, and no shrinking, so a
# failure is reported at once instead of after minutes of compiling smaller specs.
@settings(max_examples=int(os.environ.get("DV365_KERNEL_EXAMPLES", "3")), deadline=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ir=spec_irs(max_slices=10, dim=8), store=timeline_stores(max_users=4, n_max=60),
       data=st.data())
def test_gpu_equals_reference_on_random_specs(ir, store, data):
    _check_random(ir, store, data)


@pytest.mark.gpu
@real_gpu
def test_gpu_equals_cpu_on_long_timelines():
    from tests.kernels.conftest import small_ir, small_store

    ir = small_ir(dim=64)
    store = small_store(n_users=4, seed=5)
    rng = np.random.default_rng(0)
    tables = {t.name: rng.standard_normal((t.num_rows, t.dim)).astype(np.float32)
              for t in ir.tables}
    users = np.array([0, 1, 2, 3], np.int64)
    times = np.full(4, int(store.columns["ts"].max()) + 1, np.int64)
    got = pool_fused(ir, store, users, times, tables, "cuda")
    want = pool_fused(ir, store, users, times, tables, "cpu")
    assert torch.equal(got[1].cpu(), want[1])
    torch.testing.assert_close(got[0].cpu(), want[0], rtol=1e-4, atol=1e-4)


@simulated
@pytest.mark.parametrize("switches", [
    # entries design: segments of 2 slots, tiles of 5 events shrunk to fit 2 entries,
    # chunks of 7 events, 3 entries' rows loaded ahead (not a divisor of the tiles)
    {"SEGMENT_SLOTS": 2, "CUDA_ENTRY_TILE": 5, "CUDA_ENTRY_CAP": 2, "CUDA_CHUNK_FUSED": 7,
     "CUDA_ENTRY_PREFETCH": 3, "CUDA_ENTRY_GROUPS": 3},
    {"CUDA_ENTRY_PREFETCH": 1, "SEGMENT_SLOTS": 1, "CUDA_ENTRY_GROUPS": 1,
     "CUDA_ENTRY_OFFSET32": False},
    {"CUDA_ENTRY_COUNTING": "mark", "CUDA_MARK_THREADS": 8},  # blocks of 8 events
    # counting in the fused kernel: by thread 0 per slot; by lanes, fewer (2) than slot bits
    {"CUDA_ENTRY_COUNTING": "slot_loop"},
    {"CUDA_ENTRY_COUNTING": "lanes"},
    # dense design
    {"CUDA_FUSED_DESIGN": "dense"},
    {"CUDA_FUSED_DESIGN": "dense", "CUDA_SLOTS_PER_KERNEL": 1},  # a kernel per table
    # counts in the fused kernel instead of tally
    {"CUDA_FUSED_DESIGN": "dense", "CUDA_FUSED_COUNTS": True, "CUDA_SLOTS_PER_KERNEL": 1},
    # several events' loads at once; tiles not a multiple of 3
    {"CUDA_FUSED_DESIGN": "dense", "CUDA_EVENTS_PER_STEP": 3},
    {"CUDA_FUSED_DESIGN": "dense", "CUDA_EVENTS_PER_STEP": 4, "PIPELINE": False},
])
@SIMULATED
@given(ir=spec_irs(max_slices=8, dim=2), store=timeline_stores(max_users=3, n_max=30),
       data=st.data())
def test_simulated_cuda_under_each_generator_switch(switches, ir, store, data):
    with generator_switches(**switches):
        _check_random(ir, store, data)


@simulated
@SIMULATED
@given(ir=spec_irs(max_slices=8, dim=32), store=timeline_stores(max_users=3, n_max=30),
       data=st.data())
def test_simulated_cuda_walkers_of_a_warp(ir, store, data):
    # Two walkers of 16 lanes per warp, each its own group: small segments, tiles and
    # chunks, so that the walkers' groups, entries and band flushes differ within a tile.
    with generator_switches(CUDA_ENTRY_WALKERS=2, CUDA_ENTRY_COUNTING="slot_loop",
                            SEGMENT_SLOTS=2, CUDA_ENTRY_TILE=5, CUDA_ENTRY_CAP=3,
                            CUDA_CHUNK_FUSED=9, CUDA_ENTRY_GROUPS=3) as cuda_source:
        assert cuda_source.entry_walkers(32) == 2
        _check_random(ir, store, data)


@simulated
@pytest.mark.parametrize("switches,dim,per_thread", [
    # entries kernel: one warp per block, its lanes split between walkers of a group each
    ({}, 64, 2),  # one walker of 32 lanes
    ({"CUDA_ENTRY_WALKERS": 2}, 64, 4),  # two walkers of 16 lanes
    ({"CUDA_ENTRY_WALKERS": 4}, 32, 4),  # four walkers of 8 lanes
    ({"CUDA_ENTRY_WALKERS": 2}, 256, 8),  # one walker: 16 lanes would own 16 dims each
    ({"CUDA_ENTRY_DIMS_PER_BLOCK": 128}, 256, 4),
    ({"CUDA_ENTRY_WALKERS": 2}, 96, 6),
    # counts from mark_entries in blocks of 8 events: small_ir's slots have slices of
    # several windows
    ({"CUDA_MARK_THREADS": 8}, 64, 2),
    # counts in the fused kernel: thread 0 in the slot loop; lane l of slot bit l
    ({"CUDA_ENTRY_COUNTING": "slot_loop"}, 64, 2),
    ({"CUDA_ENTRY_COUNTING": "lanes"}, 64, 2),
    ({"CUDA_ENTRY_COUNTING": "slot_loop", "CUDA_ENTRY_WALKERS": 2}, 64, 4),
    # dense kernels: blocks of 64 dims, CUDA_DIMS_PER_THREAD dims per thread
    ({"CUDA_FUSED_DESIGN": "dense"}, 64, 2),
    ({"CUDA_FUSED_DESIGN": "dense"}, 128, 2),
    ({"CUDA_FUSED_DESIGN": "dense", "CUDA_DIMS_PER_THREAD": 1}, 64, 1),
    ({"CUDA_FUSED_DESIGN": "dense", "CUDA_EVENTS_PER_STEP": 4}, 64, 2),
])
def test_simulated_cuda_threads_owning_several_dims(switches, dim, per_thread):
    # Threads own dims d, d + 32, ...; pooled vectors equal the reference's.
    from tests.kernels.conftest import small_ir, small_store

    with generator_switches(**switches) as cuda_source:
        assert cuda_source.dims_per_thread(dim) == per_thread
        ir = small_ir(dim=dim)
        store = small_store(n_users=2, seed=3)
        rng = np.random.default_rng(1)
        tables = {t.name: rng.standard_normal((t.num_rows, t.dim)).astype(np.float32)
                  for t in ir.tables}
        users = np.array([0, 1], np.int64)
        times = np.full(2, int(store.columns["ts"].max()) + 1, np.int64)
        got = pool_fused(ir, store, users, times, tables, "cuda")
        want = pool_fused(ir, store, users, times, tables, "reference")
        assert_pooled_close(got, want)


@simulated
def test_simulated_autograd_op_marks_once_and_matches_the_cpu_op(small_case, monkeypatch):
    # On CUDA the op's forward takes the pooled vectors and the backward's rows from one
    # `mark` pass (gpu.pool_and_slice); values and gradients equal the CPU op's.
    from dv365.kernels import gpu
    from dv365.kernels.autograd import fused_pool

    ir, store, users, times, tables = small_case
    marks = []
    real_mark = gpu.mark
    monkeypatch.setattr(gpu, "mark", lambda *a, **k: marks.append(1) or real_mark(*a, **k))
    results = {}
    for backend in ("cpu", "cuda"):
        params = [torch.from_numpy(tables[t.name]).clone().requires_grad_(True)
                  for t in ir.tables]
        pooled, counts = fused_pool(ir, store, users, times, params, backend)
        upstream = torch.from_numpy(
            np.random.default_rng(7).standard_normal(pooled.shape)).float()
        (pooled.cpu() * upstream).sum().backward()
        results[backend] = (pooled.detach().cpu(), counts.cpu(), [p.grad for p in params])
    assert len(marks) == 1
    (p_cpu, c_cpu, g_cpu), (p_gpu, c_gpu, g_gpu) = results["cpu"], results["cuda"]
    assert torch.equal(c_cpu, c_gpu)
    torch.testing.assert_close(p_gpu, p_cpu, rtol=1e-4, atol=2e-5)
    for a, b in zip(g_gpu, g_cpu):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=2e-5)
