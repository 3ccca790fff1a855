"""The request times an export accepts on a dataset.

An export at ``T`` encodes every user's history strictly before ``T - gap``. It is refused

* before the data's first event: nothing the data holds could be history yet, and a time
  so early is almost surely a typo (seconds for milliseconds, a wrong year);
* after the data's *end* plus the gap, where the end is the last event + 1 ms: past that the
  cutoff ``T - gap`` lies after the last event, so the snapshot would claim to know events
  the data does not hold (a stale dataset exported as if it were fresh). ``T = end + gap``
  is the latest time whose cutoff every event of the data precedes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dv365.data.timeline import TimelineStore
from dv365.durations import duration_text, moment_text
from dv365.errors import DataError


@dataclass(frozen=True)
class DataSpan:
    """The first event and the end (last event + 1 ms) of a dataset, in ms UTC."""

    first_ms: int
    end_ms: int

    @classmethod
    def of(cls, store: TimelineStore) -> "DataSpan":
        lengths = store.history_lengths()
        if store.num_events == 0:
            raise DataError("the dataset holds no events", where=str(store.source))
        offsets = np.asarray(store.offsets)
        ts = store.ts
        firsts = ts[offsets[:-1][lengths > 0]]
        lasts = ts[offsets[1:][lengths > 0] - 1]
        return cls(int(firsts.min()), int(lasts.max()) + 1)


def _at(ms: int) -> str:
    return moment_text(ms, "ms")


def check_request_time(at_ms: int, span: DataSpan, gap_ms: int, *,
                       where: str = "--at") -> None:
    """A one-line :class:`DataError` when ``at_ms`` is outside what the data can answer."""
    latest = span.end_ms + gap_ms
    if at_ms < span.first_ms:
        raise DataError(f"request time {_at(at_ms)} is before the data's first event "
                        f"({_at(span.first_ms)})", where=where,
                        hint=f"use a time from {_at(span.first_ms)} to {_at(latest)}, or `end`")
    if at_ms > latest:
        raise DataError(f"request time {_at(at_ms)} is after the data's end "
                        f"({_at(span.end_ms)}) plus the {duration_text(gap_ms)} gap: the "
                        "history would miss events the data does not hold yet", where=where,
                        hint=f"the latest time is {_at(latest)}; `end` is the data's last "
                             "event + 1 ms")
