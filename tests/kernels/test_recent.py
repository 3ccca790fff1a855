"""The last K events before the request: the compiled gather equals the plain-Python
definition on any store and batch, and reads as the spec below (strictly before, the last K,
oldest first, ties in store order, -1 for no timeline)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dv365.data.schema import EVENT_COLUMN_DTYPES
from dv365.data.synth import SynthConfig, synthesize
from dv365.data.timeline import TimelineStore
from dv365.data.validate import DatasetReader
from dv365.errors import DataError
from dv365.kernels.recent import (DEFAULT_COLUMNS, RecentEvents, recent_events,
                                  recent_events_reference)
from tests.strategies import DAY_MS, T0_MS, store_of, user_timelines

PROPERTY = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
INT64 = np.iinfo(np.int64)


def assert_same(got: RecentEvents, want: RecentEvents) -> None:
    assert got.offsets.dtype == np.int64 and got.offsets.tolist() == want.offsets.tolist()
    assert list(got.columns) == list(want.columns)
    for name, values in want.columns.items():
        assert got.columns[name].dtype == values.dtype, name
        assert np.array_equal(got.columns[name], values,
                              equal_nan=values.dtype.kind == "f"), name


def one_user(ts, media_id=None):
    """A store of one user with events at ``T0_MS + ts`` (media ids 0, 1, ... unless given)."""
    n = len(ts)
    cols = {c: np.zeros(n, dtype) for c, dtype in EVENT_COLUMN_DTYPES.items()}
    cols["ts"] = T0_MS + np.asarray(ts, dtype=np.int64)
    cols["media_id"] = np.arange(n, dtype=np.int64) if media_id is None else np.asarray(
        media_id, dtype=np.int64)
    return store_of([cols])


def recent_media(store, users, before, k) -> list[list[int]]:
    got = recent_events(store, np.asarray(users), before, k, columns=("media_id",))
    o = got.offsets
    return [got.columns["media_id"][o[b]:o[b + 1]].tolist() for b in range(len(o) - 1)]


# ----------------------------------------------------------------------------- property
@st.composite
def cases(draw):
    """A small store (0..4 users, some with no events, ties in time) and a batch of queries
    over it: any users (-1 and repeats included), cutoffs on events, one off, before the
    first and after the last, any k, any column subset."""
    users = draw(st.lists(user_timelines(n_max=25), min_size=0, max_size=4))
    store = store_of(users)
    ts = sorted(set(store.columns["ts"].tolist())) or [T0_MS]
    cutoff = st.one_of(
        st.builds(lambda t, dt: t + dt, st.sampled_from(ts), st.sampled_from([-1, 0, 1])),
        st.sampled_from([ts[0] - 1, ts[-1] + 1, INT64.min, INT64.max]),
        st.integers(T0_MS - DAY_MS, T0_MS + 11 * DAY_MS))
    index = st.integers(-1, len(users) - 1)
    batch = draw(st.lists(st.tuples(index, cutoff), max_size=12))
    queries = np.array([u for u, _ in batch], dtype=np.int64)
    if batch and draw(st.booleans()):
        cutoffs = np.array([c for _, c in batch], dtype=np.int64)
    else:
        cutoffs = np.int64(draw(cutoff))
    k = draw(st.one_of(st.integers(1, 3), st.integers(1, 40)))
    columns = draw(st.one_of(
        st.just(DEFAULT_COLUMNS),
        st.lists(st.sampled_from(list(EVENT_COLUMN_DTYPES)), unique=True, max_size=10)))
    return store, queries, cutoffs, k, columns


@PROPERTY
@given(case=cases())
def test_the_gather_equals_the_definition(case):
    store, users, cutoffs, k, columns = case
    assert_same(recent_events(store, users, cutoffs, k, columns),
                recent_events_reference(store, users, cutoffs, k, columns))


# ----------------------------------------------------------------------------- the spec
def test_the_last_3_of_5_events_before_t_oldest_first():
    store = one_user([10, 20, 30, 40, 50, 60, 70])
    assert recent_media(store, [0], T0_MS + 60, 3) == [[2, 3, 4]]


def test_an_event_at_the_cutoff_is_not_before_it():
    store = one_user([10, 20, 30])
    assert recent_media(store, [0], T0_MS + 30, 5) == [[0, 1]]
    assert recent_media(store, [0], T0_MS + 31, 5) == [[0, 1, 2]]


def test_ties_in_time_keep_the_store_order():
    store = one_user([10, 20, 20, 20], media_id=[7, 8, 9, 6])
    assert recent_media(store, [0], T0_MS + 21, 2) == [[9, 6]]
    assert recent_media(store, [0], T0_MS + 21, 10) == [[7, 8, 9, 6]]


def test_fewer_events_than_k_gives_all_of_them():
    store = one_user([10, 20])
    got = recent_events(store, np.array([0]), T0_MS + 100, 500)
    assert got.lengths.tolist() == [2]
    assert got.columns["ts"].tolist() == [T0_MS + 10, T0_MS + 20]


def test_no_timeline_a_cutoff_before_the_first_event_and_an_empty_user_give_nothing():
    full = {c: np.zeros(2, dtype) for c, dtype in EVENT_COLUMN_DTYPES.items()}
    full["ts"] = np.array([T0_MS + 10, T0_MS + 20], dtype=np.int64)
    empty = {c: np.zeros(0, dtype) for c, dtype in EVENT_COLUMN_DTYPES.items()}
    store = store_of([full, empty])
    got = recent_events(store, np.array([-1, 0, 1, 0]),
                        np.array([T0_MS + 99, T0_MS + 10, T0_MS + 99, T0_MS + 11]), 4)
    assert got.lengths.tolist() == [0, 0, 0, 1]
    assert got.offsets.tolist() == [0, 0, 0, 0, 1]


def test_queries_come_back_in_their_order_with_repeated_users():
    a = {c: np.zeros(3, dtype) for c, dtype in EVENT_COLUMN_DTYPES.items()}
    a["ts"] = T0_MS + np.array([1, 2, 3], dtype=np.int64)
    a["media_id"] = np.array([10, 11, 12], dtype=np.int64)
    b = {c: np.zeros(2, dtype) for c, dtype in EVENT_COLUMN_DTYPES.items()}
    b["ts"] = T0_MS + np.array([1, 2], dtype=np.int64)
    b["media_id"] = np.array([20, 21], dtype=np.int64)
    store = store_of([a, b])
    got = recent_media(store, [1, 0, 1, 0], np.array([T0_MS + 9, T0_MS + 3, T0_MS + 2,
                                                      T0_MS + 9]), 2)
    assert got == [[20, 21], [10, 11], [20], [11, 12]]


def test_one_cutoff_applies_to_every_query():
    store = one_user([10, 20, 30])
    assert recent_media(store, [0, 0], T0_MS + 25, 9) == [[0, 1], [0, 1]]


def test_columns_keep_the_store_dtypes_and_the_order_asked_for():
    store = one_user([10, 20])
    got = recent_events(store, np.array([0]), T0_MS + 99, 2,
                        columns=("dwell_time", "action", "ts"))
    assert list(got.columns) == ["dwell_time", "action", "ts"]
    assert [got.columns[c].dtype for c in got.columns] == [
        EVENT_COLUMN_DTYPES["dwell_time"], EVENT_COLUMN_DTYPES["action"], np.int64]


def test_an_empty_batch_gives_empty_outputs():
    got = recent_events(one_user([10]), np.zeros(0, dtype=np.int64),
                        np.zeros(0, dtype=np.int64), 5)
    assert got.offsets.tolist() == [0] and got.lengths.tolist() == []
    assert all(len(v) == 0 for v in got.columns.values())


# ----------------------------------------------------------------------------- bad input
def test_an_unknown_column_is_named_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown column 'watch_time'.*ts, timeline, media_id"):
        recent_events(one_user([10]), np.array([0]), T0_MS, 5, columns=("ts", "watch_time"))


@pytest.mark.parametrize("k", [0, -3, 2.0, True])
def test_k_must_be_a_positive_integer(k):
    with pytest.raises(ValueError, match="k must be"):
        recent_events(one_user([10]), np.array([0]), T0_MS, k)


@pytest.mark.parametrize("users, cutoffs, message", [
    (np.array([0, 0]), np.array([1, 2, 3]), "one cutoff or one per query"),
    (np.array([[0]]), np.array([1]), "1-D"),
    (np.array([0.0]), np.array([1]), "user_index must be integers"),
    (np.array([0]), np.array([1.5]), "integer milliseconds"),
    (np.array([1]), np.array([1]), r"user_index\[0\] is 1, outside the store"),
    (np.array([0, -2]), np.array([1, 1]), r"user_index\[1\] is -2"),
])
def test_bad_queries_are_refused(users, cutoffs, message):
    with pytest.raises(ValueError, match=message):
        recent_events(one_user([10]), users, cutoffs, 5)


def test_a_string_is_not_a_list_of_columns():
    with pytest.raises(ValueError, match="sequence of column names"):
        recent_events(one_user([10]), np.array([0]), T0_MS, 5, columns="ts")


def test_a_store_with_unsorted_times_is_refused():
    store = one_user([20, 10])
    with pytest.raises(DataError, match="not sorted by time"):
        recent_events(store, np.array([0]), T0_MS + 99, 5)


# ----------------------------------------------------------------------------- a real store
@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A generated data set (30 users, ~200 events each) as a memory-mapped TimelineStore,
    and its examples' store indices and request times."""
    root = tmp_path_factory.mktemp("recent")
    synthesize(root / "data", SynthConfig(users=30, seed=7, mean_events=200, max_events=600,
                                          days=3, examples_per_user=8))
    store = TimelineStore.open(root / "data", cache_dir=root / "cache")
    cols = {}
    for batch in DatasetReader(root / "data" / "examples", "examples").batches():
        for name in ("user_id", "request_ts"):
            cols.setdefault(name, []).append(batch.columns[name])
    users = store.user_indices(np.concatenate(cols["user_id"]), missing=-1)
    return store, users, np.concatenate(cols["request_ts"])


@pytest.mark.parametrize("k", [1, 64, 2000])
def test_a_generated_timeline_store_equals_the_definition(generated, k):
    store, users, request_ts = generated
    assert isinstance(store.ts, np.memmap) and len(users) > 100 and (users >= 0).all()
    got = recent_events(store, users, request_ts, k)
    assert_same(got, recent_events_reference(store, users, request_ts, k, DEFAULT_COLUMNS))
    before = store.ends_before(users, request_ts) - store.offsets[users]
    assert got.lengths.tolist() == np.minimum(before, k).tolist()
    for b in range(len(users)):
        ts = got.columns["ts"][got.offsets[b]:got.offsets[b + 1]]
        assert np.all(ts < request_ts[b]) and np.all(np.diff(ts) >= 0)
