"""A batch of requests: which users' histories, and at what request time each.

Every kernel launch runs one spec over one :class:`RequestBatch` of one event store. Row
``b`` of every output is the history of store user *index* ``users[b]`` (not a user id)
strictly before ``request_ts[b] - gap``; a user may appear in several rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dv365.data.event_store import EventStore
from dv365.data.schema import TS_MAX_MS, TS_MIN_MS, TS_RANGE_TEXT
from dv365.errors import DataError


@dataclass(frozen=True)
class RequestBatch:
    """Checked rows of a launch: ``users`` and ``request_ts``, int64 ``[B]`` each."""

    users: np.ndarray
    request_ts: np.ndarray

    @classmethod
    def checked(cls, store: EventStore, user_indices: Any, request_ts: Any) -> "RequestBatch":
        """The batch of ``user_indices`` (store indices) at ``request_ts`` (one time in ms
        per row, or one for all); a :class:`DataError` naming the first bad row."""
        users = np.ascontiguousarray(np.asarray(user_indices).reshape(-1))
        if users.size and not np.issubdtype(users.dtype, np.integer):
            raise DataError(f"user indices must be integers, got {users.dtype}",
                            where="user_indices")
        users = users.astype(np.int64, copy=False)
        n_users = len(store.offsets) - 1
        bad = (users < 0) | (users >= n_users)
        if bad.any():
            b = int(np.flatnonzero(bad)[0])
            raise DataError(f"user index {int(users[b])} is outside the store "
                            f"(0..{n_users - 1})", where=f"user_indices[{b}]")
        times = np.asarray(request_ts)
        if times.size and not np.issubdtype(times.dtype, np.integer):
            raise DataError(f"request times must be integer milliseconds, got {times.dtype}",
                            where="request_ts")
        times = np.ascontiguousarray(np.broadcast_to(times.astype(np.int64), users.shape))
        bad = (times < TS_MIN_MS) | (times >= TS_MAX_MS)
        if bad.any():
            b = int(np.flatnonzero(bad)[0])
            raise DataError(f"request time {int(times[b])} ms is outside {TS_RANGE_TEXT}",
                            where=f"request_ts[{b}]",
                            hint="request times are milliseconds since the Unix epoch")
        return cls(users, times)

    def __len__(self) -> int:
        return len(self.users)

    def history_lengths(self, store: EventStore) -> np.ndarray:
        """Events each row's user has in the store (all of them, before any cutoff)."""
        offsets = np.asarray(store.offsets)
        return offsets[self.users + 1] - offsets[self.users]

    def event_positions(self, store: EventStore) -> np.ndarray:
        """Where each row's events start when the batch's histories are laid end to end
        (per-event arrays of a launch are indexed ``position[b] + i - offsets[user]``)."""
        lens = self.history_lengths(store)
        return (np.cumsum(lens) - lens).astype(np.int64)
