"""The Numba CPU kernels equal the reference on random specs, timelines and batches."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dv365.errors import DataError
from dv365.kernels.fused import pool_fused
from dv365.kernels.jagged import slice_jagged
from tests.kernels.cases import (assert_jagged_equal, assert_pooled_close, canonical,
                                 request_batch)
from tests.kernels.conftest import small_store
from tests.strategies import embedding_tables, spec_irs, timeline_stores

# Every example is a new spec, hence a new Numba compile (~2 s serial): few examples, many
# constructs per example.
RANDOM_SPECS = settings(max_examples=int(os.environ.get("DV365_KERNEL_EXAMPLES", "12")), deadline=None,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                        phases=[Phase.explicit, Phase.reuse, Phase.generate])


@pytest.fixture(autouse=True)
def _serial_kernels(monkeypatch):
    monkeypatch.setenv("DV365_KERNEL_SERIAL", "1")


def _both(ir, store, users, times, tables):
    """(cpu, reference) results, or both raising the same kind of DataError."""
    try:
        want_pool = pool_fused(ir, store, users, times, tables, "reference")
        want_jag = slice_jagged(ir, store, users, times, "reference")
    except DataError:
        with pytest.raises(DataError):
            pool_fused(ir, store, users, times, tables, "cpu")
        with pytest.raises(DataError):
            slice_jagged(ir, store, users, times, "cpu")
        return None
    return (pool_fused(ir, store, users, times, tables, "cpu"), want_pool,
            slice_jagged(ir, store, users, times, "cpu"), want_jag)


@RANDOM_SPECS
@given(ir=spec_irs(max_slices=10, dim=3), store=timeline_stores(max_users=4, n_max=40),
       data=st.data())
def test_cpu_equals_reference_on_random_specs(ir, store, data):
    store = canonical(store)
    users, times = request_batch(store, data)
    result = _both(ir, store, users, times, embedding_tables(ir, seed=1))
    if result is None:
        return
    got_pool, want_pool, got_jag, want_jag = result
    assert_pooled_close(got_pool, want_pool)
    assert_jagged_equal(got_jag, want_jag)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_tables_accumulate_in_float32(dtype, small_case):
    ir, store, users, times, tables = small_case
    half = {k: torch.from_numpy(v).to(dtype) for k, v in tables.items()}
    got = pool_fused(ir, store, users, times, half, "cpu")
    want = pool_fused(ir, store, users, times, {k: v.float() for k, v in half.items()},
                      "reference")
    assert_pooled_close(got, want)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31), n_users=st.integers(1, 4), data=st.data())
def test_fused_bands_longer_than_a_chunk_equal_reference(small_case, seed, n_users, data):
    """The fused kernel evaluates and gathers a band FUSED_CHUNK events at a time: bands of
    hundreds to thousands of events split into chunks at every offset, and the result still
    equals the reference. Compiled with parallel=True, as in production (Numba's parallel
    lowering once resolved one table's row variable to another's where the serial one did
    not)."""
    from dv365.kernels.cpu_source import FUSED_CHUNK

    os.environ.pop("DV365_KERNEL_SERIAL", None)  # the autouse fixture restores it

    ir, _, _, _, tables = small_case
    store = small_store(n_users, seed, max_events=5 * FUSED_CHUNK)
    users, times = request_batch(store, data)
    assert_pooled_close(pool_fused(ir, store, users, times, tables, "cpu"),
                        pool_fused(ir, store, users, times, tables, "reference"))


def test_parallel_kernels_equal_reference(small_case, monkeypatch):
    monkeypatch.delenv("DV365_KERNEL_SERIAL")
    ir, store, users, times, tables = small_case
    assert_pooled_close(pool_fused(ir, store, users, times, tables, "cpu"),
                        pool_fused(ir, store, users, times, tables, "reference"))
    assert_jagged_equal(slice_jagged(ir, store, users, times, "cpu"),
                        slice_jagged(ir, store, users, times, "reference"))


def test_jagged_is_a_valid_kjt_that_pools_like_the_fused_output(small_case):
    from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
    from torchrec.modules.embedding_modules import EmbeddingBagCollection

    ir, store, users, times, tables = small_case
    jag = slice_jagged(ir, store, users, times, "cpu")
    kjt = jag.kjt
    assert kjt.keys() == list(ir.slice_names)
    ebc = EmbeddingBagCollection(tables=[
        EmbeddingBagConfig(name=t.name, embedding_dim=t.dim, num_embeddings=t.num_rows,
                           feature_names=[s.name for s in ir.slices_of_table(t.name)],
                           pooling=PoolingType.SUM)
        for t in ir.tables], is_weighted=True)
    with torch.no_grad():
        for t in ir.tables:
            ebc.embedding_bags[t.name].weight.copy_(torch.from_numpy(tables[t.name]))
    pooled = ebc(kjt).to_dict()
    fused, _ = pool_fused(ir, store, users, times, tables, "cpu")
    for s, name in enumerate(ir.slice_names):
        torch.testing.assert_close(pooled[name], fused[:, s], rtol=1e-4, atol=2e-5)
