"""Bad inputs are refused before any kernel runs, with one clear DataError each."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dv365.errors import DataError
from dv365.kernels.backend import Backend, resolve
from dv365.kernels.fused import pool_fused
from dv365.kernels.jagged import JaggedSlices, slice_jagged, validate
from dv365.kernels.plan import lower


@dataclasses.dataclass
class RawStore:
    """A store-like object that, unlike TimelineStore, accepts anything (to test the checks)."""

    user_ids: np.ndarray
    offsets: np.ndarray
    columns: dict
    meta: object


@pytest.fixture(autouse=True)
def _serial_kernels(monkeypatch):
    monkeypatch.setenv("DV365_KERNEL_SERIAL", "1")


def _copy(store, **columns) -> RawStore:
    cols = {**store.columns, **columns}
    return RawStore(store.user_ids, store.offsets.copy(), cols, store.meta)


def _raises(match, ir, store, users, times, tables):
    for call in (lambda: pool_fused(ir, store, users, times, tables, "cpu"),
                 lambda: slice_jagged(ir, store, users, times, "cpu")):
        with pytest.raises(DataError, match=match):
            call()


def test_unknown_backend_is_named():
    with pytest.raises(DataError, match="unknown kernel backend 'tpu'"):
        resolve("tpu")
    assert resolve("cpu") is Backend.cpu


def test_offsets_that_decrease(small_case):
    ir, store, users, times, tables = small_case
    bad = _copy(store)
    bad.offsets[2], bad.offsets[3] = bad.offsets[3], bad.offsets[2]
    _raises("offsets decrease", ir, bad, users, times, tables)


def test_offsets_that_overrun_the_columns(small_case):
    ir, store, users, times, tables = small_case
    bad = _copy(store)
    bad.offsets[-1] += 5
    _raises("offsets say", ir, bad, users, times, tables)


def test_wrong_dtype_column(small_case):
    ir, store, users, times, tables = small_case
    bad = _copy(store, action=store.columns["action"].astype(np.int64))
    _raises("'action' is int64", ir, bad, users, times, tables)


def test_events_out_of_time_order(small_case):
    ir, store, users, times, tables = small_case
    ts = store.columns["ts"].copy()
    lo = store.offsets[1]
    ts[lo], ts[lo + 1] = ts[lo + 1] + 1, ts[lo]
    _raises("not sorted by time", ir, _copy(store, ts=ts), users, times, tables)


def test_identity_ids_outside_the_table(small_case):
    ir, store, users, times, tables = small_case
    topic = store.columns["topic_id"].copy()
    topic[7] = 48  # the identity table has rows 0..47
    _raises("topic_id 48 is outside table 'topic'", ir, _copy(store, topic_id=topic), users,
            times, tables)


def test_user_index_outside_the_store(small_case):
    ir, store, users, times, tables = small_case
    _raises("user index 99 is outside", ir, store, np.array([0, 99]), times[:2], tables)


def test_request_time_in_seconds_not_milliseconds(small_case):
    ir, store, users, times, tables = small_case
    _raises("outside 2000..2100", ir, store, users, times // 1000, tables)


def test_tables_of_the_wrong_shape_or_dtype(small_case):
    ir, store, users, times, tables = small_case
    with pytest.raises(DataError, match="has shape"):
        pool_fused(ir, store, users, times, {**tables, "media": tables["media"][:5]}, "cpu")
    with pytest.raises(DataError, match="fp32, fp16 or bf16"):
        pool_fused(ir, store, users, times,
                   {k: v.astype(np.float64) for k, v in tables.items()}, "cpu")
    with pytest.raises(DataError, match="no embedding table 'author'"):
        pool_fused(ir, store, users, times, {"media": tables["media"]}, "cpu")


def test_enum_value_missing_from_the_data_vocabulary(small_case):
    ir, store, *_ = small_case
    meta = store.meta.model_copy(update={"vocab": {**store.meta.vocab,
                                                   "action": ["comment", "save"]}})
    with pytest.raises(DataError, match="'like' is not in the data's vocabulary"):
        lower(ir, meta)


def test_jagged_validation_catches_a_broken_layout(small_case):
    ir, store, users, times, tables = small_case
    jag = slice_jagged(ir, store, users, times, "cpu")
    limits = [ir.table(s.table).num_rows for s in ir.slices]
    short = dataclasses.replace(jag, values=jag.values[:-1], weights=jag.weights[:-1])
    with pytest.raises(DataError, match="lengths sum to"):
        validate(short, limits)
    big = jag.values.clone()
    big[0] = 10**9
    with pytest.raises(DataError, match="out of its table"):
        validate(dataclasses.replace(jag, values=big), limits)
    assert isinstance(validate(jag, limits), JaggedSlices)


def test_jagged_validation_checks_each_row_against_its_own_slice_table(small_case):
    # A row inside the largest table but outside its own slice's table, a negative row and a
    # non-finite weight are each caught, and named by position.
    ir, store, users, times, tables = small_case
    jag = slice_jagged(ir, store, users, times, "cpu")
    limits = [ir.table(s.table).num_rows for s in ir.slices]
    B = jag.counts.shape[0]
    starts = torch.cumsum(jag.lengths, 0) - jag.lengths
    per_key = jag.lengths.view(len(limits), B).sum(1)
    small = next(k for k in range(len(limits))
                 if per_key[k] > 0 and limits[k] < max(limits))
    first_bag = small * B + int(torch.nonzero(jag.lengths[small * B:(small + 1) * B])[0])
    at = int(starts[first_bag])
    wrong = jag.values.clone()
    wrong[at] = limits[small]
    with pytest.raises(DataError, match=f"row {limits[small]} out of its table") as err:
        validate(dataclasses.replace(jag, values=wrong), limits)
    assert err.value.where == f"values[{at}]"
    negative = jag.values.clone()
    negative[-1] = -1
    with pytest.raises(DataError, match="row -1 out of its table"):
        validate(dataclasses.replace(jag, values=negative), limits)
    nan = jag.weights.clone()
    nan[0] = float("nan")
    with pytest.raises(DataError, match="not finite"):
        validate(dataclasses.replace(jag, weights=nan), limits)
    counts = jag.counts.clone()
    counts[0, 0] += 1
    with pytest.raises(DataError, match="disagree with counts"):
        validate(dataclasses.replace(jag, counts=counts), limits)


def test_plan_shares_work_across_windows_and_slices(small_case):
    ir = small_case[0]
    plan = lower(ir)
    # 5 kinds x 3 tables x 3 windows = 45 slices; windows share slots: 15 slots, 3 bands.
    assert len(plan.slices) == 45
    assert len(plan.slots) == 15
    assert plan.windows[0] is None and len(plan.windows) == 3
    # the debiased score (used as predicate and weight) is computed once
    assert sum(e.kind == "unary" and e.op == "ln" for e in plan.exprs) == 2
