"""Bad inputs are refused before any kernel runs, with one clear DataError each."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dv365.errors import DataError
from dv365.kernels.fused import pool_fused
from dv365.kernels.jagged import slice_jagged


@dataclasses.dataclass
class RawStore:
    """An event store that, unlike TimelineStore, accepts anything (to test the checks)."""

    user_ids: np.ndarray
    offsets: np.ndarray
    columns: dict
    meta: object


def _copy(store, **columns) -> RawStore:
    cols = {**store.columns, **columns}
    return RawStore(store.user_ids, store.offsets.copy(), cols, store.meta)


def _raises(match, ir, store, users, times, tables):
    for call in (lambda: pool_fused(ir, store, users, times, tables, "cpu"),
                 lambda: slice_jagged(ir, store, users, times, "cpu")):
        with pytest.raises(DataError, match=match):
            call()


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
    _raises("outside 1990-01-01..2100-01-01 UTC", ir, store, users, times // 1000, tables)


def test_tables_of_the_wrong_shape_or_dtype(small_case):
    ir, store, users, times, tables = small_case
    with pytest.raises(DataError, match="has shape"):
        pool_fused(ir, store, users, times, {**tables, "media": tables["media"][:5]}, "cpu")
    with pytest.raises(DataError, match="fp32, fp16 or bf16"):
        pool_fused(ir, store, users, times,
                   {k: v.astype(np.float64) for k, v in tables.items()}, "cpu")
    with pytest.raises(DataError, match="no embedding table 'author'"):
        pool_fused(ir, store, users, times, {"media": tables["media"]}, "cpu")
