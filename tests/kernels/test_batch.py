"""A request batch: store user indices and request times, checked row by row."""

from __future__ import annotations

import numpy as np
import pytest

from dv365.errors import DataError
from dv365.kernels.batch import RequestBatch
from tests.strategies import T0_MS


def test_one_time_for_all_rows_is_broadcast(small_case):
    _, store, *_ = small_case
    batch = RequestBatch.checked(store, [0, 2, 2], T0_MS)
    assert batch.users.dtype == np.int64 and batch.request_ts.tolist() == [T0_MS] * 3
    assert len(batch) == 3


def test_positions_lay_the_rows_histories_end_to_end(small_case):
    _, store, *_ = small_case
    batch = RequestBatch.checked(store, [1, 0, 1], T0_MS)
    lens = batch.history_lengths(store)
    assert lens.tolist() == [int(store.offsets[u + 1] - store.offsets[u]) for u in (1, 0, 1)]
    assert batch.event_positions(store).tolist() == [0, lens[0], lens[0] + lens[1]]


@pytest.mark.parametrize("users,times,match,where", [
    ([0, 99], T0_MS, "user index 99 is outside", "user_indices[1]"),
    ([0.5], T0_MS, "must be integers", "user_indices"),
    ([0, 1], [T0_MS, T0_MS // 1000], "outside 1990-01-01..2100-01-01 UTC", "request_ts[1]"),
    ([0], [float(T0_MS)], "integer milliseconds", "request_ts"),
])
def test_bad_rows_are_named(small_case, users, times, match, where):
    _, store, *_ = small_case
    with pytest.raises(DataError, match=match) as err:
        RequestBatch.checked(store, users, times)
    assert err.value.where == where
