"""History groups (the dedup unit), the time split, empty histories and group batches."""

from datetime import datetime, timezone

import numpy as np
import pytest

from dv365.data.timeline import TimelineStore
from dv365.durations import DAY_MS, HOUR_MS
from dv365.errors import ConfigError
from dv365.kernels.jagged import slice_jagged
from dv365.model.config import ItemTables
from dv365.model.examples import (
    Examples,
    before,
    group_batches,
    held_out_start,
    history_groups,
    load_examples,
    split_by_time,
)
from tests.model.conftest import tiny_spec

T0 = 1_760_000_000_000 - 1_760_000_000_000 % DAY_MS  # a UTC midnight


def examples(users, times, grouping="user_day"):
    users, times = np.asarray(users, np.int64), np.asarray(times, np.int64)
    group, gu, gt = history_groups(users, times, grouping)
    n = len(users)
    return Examples(users, times, {"media_id": np.arange(n)}, np.zeros((n, 0), np.float32),
                    np.zeros((n, 1), np.float32), group, gu, gt, grouping)


def test_examples_of_one_user_and_day_share_a_group_at_the_earliest_request():
    hour = 3_600_000
    ex = examples([5, 5, 5, 7, 5], [T0 + 9 * hour, T0 + 2 * hour, T0 + DAY_MS + hour,
                                    T0 + 3 * hour, T0 + 23 * hour])
    assert ex.num_groups == 3
    g = ex.group
    assert g[0] == g[1] == g[4] and len({g[0], g[2], g[3]}) == 3
    assert ex.group_ts[g[0]] == T0 + 2 * hour and ex.group_user[g[0]] == 5
    assert ex.group_ts[g[2]] == T0 + DAY_MS + hour


def test_request_grouping_shares_only_identical_user_and_request_time():
    hour = HOUR_MS
    users = [5, 5, 5, 7, 5]
    times = [T0 + 9 * hour, T0 + 2 * hour, T0 + 9 * hour, T0 + 9 * hour, T0 + 23 * hour]
    ex = examples(users, times, "request")
    g = ex.group
    assert ex.num_groups == 4 and g[0] == g[2] and len({g[0], g[1], g[3], g[4]}) == 4
    np.testing.assert_array_equal(ex.history_ts, ex.request_ts)  # exact cutoffs
    np.testing.assert_array_equal(ex.group_user[g], ex.user_index)
    # a subset keeps its grouping
    assert ex.subset(np.array([1, 4])).grouping == "request"
    assert ex.subset(np.array([1, 4])).num_groups == 2


