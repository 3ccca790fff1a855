"""Lowering an IR into a kernel plan: shared work, and enum values bound to the data's codes."""

from __future__ import annotations

import pytest

from dv365.errors import DataError
from dv365.kernels.plan import build_plan


def test_enum_value_missing_from_the_data_vocabulary(small_case):
    ir, store, *_ = small_case
    meta = store.meta.model_copy(update={"vocab": {**store.meta.vocab,
                                                   "action": ["comment", "save"]}})
    with pytest.raises(DataError, match="'like' is not in the data's vocabulary"):
        build_plan(ir, meta)


def test_plan_shares_work_across_windows_and_slices(small_case):
    ir = small_case[0]
    plan = build_plan(ir)
    # 5 kinds x 3 tables x 3 windows = 45 slices; windows share slots: 15 slots, 3 bands.
    assert len(plan.slices) == 45
    assert len(plan.slots) == 15
    assert plan.windows[0] is None and len(plan.windows) == 3
    # the debiased score (used as predicate and weight) is computed once
    assert sum(e.kind == "unary" and e.op == "ln" for e in plan.exprs) == 2
