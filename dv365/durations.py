"""Time units and durations: the one place that knows how long a day is in milliseconds.

Inside dv365 a moment is ``int64`` milliseconds since the Unix epoch (UTC) and a duration is
``int`` milliseconds (:mod:`dv365.data.schema` says why). This module names the units, spells
durations for people (exactly, for spec text and artifacts; roughly, for summaries), and holds
the project's default distant-interest gap.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Literal

MS = 1
SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS

# Unit suffix -> milliseconds, as the slice language spells them.
UNIT_MS: dict[str, int] = {"ms": MS, "s": SECOND_MS, "m": MINUTE_MS, "h": HOUR_MS,
                           "d": DAY_MS, "w": WEEK_MS}

# The paper's distant-interest objective: history ends 24 hours before each request.
DEFAULT_GAP_MS = 24 * HOUR_MS

# Largest units first, for spelling; weeks are spelled as days (7d), the way specs write them.
_SPELLING = (("d", DAY_MS), ("h", HOUR_MS), ("m", MINUTE_MS), ("s", SECOND_MS), ("ms", MS))


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*")


def parse_duration(text: str) -> int:
    """Milliseconds of a duration spelled as the slice language does (``24h``, ``90m``,
    ``1.5d``, ``0s``); a ``ValueError`` for anything else (an option's reader words it)."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"cannot read {text!r} as a duration")
    return round(float(match.group(1)) * UNIT_MS[match.group(2)])


def duration_text(ms: int) -> str:
    """An exact spelling that parses back to ``ms``: ``604800000`` -> ``7d``, ``86400000`` ->
    ``24h`` (24h and 36h read better than 1d and 1.5d; whole days from 2d on), ``0s``."""
    if ms == 0:
        return "0s"
    for unit, size in _SPELLING:
        if ms % size == 0 and (unit != "d" or ms >= 2 * size):
            return f"{ms // size}{unit}"
    return f"{ms}ms"  # pragma: no cover - 1 ms always divides


def window_text(ms: int | None) -> str:
    """A slice window in a table or summary: the largest whole unit (``24h`` -> ``1d``),
    ``all`` for no window."""
    if ms is None:
        return "all"
    for unit, size in _SPELLING:
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"  # pragma: no cover - the 1 ms unit always divides


def age_text(ms: int) -> str:
    """Roughly how long ago, for people: ``349d``, ``5.2d``, ``7.5h``, ``12m``."""
    if ms >= 10 * DAY_MS:
        return f"{ms / DAY_MS:.0f}d"
    if ms >= DAY_MS:
        return f"{ms / DAY_MS:.1f}d"
    if ms >= HOUR_MS:
        return f"{ms / HOUR_MS:.1f}h"
    return f"{ms / MINUTE_MS:.0f}m"


def moment_text(ms: int, to: Literal["day", "minute", "ms"] = "minute") -> str:
    """A moment (ms since the epoch) in UTC, for people: ``2025-06-15``, ``2025-06-15
    15:06``, or ISO-8601 with milliseconds (``2025-06-15T15:06:40.000Z``)."""
    moment = datetime.fromtimestamp(ms / SECOND_MS, timezone.utc)
    if to == "ms":
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.strftime("%Y-%m-%d" if to == "day" else "%Y-%m-%d %H:%M")


def hours_ms(hours: float) -> int:
    """``hours`` (a config value such as ``gap_hours: 24``) as whole milliseconds."""
    return int(round(hours * HOUR_MS))


def seconds_ms(seconds: float) -> int:
    """``seconds`` as whole milliseconds (rounded)."""
    return int(round(seconds * SECOND_MS))
