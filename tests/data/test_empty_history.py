"""Which examples see no history at a gap: per request, and per user-day group as training
groups them; both agree with filtering every user's events by brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dv365.data.empty_history import (empty_history, empty_share, history_is_empty,
                                      user_day_cutoffs)
from dv365.data.schema import EVENT_COLUMN_DTYPES
from dv365.durations import DAY_MS, HOUR_MS
from tests.strategies import T0_MS, store_of, timeline_stores


def test_a_group_sees_the_history_before_its_earliest_request():
    # user 0: two requests on one UTC day share the earlier one's cutoff, the next day's not
    day = (T0_MS // DAY_MS + 1) * DAY_MS
    users = np.array([0, 0, 0, 1])
    ts = np.array([day + 2 * HOUR_MS, day + 20 * HOUR_MS, day + DAY_MS + HOUR_MS, day])
    assert user_day_cutoffs(users, ts, HOUR_MS).tolist() == [
        day + HOUR_MS, day + HOUR_MS, day + DAY_MS, day - HOUR_MS]
    assert user_day_cutoffs(users[:0], ts[:0], HOUR_MS).tolist() == []


@settings(max_examples=60, deadline=None)
@given(store=timeline_stores(max_users=4, n_max=20), data=st.data())
def test_counts_match_a_brute_force_filter(store, data):
    n = data.draw(st.integers(0, 25))
    users = np.array(data.draw(st.lists(st.integers(0, store.num_users - 1), min_size=n,
                                        max_size=n)), np.int64)
    ts = np.array(data.draw(st.lists(st.integers(T0_MS, T0_MS + 12 * DAY_MS), min_size=n,
                                     max_size=n)), np.int64)
    gap = data.draw(st.sampled_from([0, HOUR_MS, DAY_MS, 3 * DAY_MS]))
    subset = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool)

    def events_before(u: int, cutoff: int) -> int:
        return int((store.user_events(u)["ts"] < cutoff).sum())

    own = [events_before(u, t - gap) == 0 for u, t in zip(users, ts)]
    grouped = []
    for u, t in zip(users, ts):
        same = (users == u) & (ts // DAY_MS == t // DAY_MS)
        grouped.append(events_before(u, int(ts[same].min()) - gap) == 0)
    assert history_is_empty(store, users, ts - gap).tolist() == own

    counted = empty_history(store, users, ts, gap, subset=subset)
    assert counted.examples == int(subset.sum())
    assert counted.per_request == int(np.array(own, bool)[subset].sum())
    assert counted.per_user_day == int(np.array(grouped, bool)[subset].sum())
    assert counted.per_user_day >= counted.per_request
    whole = empty_history(store, users, ts, gap)
    assert (whole.examples, whole.per_user_day) == (n, sum(grouped))


def test_shares_of_no_examples_are_zero():
    counted = empty_history(store_of([]), np.zeros(0, np.int64), np.zeros(0, np.int64), DAY_MS)
    assert (counted.examples, counted.per_request_share, counted.per_user_day_share) == (0, 0, 0)


def test_empty_share_is_the_share_without_an_event_before_the_cutoff():
    # user 0 has no events; user 1 events at hours 1, 5, 9; user 2 at hour 30
    ts = np.array([1, 5, 9, 30], np.int64) * HOUR_MS
    store = store_of([_events(ts[:0]), _events(ts[:3]), _events(ts[3:])])
    users = np.array([0, 1, 1, 1, 2, 2])
    request = np.array([50, 25, 26, 40, 54, 55], np.int64) * HOUR_MS
    gap = 24 * HOUR_MS
    # brute force: any event strictly before request - gap
    hand = [not any(t < r - gap for t in ts[store.offsets[u]:store.offsets[u + 1]])
            for u, r in zip(users, request)]
    assert hand == [True, True, False, False, True, False]  # at 25h the cutoff is 1h: exclusive
    assert empty_share(store, users, request, gap) == pytest.approx(np.mean(hand))
    assert empty_share(store, users, 100 * HOUR_MS, 0) == pytest.approx(1 / 6)
    assert np.isnan(empty_share(store, users[:0], request[:0], gap))



def _events(ts: np.ndarray) -> dict[str, np.ndarray]:
    """A user's events at times ``ts`` (ms), every other column zero."""
    return {c: (ts if c == "ts" else np.zeros(len(ts), dtype))
            for c, dtype in EVENT_COLUMN_DTYPES.items()}
