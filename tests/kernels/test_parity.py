"""Every compiled backend equals the reference: random specs, timelines, batches, dtypes.

One harness, parametrized over the backends: ``cpu`` (generated Numba) and ``cuda`` (Numba's
CUDA simulator here; a real GPU with ``DV365_REAL_GPU=1 pytest -m gpu tests/kernels``, see
``tests/kernels/conftest.py``). The reference (:mod:`dv365.slices.reference`) defines the
semantics; a spec the reference refuses with a DataError must be refused by every backend.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dv365.errors import DataError
from dv365.kernels import cuda_launch
from dv365.kernels.fused import pool_fused
from dv365.kernels.jagged import slice_jagged
from dv365.kernels.jagged_slices import JaggedSlices
from tests.kernels.cases import (assert_jagged_equal, assert_pooled_close, canonical,
                                 request_batch)
from tests.strategies import embedding_tables, spec_irs, timeline_stores

real_gpu = pytest.mark.skipif(cuda_launch.simulator() or not cuda_launch.available(),
                              reason="needs a real CUDA GPU (DV365_REAL_GPU=1)")

# Every example is a new spec, hence a new compile: few examples, many constructs each. The
# simulator runs a Python thread per GPU thread, so its cases are smaller.
CASES = {
    "cpu": dict(slices=10, dim=3, users=4, events=40),
    "cuda": dict(slices=8, dim=2, users=3, events=30),
}
RANDOM_SPECS = settings(max_examples=int(os.environ.get("DV365_KERNEL_EXAMPLES", "12")),
                        deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
                        suppress_health_check=[HealthCheck.too_slow,
                                               HealthCheck.data_too_large])


def on_host(j: JaggedSlices) -> JaggedSlices:
    return JaggedSlices(j.keys, *(t.cpu() for t in (j.lengths, j.values, j.weights, j.counts)))


def check_against_reference(backend, ir, store, data, **options) -> None:
    """Both outputs of ``backend`` (``options``: e.g. a CUDA ``tuning``) equal the
    reference's on a batch drawn for ``store``, or both refuse it."""
    store = canonical(store)
    users, times = request_batch(store, data)
    tables = embedding_tables(ir, seed=2)
    try:
        want_pool = pool_fused(ir, store, users, times, tables, "reference")
        want_jag = slice_jagged(ir, store, users, times, "reference")
    except DataError:
        with pytest.raises(DataError):
            pool_fused(ir, store, users, times, tables, backend, **options)
        with pytest.raises(DataError):
            slice_jagged(ir, store, users, times, backend, **options)
        return
    assert_pooled_close(pool_fused(ir, store, users, times, tables, backend, **options),
                        want_pool)
    assert_jagged_equal(on_host(slice_jagged(ir, store, users, times, backend, **options)),
                        want_jag)


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
@RANDOM_SPECS
@given(data=st.data())
def test_backend_equals_reference_on_random_specs(backend, data):
    case = CASES[backend]
    ir = data.draw(spec_irs(max_slices=case["slices"], dim=case["dim"]), label="spec")
    store = data.draw(timeline_stores(max_users=case["users"], n_max=case["events"]),
                      label="store")
    check_against_reference(backend, ir, store, data)


@pytest.mark.parametrize("backend,dtype", [
    ("cpu", torch.float16), ("cpu", torch.bfloat16),
    ("cuda", torch.float32), ("cuda", torch.float16), ("cuda", torch.bfloat16)])
def test_half_tables_accumulate_in_float32(small_case, backend, dtype):
    ir, store, users, times, tables = small_case
    half = {k: torch.from_numpy(v).to(dtype) for k, v in tables.items()}
    want = pool_fused(ir, store, users, times, {k: v.float() for k, v in half.items()},
                      "reference")
    assert_pooled_close(pool_fused(ir, store, users, times, half, backend), want)


# ----------------------------------------------------------------------------- real GPU
@pytest.mark.gpu
@real_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gpu_tables_of_every_dtype(small_case, dtype):
    test_half_tables_accumulate_in_float32(small_case, "cuda", dtype)
    ir, store, users, times, tables = small_case
    assert_jagged_equal(on_host(slice_jagged(ir, store, users, times, "cuda")),
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
    check_against_reference("cuda", ir, store, data)


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
