"""The CUDA launcher under every tuning that reaches a distinct path of the generated code.

Runs in Numba's CUDA simulator (``tests/kernels/conftest.py`` turns it on without a GPU):
small tunings make tiny data cross every boundary a paper-scale batch crosses (segments,
staged tiles, chunks, prefetch, entry groups, mark blocks, 64-bit offsets).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dv365.kernels import cuda_launch
from dv365.kernels.cuda_tuning import CudaTuning
from dv365.kernels.fused import pool_fused
from tests.kernels.cases import assert_pooled_close
from tests.kernels.test_parity import RANDOM_SPECS, check_against_reference
from tests.strategies import spec_irs, timeline_stores

simulated = pytest.mark.skipif(not cuda_launch.simulator(),
                               reason="runs in Numba's CUDA simulator")

TUNINGS = {
    # segments of 2 slots, tiles of 5 events shrunk to fit 2 staged entries, chunks of 7
    # events, 3 entries' rows loaded ahead (not a divisor of the tiles), 3 entry groups
    "small": CudaTuning(segment_slots=2, tile_events=5, staged_entries=2,
                        fused_chunk_events=7, prefetch_entries=3, min_entry_groups=3),
    # one slot per segment, one group, no prefetch, 64-bit row offsets
    "single": CudaTuning(prefetch_entries=1, segment_slots=1, min_entry_groups=1,
                         offset32=False),
    # counting mark_entries blocks of 8 threads x 2 events
    "mark8": CudaTuning(mark_threads=8, mark_events_per_thread=2),
}


@simulated
@pytest.mark.parametrize("name", sorted(TUNINGS))
@RANDOM_SPECS
@given(ir=spec_irs(max_slices=8, dim=2), store=timeline_stores(max_users=3, n_max=30),
       data=st.data())
def test_every_tuning_equals_the_reference(name, ir, store, data):
    check_against_reference("cuda", ir, store, data, tuning=TUNINGS[name])


@simulated
@pytest.mark.parametrize("tuning,dim", [
    (CudaTuning(), 64),  # one warp, 2 dims a lane
    (CudaTuning(max_dims_per_block=128), 256),  # two blocks walk each entry, 4 dims a lane
    (CudaTuning(), 96),  # 3 dims a lane
    (CudaTuning(mark_threads=8), 64),  # counts over blocks of 8 x 4 events
])
def test_threads_owning_several_dims(tuning, dim):
    # Threads own dims d, d + 32, ...; pooled vectors equal the reference's.
    from tests.kernels.conftest import small_ir, small_store

    ir = small_ir(dim=dim)
    store = small_store(n_users=2, seed=3)
    rng = np.random.default_rng(1)
    tables = {t.name: rng.standard_normal((t.num_rows, t.dim)).astype(np.float32)
              for t in ir.tables}
    users = np.array([0, 1], np.int64)
    times = np.full(2, int(store.columns["ts"].max()) + 1, np.int64)
    assert_pooled_close(pool_fused(ir, store, users, times, tables, "cuda", tuning=tuning),
                        pool_fused(ir, store, users, times, tables, "reference"))


@simulated
def test_autograd_op_marks_once_and_matches_the_cpu_op(small_case, monkeypatch):
    # On CUDA the op's forward takes the pooled vectors and the backward's rows from one
    # mark pass; values and gradients equal the CPU op's.
    from dv365.kernels.autograd import fused_pool

    ir, store, users, times, tables = small_case
    marks = []
    real_mark = cuda_launch.CudaLauncher._mark
    monkeypatch.setattr(cuda_launch.CudaLauncher, "_mark",
                        lambda *a, **k: marks.append(k) or real_mark(*a, **k))
    results = {}
    for backend in ("cpu", "cuda"):
        params = [torch.from_numpy(tables[t.name]).clone().requires_grad_(True)
                  for t in ir.tables]
        pooled, counts = fused_pool(ir, store, users, times, params, backend)
        upstream = torch.from_numpy(
            np.random.default_rng(7).standard_normal(pooled.shape)).float()
        (pooled.cpu() * upstream).sum().backward()
        results[backend] = (pooled.detach().cpu(), counts.cpu(), [p.grad for p in params])
    assert marks == [{"entries": True, "jagged": True}]
    (p_cpu, c_cpu, g_cpu), (p_gpu, c_gpu, g_gpu) = results["cpu"], results["cuda"]
    assert torch.equal(c_cpu, c_gpu)
    torch.testing.assert_close(p_gpu, p_cpu, rtol=1e-4, atol=2e-5)
    for a, b in zip(g_gpu, g_cpu):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=2e-5)


@simulated
def test_phases_are_timed_only_when_asked(small_case):
    from dv365.kernels.launch import prepare

    ir, store, users, times, tables = small_case
    launch = prepare(ir, store, users, times)
    phases: dict[str, float] = {}
    cuda_launch.CudaLauncher(phases=phases).pooled(launch, tables)
    assert {"mark_kernel", "entry_positions", "fused", "finalize"} <= set(phases)
    assert all(v >= 0 for v in phases.values())
    quiet = cuda_launch.CudaLauncher()
    assert quiet.phases is None
