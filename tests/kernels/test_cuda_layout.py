"""How a plan is laid out on the GPU: block dims, segments and entry groups, and its limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from dv365.errors import DataError
from dv365.kernels.cuda_layout import cuda_layout, dims_per_block
from dv365.kernels.cuda_tuning import DEFAULT_TUNING, MAX_SEGMENT_SLOTS, CudaTuning
from dv365.kernels.plan import build_plan
from tests.kernels.cases import reels_ir
from tests.strategies import spec_irs


def test_dims_per_block_divide_the_dim_in_whole_warps_where_they_can():
    for dim in (2, 16, 64, 96, 100, 128, 256, 384, 512):
        db = dims_per_block(dim, 256)
        assert dim % db == 0 and db <= 256
    assert dims_per_block(256, 256) == 256  # one block walks each entry
    assert dims_per_block(384, 256) == 192  # whole warps before the largest divisor
    assert dims_per_block(100, 64) == 50  # no multiple of 32 divides 100


@pytest.mark.parametrize("cap,dim,per_thread,lanes", [
    (256, 64, 2, 32), (256, 256, 8, 32), (128, 256, 4, 32), (256, 96, 3, 32),
    (256, 4, 1, 4),  # fewer dims than a warp: a thread per dim
])
def test_a_warp_splits_a_blocks_dims(cap, dim, per_thread, lanes):
    from tests.kernels.conftest import small_ir

    layout = cuda_layout(build_plan(small_ir(dim)), CudaTuning(max_dims_per_block=cap))
    assert (layout.dims_per_thread, layout.lanes) == (per_thread, lanes)
    assert layout.dim_blocks * layout.dims_per_block == dim


def test_entry_groups_grow_with_the_block_dims():
    # a block's sums stay near group_sum_bytes: reels at D=64 in 4 groups (4.9 kB of sums per
    # block), at D=256 in 8 (9.3 kB)
    assert cuda_layout(build_plan(reels_ir(64)), DEFAULT_TUNING).entry_groups == 4
    assert cuda_layout(build_plan(reels_ir(256)), DEFAULT_TUNING).entry_groups == 8


@settings(max_examples=30, deadline=None)
@given(ir=spec_irs(max_slices=12, dim=4))
def test_segments_cover_every_slot_once_with_one_table_and_weight(ir):
    plan = build_plan(ir)
    layout = cuda_layout(plan, DEFAULT_TUNING)
    slots = [s for seg in layout.segments for s in seg.slots]
    assert sorted(slots) == [s.index for s in plan.slots]
    for seg in layout.segments:
        assert 0 < len(seg.slots) <= MAX_SEGMENT_SLOTS
        assert {(plan.slots[s].table, plan.slots[s].weight) for s in seg.slots} == {
            (seg.table, seg.weight)}
    assert [i for g in layout.groups for i in g] == list(range(len(layout.segments)))
    assert layout.entry_groups <= DEFAULT_TUNING.min_entry_groups
    assert all(len(g) for g in layout.groups)
    # each group's accumulators hold its segments' slots, in order
    for grp, slots in zip(layout.groups, layout.group_slots):
        assert slots == tuple(s for i in grp for s in layout.segments[i].slots)


def test_entry_groups_split_reels_slots_about_evenly():
    layout = cuda_layout(build_plan(reels_ir(64)), DEFAULT_TUNING)
    sizes = [len(s) for s in layout.group_slots]
    assert len(sizes) == DEFAULT_TUNING.min_entry_groups
    assert sum(sizes) == len(layout.plan.slots)
    assert max(sizes) - min(sizes) <= max(len(s.slots) for s in layout.segments)


def test_tables_past_32_bit_rows_are_a_clear_error():
    # entries hold 32-bit packed rows: the layout says what to change in the spec
    from tests.kernels.conftest import small_ir

    ir = small_ir(dim=4)
    ir = ir.model_copy(update={"tables": tuple(t.model_copy(update={"num_rows": 1 << 31})
                                               for t in ir.tables)})
    with pytest.raises(DataError, match="rows in all.*2\\^32") as err:
        cuda_layout(build_plan(ir), DEFAULT_TUNING)
    assert err.value.where == "spec" and "fewer or smaller tables" in err.value.hint


def test_32_bit_offsets_only_where_every_element_offset_fits():
    from tests.kernels.conftest import small_ir

    plan = build_plan(small_ir(dim=4))
    assert cuda_layout(plan, DEFAULT_TUNING).offset32
    assert not cuda_layout(plan, CudaTuning(offset32=False)).offset32
    assert cuda_layout(build_plan(reels_ir(256)), DEFAULT_TUNING).offset32  # 13.2 M rows
    assert not cuda_layout(build_plan(reels_ir(512)), DEFAULT_TUNING).offset32  # 6.8 G elements
