"""User-day groups (the dedup unit), the time split and group batches."""

import numpy as np

from dv365.durations import DAY_MS
from dv365.model.examples import Examples, group_batches, split_by_time, user_day_groups

T0 = 1_760_000_000_000 - 1_760_000_000_000 % DAY_MS  # a UTC midnight


def examples(users, times):
    users, times = np.asarray(users, np.int64), np.asarray(times, np.int64)
    group, gu, gt = user_day_groups(users, times)
    n = len(users)
    return Examples(users, times, {"media_id": np.arange(n)}, np.zeros((n, 0), np.float32),
                    np.zeros((n, 1), np.float32), group, gu, gt)


def test_examples_of_one_user_and_day_share_a_group_at_the_earliest_request():
    hour = 3_600_000
    ex = examples([5, 5, 5, 7, 5], [T0 + 9 * hour, T0 + 2 * hour, T0 + DAY_MS + hour,
                                    T0 + 3 * hour, T0 + 23 * hour])
    assert ex.num_groups == 3
    g = ex.group
    assert g[0] == g[1] == g[4] and len({g[0], g[2], g[3]}) == 3
    assert ex.group_ts[g[0]] == T0 + 2 * hour and ex.group_user[g[0]] == 5
    assert ex.group_ts[g[2]] == T0 + DAY_MS + hour


def test_split_holds_out_the_last_days():
    ex = examples([1, 1, 2, 2], [T0, T0 + DAY_MS, T0 + 2 * DAY_MS, T0 + 2 * DAY_MS + 5])
    train, held = split_by_time(ex, 1)
    assert len(train) == 2 and len(held) == 2
    assert held.request_ts.min() >= T0 + 2 * DAY_MS > train.request_ts.max()


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
