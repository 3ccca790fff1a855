"""What a dataset holds, in one streaming pass: counts, history lengths, mixes, label rates.

Read through :class:`~dv365.data.validate.DatasetReader`, so the pass also validates (the first
bad row raises). Memory is bounded by one batch plus one (user, count) pair per user and
batch: runs of a user-sorted batch are counted without sorting, other batches with
``np.unique``; the pairs are merged once at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dv365.data.schema import EXPLICIT, IMPLICIT, dense_column, label_column
from dv365.data.validate import DatasetReader

PERCENTILES = (50, 90, 99)


@dataclass
class EventsSummary:
    """Counts of an events dataset."""

    files: int
    events: int = 0
    users: int = 0
    explicit: int = 0
    implicit: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    # history length (events per user): p50, p90, p99, max and mean
    history: dict[str, float] = field(default_factory=dict)
    # enum column -> [(value, count)], declared order, nulls left out
    mix: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


@dataclass
class ExamplesSummary:
    """Counts of an examples dataset and its label statistics."""

    files: int
    examples: int = 0
    users: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    # task -> (kind, positive rate for binary tasks or mean for regression tasks)
    labels: dict[str, tuple[str, float]] = field(default_factory=dict)
    dense: dict[str, float] = field(default_factory=dict)  # dense feature -> mean


class _UserCounter:
    """Events per user, accumulated batch by batch."""

    def __init__(self) -> None:
        self._users: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []

    def add(self, user: np.ndarray) -> None:
        if user.size == 0:
            return
        if np.all(user[1:] >= user[:-1]):
            starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
            self._users.append(user[starts])
            self._counts.append(np.diff(np.r_[starts, user.size]))
        else:
            u, c = np.unique(user, return_counts=True)
            self._users.append(u)
            self._counts.append(c)

    def lengths(self) -> np.ndarray:
        if not self._users:
            return np.zeros(0, dtype=np.int64)
        users = np.concatenate(self._users)
        counts = np.concatenate(self._counts)
        _, inverse = np.unique(users, return_inverse=True)
        return np.bincount(inverse, weights=counts).astype(np.int64)


def _time_range(lo: int | None, hi: int | None, ts: np.ndarray) -> tuple[int | None, int | None]:
    if ts.size == 0:
        return lo, hi
    a, b = int(ts.min()), int(ts.max())
    return (a if lo is None else min(lo, a)), (b if hi is None else max(hi, b))


def summarize_events(reader: DatasetReader,
                     advance: Callable[[int], object] | None = None) -> EventsSummary:
    """Stream an events dataset once and count what it holds."""
    meta = reader.meta
    s = EventsSummary(files=len(reader.files))
    users = _UserCounter()
    columns = ("timeline", "media_type", "surface", "action")
    mix = {c: np.zeros(len(meta.values(c)) + 1, dtype=np.int64) for c in columns}
    for batch in reader.batches(advance=advance):
        c = batch.columns
        s.events += len(c["ts"])
        users.add(c["user_id"])
        s.first_ts, s.last_ts = _time_range(s.first_ts, s.last_ts, c["ts"])
        for name in columns:
            # code -1 (null) lands in bin 0
            mix[name] += np.bincount(c[name].astype(np.int64) + 1, minlength=len(mix[name]))
    lengths = users.lengths()
    s.users = int(lengths.size)
    s.explicit = int(mix["timeline"][1 + EXPLICIT])
    s.implicit = int(mix["timeline"][1 + IMPLICIT])
    if lengths.size:
        p = np.percentile(lengths, PERCENTILES)
        s.history = {f"p{q}": float(v) for q, v in zip(PERCENTILES, p)}
        s.history["max"] = float(lengths.max())
        s.history["mean"] = float(lengths.mean())
    for name in ("action", "surface", "media_type"):
        s.mix[name] = [(v, int(n)) for v, n in zip(meta.values(name), mix[name][1:])]
    return s


def summarize_examples(reader: DatasetReader,
                       advance: Callable[[int], object] | None = None) -> ExamplesSummary:
    """Stream an examples dataset once: counts, label rates (binary) and means (regression)."""
    meta = reader.meta
    s = ExamplesSummary(files=len(reader.files))
    users = _UserCounter()
    sums = {t: 0.0 for t in meta.tasks}
    dense = {d: 0.0 for d in meta.dense}
    for batch in reader.batches(advance=advance):
        c = batch.columns
        s.examples += len(c["user_id"])
        users.add(c["user_id"])
        s.first_ts, s.last_ts = _time_range(s.first_ts, s.last_ts, c["request_ts"])
        for task in sums:
            sums[task] += float(np.sum(c[label_column(task)], dtype=np.float64))
        for d in dense:
            dense[d] += float(np.sum(c[dense_column(d)], dtype=np.float64))
    s.users = int(users.lengths().size)
    n = max(s.examples, 1)
    s.labels = {t: (meta.tasks[t], sums[t] / n) for t in meta.tasks}
    s.dense = {d: v / n for d, v in dense.items()}
    return s
