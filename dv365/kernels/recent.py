"""Each query's last K events before its request time, gathered in one compiled pass.

Downstream sequence models (an HSTU ranker, a two-tower retriever) read the most recent
events of a user as their input sequence (K about 500, up to 2,000), next to the DV365
embedding. They see the history *up to the request*: there is no 24h gap here. The gap
(:data:`~dv365.durations.DEFAULT_GAP_MS`) belongs to the foundation encoder, whose embedding
is computed offline, must survive pipeline delays and is trained on distant interest; a
downstream model reads the recent events at request time itself.

:func:`recent_events` answers a batch of queries ``(user index, cutoff)`` over the CSR arrays
of an :class:`~dv365.data.event_store.EventStore`:

1. one binary search per query for the end of the user's events with ``ts < cutoff``
   (:func:`~dv365.data.timeline.csr_ends_before`, the search
   :meth:`TimelineStore.ends_before <dv365.data.timeline.TimelineStore.ends_before>` runs);
2. each query keeps the last ``min(k, count)`` of them; a cumsum of those lengths gives the
   output offsets;
3. one parallel region (``prange`` over queries) copies each query's span of every
   requested column into one preallocated array per column. The columns go in as byte
   views, so that a single compiled loop serves every dtype and every column set: one
   fork-join per call instead of one per column, which matters for short spans (small K).

The result is jagged (``offsets`` + flat columns), oldest event first within each query, in
the store's order (time order; ties keep the order of :mod:`dv365.data.timeline`).
:func:`recent_events_reference` is the definition in plain Python that tests compare with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numba
import numpy as np

from dv365.data.event_store import EventStore
from dv365.data.schema import EVENT_COLUMN_DTYPES
from dv365.data.timeline import csr_ends_before
from dv365.kernels.checks import check_store

DEFAULT_COLUMNS = ("ts", "media_id", "author_id", "topic_id", "action", "dwell_time")


@dataclass(frozen=True)
class RecentEvents:
    """Each query's last <= K events before its cutoff, jagged, oldest first.

    Query ``b`` owns positions ``offsets[b]:offsets[b + 1]`` of every column.
    """

    offsets: np.ndarray             # int64 [B + 1], from 0
    columns: dict[str, np.ndarray]  # name -> [offsets[-1]] values (the store's dtypes)

    @property
    def lengths(self) -> np.ndarray:
        """Events per query, int64 ``[B]`` (each at most K)."""
        return np.diff(self.offsets)


def recent_events(store: EventStore, user_index: Any, before_ms: Any, k: int,
                  columns: Sequence[str] = DEFAULT_COLUMNS) -> RecentEvents:
    """For each query ``b``, the last ``min(k, count)`` events of store user *index*
    ``user_index[b]`` with ``ts < before_ms[b]`` (strictly), oldest first.

    ``user_index``: int ``[B]`` indices into ``store.user_ids``, in any order, repeats
    allowed; ``-1`` means the query has no timeline (zero events). ``before_ms``: int ``[B]``
    cutoffs in ms, or one for all. ``columns``: which event columns to gather (each keeps
    its store dtype). Raises ValueError on bad arguments (``k < 1``, shapes or lengths that
    do not match, an index outside the store, an unknown column) and
    :class:`~dv365.errors.DataError` on a malformed store (unsorted times, bad offsets).
    """
    users, cutoffs, names = _checked(store, user_index, before_ms, k, columns)
    offsets = np.asarray(store.offsets)
    starts = np.zeros(users.size, dtype=np.int64)
    lengths = np.zeros(users.size, dtype=np.int64)
    valid = users >= 0
    every = bool(valid.all())
    u = users if every else users[valid]
    if u.size:
        c = cutoffs if every else cutoffs[valid]
        ends = np.empty(u.size, dtype=np.int64)
        csr_ends_before(offsets, np.asarray(store.columns["ts"]), u, c, ends)
        kept = np.minimum(ends - offsets[u], k)
        starts[valid] = ends - kept
        lengths[valid] = kept
    out_offsets = np.zeros(users.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_offsets[1:])
    total = int(out_offsets[-1])
    gathered = {}
    sources, targets = [], []
    for name in names:
        src = np.ascontiguousarray(store.columns[name])
        gathered[name] = np.empty(total, dtype=src.dtype)
        sources.append(_bytes(src))
        targets.append(gathered[name].view(np.uint8))
    if total and names:
        widths = np.array([gathered[n].itemsize for n in names], dtype=np.int64)
        _gather_spans(tuple(sources), tuple(targets), widths, starts, out_offsets)
    return RecentEvents(out_offsets, gathered)


def recent_events_reference(store: EventStore, user_index: Any, before_ms: Any, k: int,
                            columns: Sequence[str] = DEFAULT_COLUMNS) -> RecentEvents:
    """The definition of :func:`recent_events`, in plain Python: scan each user's events in
    store order, keep those with ``ts < cutoff``, take the last ``k``. Same arguments and
    checks; slow (one Python step per event)."""
    users, cutoffs, names = _checked(store, user_index, before_ms, k, columns)
    offsets = np.asarray(store.offsets)
    ts = np.asarray(store.columns["ts"])
    picked: list[int] = []
    lengths: list[int] = []
    for u, cutoff in zip(users.tolist(), cutoffs.tolist()):
        before = [] if u < 0 else [
            i for i in range(int(offsets[u]), int(offsets[u + 1])) if ts[i] < cutoff]
        last = before[-k:]
        picked += last
        lengths.append(len(last))
    positions = np.array(picked, dtype=np.int64)
    return RecentEvents(np.array([0, *np.cumsum(lengths, dtype=np.int64)], dtype=np.int64),
                        {name: np.asarray(store.columns[name])[positions] for name in names})


def _checked(store: EventStore, user_index: Any, before_ms: Any, k: int,
             columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The arguments as contiguous int64 ``[B]`` users and cutoffs and the column names;
    ValueError naming the first bad one."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if isinstance(columns, str):
        raise ValueError(f"columns must be a sequence of column names, got the string "
                         f"{columns!r} (write ({columns!r},) for one column)")
    names = tuple(dict.fromkeys(columns))
    known = [c for c in EVENT_COLUMN_DTYPES if c in store.columns]
    for name in names:
        if name not in known:
            raise ValueError(f"unknown column {name!r}; the store's columns are "
                             f"{', '.join(known)}")
    users = np.asarray(user_index)
    if users.ndim != 1:
        raise ValueError(f"user_index must be 1-D [B], got shape {users.shape}")
    if users.size and not np.issubdtype(users.dtype, np.integer):
        raise ValueError(f"user_index must be integers, got {users.dtype}")
    users = np.ascontiguousarray(users, dtype=np.int64)
    n_users = len(store.offsets) - 1
    bad = (users < -1) | (users >= n_users)
    if bad.any():
        b = int(np.flatnonzero(bad)[0])
        raise ValueError(f"user_index[{b}] is {int(users[b])}, outside the store: indices "
                         f"are 0..{n_users - 1}, or -1 for no timeline")
    cutoffs = np.asarray(before_ms)
    if cutoffs.ndim > 1 or (cutoffs.ndim == 1 and cutoffs.shape != users.shape):
        raise ValueError(f"before_ms must be one cutoff or one per query ({users.size}), "
                         f"got shape {cutoffs.shape}")
    if cutoffs.size and not np.issubdtype(cutoffs.dtype, np.integer):
        raise ValueError(f"before_ms must be integer milliseconds, got {cutoffs.dtype}")
    cutoffs = np.ascontiguousarray(np.broadcast_to(cutoffs.astype(np.int64), users.shape))
    # The compiled search and gather index without bounds checks: the store must be sound.
    check_store(store, names)
    return users, cutoffs, names


def _bytes(column: np.ndarray) -> np.ndarray:
    """A read-only byte view of a contiguous column: every column then has one Numba type,
    so all of them travel in one homogeneous tuple to one parallel region."""
    view = column.view(np.uint8)
    view.flags.writeable = False
    return view


@numba.njit(parallel=True, cache=True, nogil=True)
def _gather_spans(sources, targets, widths, starts, offsets):  # pragma: no cover - compiled
    """For each query ``q`` (in parallel) and column ``c``: its events
    ``starts[q]:starts[q] + length`` of ``sources[c]`` into ``offsets[q]:offsets[q + 1]`` of
    ``targets[c]`` (byte views; ``widths[c]`` bytes an event)."""
    for q in numba.prange(starts.size):
        s = starts[q]
        o = offsets[q]
        n = offsets[q + 1] - o
        for c in range(len(sources)):
            w = widths[c]
            # A slice copy compiles to a block copy; an element loop did not vectorize.
            targets[c][o * w:(o + n) * w] = sources[c][s * w:(s + n) * w]
