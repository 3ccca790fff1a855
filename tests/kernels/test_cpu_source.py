"""The CPU kernels' own structure: chunked bands and the parallel build."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dv365.errors import ConfigError
from dv365.kernels.cpu_source import FUSED_CHUNK, SLOT_BITS, generate
from dv365.kernels.fused import pool_fused
from dv365.kernels.jagged import slice_jagged
from dv365.kernels.plan import build_plan
from tests.kernels.cases import assert_jagged_equal, assert_pooled_close, request_batch
from tests.kernels.conftest import small_store


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31), n_users=st.integers(1, 4), data=st.data())
def test_fused_bands_longer_than_a_chunk_equal_reference(small_case, seed, n_users, data):
    """The fused kernel evaluates and gathers a band FUSED_CHUNK events at a time: bands of
    hundreds to thousands of events split into chunks at every offset, and the result still
    equals the reference. Compiled with parallel=True, as in production (Numba's parallel
    lowering once resolved one table's row variable to another's where the serial one did
    not)."""
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


def test_more_slots_than_an_entry_holds_is_a_config_error(monkeypatch):
    from dv365.kernels import cpu_source
    from tests.kernels.conftest import small_ir

    plan = build_plan(small_ir())
    monkeypatch.setattr(cpu_source, "SLOT_BITS", 3)  # room for 7 slots, the plan has 15
    with pytest.raises(ConfigError, match="15 slots.*at most 7"):
        generate(plan, "f32")
    assert SLOT_BITS == 16
