"""``dv365 explain``: what every slice of a spec selects for one real user.

The way to debug a spec: compile it against the data's vocabulary (a compiled IR may name
only values the data declares: :func:`dv365.slices.compile.load_spec`), open the data's
timeline store, and run the reference semantics (:mod:`dv365.slices.reference`) for one user
at one request time. Prints one row per slice: its timeline and window, how many events it
selected, their weight sum and their ages (time before the request, newest..oldest);
``--rows N`` adds the first ``N`` selected table rows of each slice (oldest first).

The request time defaults to the user's last event + 1 ms: a request made right after the
user's latest activity. The spec's gap still applies, so events of the last gap (24h by
default) are not selected at that time; pass ``--at`` to look from elsewhere.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from dv365.console import stdout
from dv365.data.schema import TS_MAX_MS, TS_MIN_MS, TS_RANGE_TEXT
from dv365.durations import SECOND_MS, age_text, moment_text, window_text
from dv365.errors import UsageError
from dv365.paths import display_path

# Request times must lie in the data's sane range (dv365.data.schema), said as it is checked.
TIME_RANGE_TEXT = TS_RANGE_TEXT
_EPOCH_MS = re.compile(r"-?[0-9]+")  # ASCII digits only: int() also reads '²' and '٣'


def format_time(ms: int) -> str:
    """ISO-8601 UTC with milliseconds."""
    return moment_text(ms, "ms")


def parse_time(text: str) -> int:
    """Epoch milliseconds from ``1735689600000`` or ISO-8601 (no zone means UTC), within
    :data:`TIME_RANGE_TEXT`; anything else is a :class:`~dv365.errors.UsageError` at ``--at``."""
    text = text.strip()
    unreadable = UsageError(f"cannot read {text!r} as a time", where="--at",
                            hint="use ISO-8601 like 2025-06-01T12:00:00Z or epoch milliseconds")
    if _EPOCH_MS.fullmatch(text):
        if len(text) > 20:  # far outside the range (and int() refuses thousands of digits)
            raise UsageError(f"time {text[:20]}... is outside {TIME_RANGE_TEXT}", where="--at")
        ms = int(text)
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise unreadable from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        try:
            ms = round(moment.timestamp() * SECOND_MS)
        except (OverflowError, OSError, ValueError):
            raise unreadable from None
    if not TS_MIN_MS <= ms < TS_MAX_MS:
        raise UsageError(f"time {text} is outside {TIME_RANGE_TEXT}", where="--at",
                         hint="epoch times are in milliseconds, not seconds")
    return ms


def explain(
    spec: Path = typer.Argument(..., help="A .slice spec (or a compiled IR .json)."),
    data: Path = typer.Option(..., "--data", help="Data folder (or events dataset folder)."),
    user: int = typer.Option(..., "--user", help="The user id."),
    at: Optional[str] = typer.Option(
        None, "--at",
        help="Request time: ISO-8601 (UTC if no zone) or epoch ms. Default: the user's last "
             "event + 1 ms."),
    rows: int = typer.Option(0, "--rows", min=0, help="Show the first N selected table rows."),
) -> None:
    """Show how many events each slice of SPEC selects for one user of DATA."""
    from rich import box
    from rich.table import Table as RichTable

    from dv365.data.timeline import TimelineStore
    from dv365.slices import reference
    from dv365.slices.compile import load_spec

    store = TimelineStore.open(display_path(data))
    index = store.user_index(user)
    events = store.user_events(index)
    ir = load_spec(display_path(spec), store.meta)
    if at is not None:
        request = parse_time(at)
    elif len(events["ts"]):
        request = int(events["ts"][-1]) + 1
    else:  # pragma: no cover - a store holds only users with events
        raise UsageError(f"user {user} has no events; pass --at", where="--at")
    selections = reference.select(ir, events, store.meta, request)

    cutoff = request - ir.gap_ms
    history = int((events["ts"] < cutoff).sum())
    stdout.print(
        f"user {user}: {len(events['ts']):,} events, {history:,} before the gap cutoff "
        f"{format_time(cutoff)} (request {format_time(request)}, gap "
        f"{window_text(ir.gap_ms) if ir.gap_ms else 'none'})",
        highlight=False, markup=False, soft_wrap=True)

    table = RichTable(title=f"{spec.name}: {len(selections)} slices", title_justify="left",
                      box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    longest = max((len(s.name) for s in selections), default=5)
    table.add_column("slice", min_width=min(longest, 48), overflow="fold")
    for column in ("timeline", "window"):
        table.add_column(column, no_wrap=True)
    table.add_column("events", justify="right", no_wrap=True)
    table.add_column("weight sum", justify="right", no_wrap=True)
    table.add_column("ages", justify="right", no_wrap=True)
    for selection in selections:
        slice_ = selection.slice
        ts = events["ts"][selection.indices]
        ages = (f"{age_text(request - int(ts.max()))}..{age_text(request - int(ts.min()))}"
                if len(ts) else "-")
        weight_sum = (f"{selection.weight_sum:,.3f}" if slice_.weight is not None
                      else f"{selection.count:,}")
        cells = [slice_.name, slice_.timeline, window_text(slice_.window_ms),
                 f"{selection.count:,}", weight_sum, ages]
        table.add_row(*cells, style="dim" if selection.count == 0 else None)
    stdout.print(table)
    if rows:
        for selection in selections:
            if selection.count:
                shown = ", ".join(str(int(r)) for r in selection.rows[:rows])
                more = f", ... ({selection.count:,} in all)" if selection.count > rows else ""
                stdout.print(f"{selection.name} rows: {shown}{more}", highlight=False,
                             markup=False, soft_wrap=True)
    empty = sum(1 for s in selections if s.count == 0)
    stdout.print(f"{len(selections) - empty} of {len(selections)} slices non-empty; "
                 f"{sum(s.count for s in selections):,} selections in all",
                 highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("explain")(explain)
