"""dv365.export.batch_events: a batch's gathered events hold, for each user in batch order,
a contiguous range of its own events that contains every one in ``[R - longest window,
R - gap)`` (the kernels cut by time within a user, so extra events at the edges are
harmless), whatever users the batch holds."""

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
    assert len(events.offsets) == len(users) + 1
    visible = {name: [] for name in want}
    for b, u in enumerate(users):
        lo, hi = events.offsets[b], events.offsets[b + 1]
        ts = events.columns["ts"][lo:hi]
        own = STORE.ts[STORE.offsets[u]:STORE.offsets[u + 1]]
        # a contiguous range of the user's own events
        first = np.searchsorted(own, ts[0]) if len(ts) else 0
        assert np.array_equal(own[first:first + len(ts)], ts)
        keep = (ts < at - gap) & ((ts >= at - window) if window is not None else True)
        for name in visible:
            visible[name].append(events.columns[name][lo:hi][keep])
    for name, values in want.items():
        np.testing.assert_array_equal(np.concatenate(visible[name]), values, err_msg=name)
    assert sum(len(v) for v in visible["ts"]) == sum(lengths)
    assert events.user_ids.tolist() == STORE.user_ids[users].tolist()


def test_consecutive_users_copy_as_one_run_despite_their_invisible_tails():
    users = np.arange(STORE.num_users)
    at = int(STORE.ts.max()) - DAY_MS  # cuts the last days: every user has a tail
    events = gather(STORE, users, at, DAY_MS, None, COLUMNS)
    lo, hi = STORE.offsets[0], STORE.offsets[-1]
    shipped = events.columns["ts"]
    assert np.array_equal(shipped, STORE.ts[lo:hi][:len(shipped)])


@settings(max_examples=40, deadline=None)
@given(users=st.lists(st.integers(0, STORE.num_users - 1), min_size=1, max_size=12),
       at_day=st.integers(0, 14), history=st.integers(1, 40),
       window_days=st.sampled_from([None, 5]))
def test_a_history_limit_keeps_each_users_most_recent_visible_events(users, at_day, history,
                                                                     window_days):
    at, gap = T0_MS + at_day * DAY_MS, DAY_MS
    window = None if window_days is None else window_days * DAY_MS
    events = gather(STORE, np.array(users), at, gap, window, COLUMNS, history=history)
    full = gather(STORE, np.array(users), at, gap, window, COLUMNS)
    for b in range(len(users)):
        ts = events.columns["ts"][events.offsets[b]:events.offsets[b + 1]]
        all_ts = full.columns["ts"][full.offsets[b]:full.offsets[b + 1]]
        visible = all_ts[(all_ts < at - gap) & ((all_ts >= at - window)
                                                if window is not None else True)]
        assert np.array_equal(ts[ts < at - gap], visible[-history:])
