"""How the dense CUDA design splits a plan's tables over fused kernels."""

from __future__ import annotations

from hypothesis import given, settings

from dv365.kernels import cuda_dense, cuda_source
from dv365.kernels.plan import lower
from tests.strategies import spec_irs


@settings(max_examples=30, deadline=None)
@given(ir=spec_irs(max_slices=12, dim=4))
def test_every_table_with_slots_is_in_exactly_one_group(ir):
    plan = lower(ir)
    groups = cuda_dense.table_groups(plan)
    placed = [t.index for g in groups for t in g]
    assert sorted(placed) == [t.index for t in plan.tables if plan.slots_of_table(t.index)]
    assert all(groups)


def test_groups_hold_at_most_the_slot_budget_unless_one_table_exceeds_it():
    from benchmarks.kernels import reels_ir

    plan = lower(reels_ir(64))
    groups = cuda_dense.table_groups(plan)
    sizes = [sum(len(plan.slots_of_table(t.index)) for t in g) for g in groups]
    assert sum(sizes) == len(plan.slots)
    assert len(groups) == -(-len(plan.slots) // cuda_source.CUDA_SLOTS_PER_KERNEL)
    assert max(sizes) <= cuda_source.CUDA_SLOTS_PER_KERNEL
