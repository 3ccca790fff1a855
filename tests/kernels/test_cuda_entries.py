"""How the entries CUDA design splits a plan into segments and entry groups."""

from __future__ import annotations

from hypothesis import given, settings

from dv365.kernels import cuda_entries, cuda_source
from dv365.kernels.plan import lower
from tests.strategies import spec_irs


def test_entry_groups_grow_with_the_block_dims():
    # a block's sums stay near CUDA_ENTRY_GROUP_BYTES: reels at D=64 in 4 groups (4.9 kB of
    # sums per block), at D=256 in 8 (9.3 kB)
    from benchmarks.kernels import reels_ir

    assert len(cuda_entries.segment_groups(lower(reels_ir(64)))) == 4
    assert len(cuda_entries.segment_groups(lower(reels_ir(256)))) == 8


@settings(max_examples=30, deadline=None)
@given(ir=spec_irs(max_slices=12, dim=4))
def test_segments_cover_every_slot_once_with_one_table_and_weight(ir):
    # The entries kernel: a segment is one table's slots of one weight, at most
    # SEGMENT_SLOTS of them (an entry's bits), and the groups split the segments in order.
    plan = lower(ir)
    segs = cuda_entries.segments(plan)
    slots = [s for _, _, ss in segs for s in ss]
    assert sorted(slots) == [s.index for s in plan.slots]
    for table, weight, ss in segs:
        assert 0 < len(ss) <= cuda_source.SEGMENT_SLOTS
        assert {(plan.slots[s].table, plan.slots[s].weight) for s in ss} == {(table, weight)}
    groups = cuda_entries.segment_groups(plan)
    assert [i for g in groups for i in g] == list(range(len(segs)))
    assert len(groups) <= cuda_source.CUDA_ENTRY_GROUPS and all(len(g) for g in groups)


def test_entry_groups_split_reels_slots_about_evenly():
    from benchmarks.kernels import reels_ir

    plan = lower(reels_ir(64))
    segs = cuda_entries.segments(plan)
    sizes = [sum(len(segs[i][2]) for i in g) for g in cuda_entries.segment_groups(plan)]
    assert len(sizes) == cuda_source.CUDA_ENTRY_GROUPS and sum(sizes) == len(plan.slots)
    assert max(sizes) - min(sizes) <= max(len(s) for _, _, s in segs)



def test_tables_past_32_bit_rows_are_a_clear_error():
    # entries hold 32-bit packed rows: the generator says so instead of wrapping them
    import pytest

    from dv365.errors import DataError
    from tests.kernels.conftest import small_ir

    ir = small_ir(dim=4)
    ir = ir.model_copy(update={"tables": tuple(t.model_copy(update={"num_rows": 1 << 31})
                                               for t in ir.tables)})
    with pytest.raises(DataError, match="2\\^32 rows"):
        cuda_entries.fused_source(lower(ir), "f32", {}, "@cuda.jit")