@pytest.mark.parametrize("grouping", ["user_day", "request"])
def test_every_example_sees_the_history_a_brute_force_filter_of_the_store_gives(
        tiny_data, tmp_path, grouping):
    store = TimelineStore.open(tiny_data / "events", cache_dir=tmp_path / "cache")
    ex, _, _ = load_examples(tiny_data / "examples", store, ["skip"],
                             ItemTables().model_dump(), grouping)
    ir = tiny_spec()
    jag = slice_jagged(ir, store, ex.group_user, ex.group_ts, backend="reference")
    # the 7-day windows and the long watches, all on the implicit timeline
    implicit = [(k, s) for k, s in enumerate(ir.slices) if s.timeline == "implicit"]
    assert len(implicit) == 6
    users, times = ex.user_index, ex.request_ts
    for i in range(0, len(ex), 7):
        u, t = users[i], times[i]
        if grouping == "request":  # its own request time
            cutoff_at = t
        else:  # the earliest request of its user on its UTC day
            cutoff_at = times[(users == u) & (times // DAY_MS == t // DAY_MS)].min()
        events = store.user_events(int(u))
        seen = events["ts"] < cutoff_at - ir.gap_ms
        for k, s in implicit:
            selected = seen & (events["timeline"] == 1)
            if s.window_ms is not None:
                selected &= events["ts"] >= cutoff_at - s.window_ms
            else:
                selected &= events["dwell_time"] > 10.0
            hand = selected.sum()
            assert int(jag.counts[ex.group[i], k]) == hand, (i, s.name)
    if grouping == "request":
        assert ex.num_groups == len({(int(u), int(t)) for u, t in zip(users, times)})
    else:
        assert ex.num_groups < len(ex)


def test_calendar_days_count_the_days_without_examples():
    # examples on days 0, 1 and 5: the last 2 calendar days are days 4 and 5
    ex = examples([1, 1, 2, 2], [T0, T0 + DAY_MS, T0 + 5 * DAY_MS, T0 + 5 * DAY_MS + 5])
    assert held_out_start(ex.request_ts, validation_days=2) == T0 + 4 * DAY_MS
    train, held = split_by_time(ex, validation_days=2)
    assert len(train) == 2 and len(held) == 2
    assert held.request_ts.min() >= T0 + 4 * DAY_MS > train.request_ts.max()
    # day 1 is held out with 5 calendar days (days 1-5), not with the 2 days that hold
    # examples before the last
    assert len(split_by_time(ex, validation_days=5)[1]) == 3


def test_a_fraction_of_the_time_span_and_a_date_cut():
    times = T0 + np.arange(11) * DAY_MS  # day 0 .. day 10
    ex = examples(np.arange(11), times)
    assert held_out_start(times, validation_fraction=0.2) == T0 + 8 * DAY_MS
    assert len(split_by_time(ex, validation_fraction=0.2)[1]) == 3
    cut = datetime.fromtimestamp((T0 + 6 * DAY_MS) / 1000, timezone.utc)
    assert held_out_start(times, validation_from=cut) == T0 + 6 * DAY_MS
    train, held = split_by_time(ex, validation_from=cut)
    assert (len(train), len(held)) == (6, 5)


def test_a_split_that_leaves_a_side_empty_is_a_config_error_at_the_key():
    ex = examples([1, 2], [T0, T0 + DAY_MS])
    with pytest.raises(ConfigError) as info:
        split_by_time(ex, where="t.yaml: data.validation_days", validation_days=2)
    assert info.value.where == "t.yaml: data.validation_days"
    assert "the examples span 2 calendar day(s)" in info.value.message
    assert "leaves nothing to train on" in info.value.message
    late = datetime.fromtimestamp((T0 + 3 * DAY_MS) / 1000, timezone.utc)
    with pytest.raises(ConfigError, match="nothing is at or after"):
        split_by_time(ex, validation_from=late)


def test_batches_hold_whole_groups_and_every_example_once():
    rng = np.random.default_rng(0)
    ex = examples(rng.integers(0, 30, 500), T0 + rng.integers(0, 5 * DAY_MS, 500))
    batches = group_batches(ex, 32, np.random.default_rng(1))
    assert sorted(np.concatenate(batches).tolist()) == list(range(500))
    seen = set()
    for b in batches:
        groups = set(ex.group[b].tolist())
        assert not groups & seen
        seen |= groups
    again = group_batches(ex, 32, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))


def test_until_keeps_only_the_examples_requested_before_it():
    ex = examples([1, 2, 3, 1], [T0, T0 + DAY_MS, T0 + 2 * DAY_MS - 1, T0 + 2 * DAY_MS])
    cut = datetime.fromtimestamp((T0 + 2 * DAY_MS) / 1000, timezone.utc)
    kept = before(ex, cut)
    assert list(kept.request_ts) == [T0, T0 + DAY_MS, T0 + 2 * DAY_MS - 1]
    assert list(kept.user_index) == [1, 2, 3]


def test_until_before_every_example_is_a_config_error_at_the_key():
    ex = examples([1], [T0 + DAY_MS])
    with pytest.raises(ConfigError) as err:
        before(ex, datetime.fromtimestamp(T0 / 1000, timezone.utc), where="c.yaml: data.until")
    assert err.value.where == "c.yaml: data.until" and "no example is before" in str(err.value)


def test_subsets_carry_the_target_items_raw_ids():
    ex = examples([1, 2, 3], [T0, T0 + 1, T0 + 2])
    ex = Examples(ex.user_index, ex.request_ts, ex.sparse, ex.dense, ex.labels, ex.group,
                  ex.group_user, ex.group_ts, ex.grouping, np.array([70, 80, 90]))
    assert list(ex.subset(np.array([2, 0])).media_id) == [90, 70]
