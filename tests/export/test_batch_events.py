"""dv365.export.batch_events: a batch's visible events, gathered, are exactly each user's
events in ``[R - longest window, R - gap)``, in user order, whatever users the batch holds."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from dv365.data.timeline import TimelineStore
from dv365.durations import DAY_MS
from dv365.export.batch_events import gather
from tests.kernels.conftest import T0_MS, small_store

BASE = small_store(n_users=12, seed=5, max_events=300)
STORE = TimelineStore(BASE.user_ids, BASE.offsets, dict(BASE.columns), BASE.meta)
COLUMNS = ("media_id", "action", "dwell_time")


def expected(users, at, gap, window):
    parts = {name: [] for name in ("ts", *COLUMNS)}
    lengths = []
    for u in users:
        lo, hi = STORE.offsets[u], STORE.offsets[u + 1]
        ts = STORE.ts[lo:hi]
        keep = (ts < at - gap) & ((ts >= at - window) if window is not None else True)
        idx = np.arange(lo, hi)[keep]
        lengths.append(len(idx))
        for name in parts:
            parts[name].append(STORE.columns[name][idx])
    return {k: np.concatenate(v) for k, v in parts.items()}, lengths


@settings(max_examples=60, deadline=None)
@given(users=st.one_of(
           st.lists(st.integers(0, STORE.num_users - 1), min_size=1, max_size=12),
           st.integers(0, STORE.num_users - 1).flatmap(
               lambda lo: st.integers(lo, STORE.num_users - 1).map(
                   lambda hi: list(range(lo, hi + 1))))),
       at_day=st.integers(0, 14), gap_days=st.sampled_from([0, 1]),
       window_days=st.sampled_from([None, 2, 5]))
def test_gathered_events_are_each_users_visible_events_in_batch_order(users, at_day, gap_days,
                                                                       window_days):
    at, gap = T0_MS + at_day * DAY_MS, gap_days * DAY_MS
    window = None if window_days is None else window_days * DAY_MS
    events = gather(STORE, np.array(users), at, gap, window, COLUMNS)
    want, lengths = expected(users, at, gap, window)
    assert np.diff(events.offsets).tolist() == lengths
    for name, values in want.items():
        np.testing.assert_array_equal(events.columns[name], values, err_msg=name)
    assert events.user_ids.tolist() == STORE.user_ids[users].tolist()
