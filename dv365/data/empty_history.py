"""Which examples see no history at a gap, under either grouping of their history cutoffs.

An example at ``request_ts`` sees the events strictly before its *cutoff*:

* **per request**, the exact cutoff ``request_ts - gap``;
* **per user-day group** (how training computes histories, once per user and UTC day), the
  group's earliest request minus the gap: never later than the example's own cutoff, so a
  group can leave an example without history that its own cutoff would give some.

On logs where most users act on one day (a user rates a whole catalogue in an afternoon)
most examples see nothing at a 24 h gap, and a model trained on them learns little from
history; ``dv365 inspect`` and training report the shares computed here. Counts come from
:meth:`~dv365.data.timeline.TimelineStore.ends_before`, one binary search per example.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from dv365.data.timeline import TimelineStore
from dv365.data.validate import DatasetReader
from dv365.durations import DAY_MS


def read_requests(reader: DatasetReader, advance: Callable[[int], object] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(user_id, request_ts)`` of every example of an examples dataset (int64 arrays, in
    the dataset's order), read through the validating reader."""
    users, times = [], []
    for batch in reader.batches(advance=advance):
        users.append(np.asarray(batch.columns["user_id"], np.int64))
        times.append(np.asarray(batch.columns["request_ts"], np.int64))
    if not users:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(users), np.concatenate(times)


def last_days(request_ts: np.ndarray, days: int) -> np.ndarray:
    """Which examples fall on the last ``days`` UTC calendar days of the log: the day of the
    latest request and the ``days - 1`` days before it, whether they hold examples or not."""
    ts = np.asarray(request_ts, np.int64)
    if ts.size == 0:
        return np.zeros(0, bool)
    return ts // DAY_MS > int(ts.max()) // DAY_MS - days


def request_cutoffs(request_ts: np.ndarray, gap_ms: int) -> np.ndarray:
    """Each example's own cutoff, ``request_ts - gap_ms`` (int64)."""
    return np.asarray(request_ts, np.int64) - int(gap_ms)


def user_day_cutoffs(user_index: np.ndarray, request_ts: np.ndarray, gap_ms: int) -> np.ndarray:
    """Each example's cutoff under user-day grouping: the earliest request of its user's
    examples on the same UTC day, minus ``gap_ms`` (int64)."""
    ts = np.asarray(request_ts, np.int64)
    users = np.asarray(user_index, np.int64)
    if ts.size == 0:
        return ts.copy()
    day = ts // DAY_MS
    # Sorted by (user, day, time), the first example of each run is its group's earliest.
    order = np.lexsort((ts, day, users))
    u, d = users[order], day[order]
    starts = np.flatnonzero(np.r_[True, (u[1:] != u[:-1]) | (d[1:] != d[:-1])])
    earliest = np.empty_like(ts)
    earliest[order] = np.repeat(ts[order][starts], np.diff(np.r_[starts, ts.size]))
    return earliest - int(gap_ms)


def history_is_empty(store: TimelineStore, user_index: np.ndarray,
                     cutoffs: np.ndarray) -> np.ndarray:
    """Per example (a store user index and a cutoff), whether the user has no event strictly
    before the cutoff (bool)."""
    users = np.asarray(user_index, np.int64)
    return store.ends_before(users, cutoffs) == store.offsets[users]


def empty_share(store: TimelineStore, user_index: np.ndarray, request_ts: np.ndarray | int,
                gap_ms: int) -> float:
    """The share of (store user index, request time) pairs whose user has no event strictly
    before ``request_ts - gap_ms``; NaN when there are none."""
    users = np.asarray(user_index, np.int64)
    if users.size == 0:
        return float("nan")
    times = np.broadcast_to(np.asarray(request_ts, np.int64), users.shape)
    return float(history_is_empty(store, users, request_cutoffs(times, gap_ms)).mean())


@dataclass(frozen=True)
class EmptyHistory:
    """How many of ``examples`` see no history: with their own cutoff (``per_request``) and
    with their user-day group's (``per_user_day``, never fewer)."""

    examples: int
    per_request: int
    per_user_day: int

    @property
    def per_request_share(self) -> float:
        return self.per_request / self.examples if self.examples else 0.0

    @property
    def per_user_day_share(self) -> float:
        return self.per_user_day / self.examples if self.examples else 0.0


def empty_history(store: TimelineStore, user_index: np.ndarray, request_ts: np.ndarray,
                  gap_ms: int, subset: np.ndarray | None = None) -> EmptyHistory:
    """Count the examples (store user indices, request times) that see no history at
    ``gap_ms``, per request and per user-day group. ``subset`` (a mask) counts only some of
    them; groups are formed over all examples, so a subset of whole days (the last days of
    a log) counts what it would count alone."""
    user_index = np.asarray(user_index, np.int64)
    request_ts = np.asarray(request_ts, np.int64)
    mask = np.ones(len(user_index), bool) if subset is None else np.asarray(subset, bool)
    grouped = user_day_cutoffs(user_index, request_ts, gap_ms)[mask]
    users, own = user_index[mask], request_cutoffs(request_ts[mask], gap_ms)
    return EmptyHistory(examples=int(mask.sum()),
                        per_request=int(history_is_empty(store, users, own).sum()),
                        per_user_day=int(history_is_empty(store, users, grouped).sum()))
