"""How the CUDA generator splits a plan's tables over fused kernels."""

from __future__ import annotations

from hypothesis import given, settings

from dv365.kernels import cuda_source
from dv365.kernels.plan import lower
from tests.strategies import spec_irs


@settings(max_examples=30, deadline=None)
@given(ir=spec_irs(max_slices=12, dim=4))
def test_every_table_with_slots_is_in_exactly_one_group(ir):
    plan = lower(ir)
    groups = cuda_source.table_groups(plan)
    placed = [t.index for g in groups for t in g]
    assert sorted(placed) == [t.index for t in plan.tables if plan.slots_of_table(t.index)]
    assert all(groups)


def test_groups_hold_at_most_the_slot_budget_unless_one_table_exceeds_it():
    from benchmarks.kernels import reels_ir

    plan = lower(reels_ir(64))
    groups = cuda_source.table_groups(plan)
    sizes = [sum(len(plan.slots_of_table(t.index)) for t in g) for g in groups]
    assert sum(sizes) == len(plan.slots)
    assert len(groups) == -(-len(plan.slots) // cuda_source.CUDA_SLOTS_PER_KERNEL)
    assert max(sizes) <= cuda_source.CUDA_SLOTS_PER_KERNEL


def test_dims_per_block_divides_the_dim():
    for dim in (2, 16, 64, 96, 100, 128, 256, 384):
        db = cuda_source.dims_per_block(dim)
        assert dim % db == 0 and db <= cuda_source.CUDA_DIMS_PER_BLOCK
    assert cuda_source.dims_per_block(256) == 64
    assert cuda_source.dims_per_block(96) == 32  # whole warps before the largest divisor
    assert cuda_source.dims_per_block(100) == 50
