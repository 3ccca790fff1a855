"""``dv365 inspect DATA``: what a data folder holds, in one streaming pass per dataset.

Users, events, events per timeline, history-length percentiles, date range, the action,
surface and media-type mix; for examples, their count, date range, label rates per binary
task and the mean of each regression task (watch_time).

With both events and examples: the share of examples that see no history at the gap (the
spec's with ``--spec``, else ``--gap``, 24h by default), over all examples and over those of
the last ``--last-days`` days, with each example's own cutoff and with its user-day group's
(how training groups them; :mod:`dv365.data.empty_history`), and a warning when most see none.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from dv365.console import progress, stderr, stdout
from dv365.durations import DEFAULT_GAP_MS, duration_text, moment_text, parse_duration
from dv365.errors import UsageError
from dv365.paths import display_path

if TYPE_CHECKING:
    from dv365.data.empty_history import EmptyHistory

_DATA = typer.Argument(..., help="Data folder (events/, examples/) or one dataset folder.")
# A warning when more than this share of examples sees no history.
MOST = 0.5


def _day(ms: int | None) -> str:
    if ms is None:
        return "-"
    return moment_text(ms)


def _share(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "-"


def _overview(title: str, s, counts: list[tuple[str, str]]) -> Table:
    """Files, users, the dataset's own counts, then its date range, as a two-column table."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in [("files", f"{s.files:,}"), ("users", f"{s.users:,}"), *counts,
                       ("date range (UTC)", f"{_day(s.first_ts)} .. {_day(s.last_ts)}")]:
        table.add_row(key, value)
    return table


def _events_tables(path: Path, s) -> list[Table]:
    overview = _overview(f"events: {display_path(path)}", s, [
        ("events", f"{s.events:,}"),
        ("explicit", f"{s.explicit:,} ({_share(s.explicit, s.events)})"),
        ("implicit", f"{s.implicit:,} ({_share(s.implicit, s.events)})"),
    ])
    history = Table(title="history length (events per user)", title_justify="left")
    for key in ("p50", "p90", "p99", "max", "mean"):
        history.add_column(key, justify="right")
    if s.history:
        history.add_row(*(f"{s.history[k]:,.0f}" if k != "mean" else f"{s.history[k]:,.1f}"
                          for k in ("p50", "p90", "p99", "max", "mean")))
    mix = Table(title="mix", title_justify="left")
    mix.add_column("column", style="bold")
    mix.add_column("value")
    mix.add_column("events", justify="right")
    mix.add_column("share", justify="right")
    for column, counts in s.mix.items():
        # actions are a share of explicit events, the rest of all events
        total = s.explicit if column == "action" else s.events
        for k, (value, n) in enumerate(counts):
            mix.add_row(column if k == 0 else "", value, f"{n:,}", _share(n, total))
    return [overview, history, mix]


def _examples_tables(path: Path, s) -> list[Table]:
    overview = _overview(f"examples: {display_path(path)}", s,
                         [("examples", f"{s.examples:,}")])
    labels = Table(title="labels", title_justify="left")
    labels.add_column("task", style="bold")
    labels.add_column("kind")
    labels.add_column("rate / mean", justify="right")
    for task, (kind, value) in s.labels.items():
        shown = "-" if not s.examples else (f"{100 * value:.2f}%" if kind == "binary"
                                            else f"{value:,.3f}")
        labels.add_row(task, "binary (rate)" if kind == "binary" else "regression (mean)", shown)
    return [overview, labels]


def gap_ms_of(text: str) -> int:
    """A gap as the slice language spells durations (``24h``, ``90m``, ``2d``, ``0s``)."""
    try:
        return parse_duration(text)
    except ValueError:
        raise UsageError(f"cannot read {text!r} as a gap", where="--gap",
                         hint="a number and a unit: 24h, 90m, 2d, 0s") from None


def _empty_history_table(gap_ms: int, rows: list[tuple[str, "EmptyHistory"]]) -> Table:
    table = Table(title=f"examples that see no history at gap {duration_text(gap_ms)}",
                  title_justify="left")
    table.add_column("examples", style="bold")
    table.add_column("count", justify="right")
    table.add_column("per request", justify="right")
    table.add_column("per user-day group", justify="right")
    for label, counts in rows:
        table.add_row(label, f"{counts.examples:,}",
                      _share(counts.per_request, counts.examples),
                      _share(counts.per_user_day, counts.examples))
    return table


def _empty_history_warning(gap_ms: int, rows: list[tuple[str, "EmptyHistory"]]) -> str | None:
    """One line when most examples of a row see no history (the worst row), else None."""
    label, worst = max(rows, key=lambda row: row[1].per_user_day_share)
    if worst.per_user_day_share <= MOST:
        return None
    gap = duration_text(gap_ms)
    what = "the examples" if label == "all" else f"the examples of the {label}"
    own = _share(worst.per_request, worst.examples)
    if worst.per_request_share > MOST:
        return (f"warning: {own} of {what} see no history at gap {gap} even with their own "
                f"cutoff (no event of their user more than {gap} before the request): a "
                "shorter gap gives them history")
    return (f"warning: {_share(worst.per_user_day, worst.examples)} of {what} see no history "
            f"at gap {gap} grouped per user-day ({own} with their own cutoff): group per "
            "request for exact cutoffs, or shorten the gap")


def _empty_history(folder, gap_ms: int, days: int) -> None:
    from dv365.data.empty_history import empty_history, last_days, read_requests
    from dv365.data.timeline import TimelineStore
    from dv365.data.validate import DatasetReader

    store = TimelineStore.open(folder.events)
    reader = DatasetReader(folder.examples, "examples")
    with progress("reading requests", reader.num_rows) as advance:
        user_ids, request_ts = read_requests(reader, advance)
    index = store.user_indices(user_ids, missing=-1)
    known = index >= 0
    index, request_ts = index[known], request_ts[known]
    rows = [("all", empty_history(store, index, request_ts, gap_ms)),
            (f"last {days} day{'s' * (days != 1)}",
             empty_history(store, index, request_ts, gap_ms,
                           subset=last_days(request_ts, days)))]
    stdout.print(_empty_history_table(gap_ms, rows))
    unknown = int((~known).sum())
    if unknown:
        stdout.print(f"not counted: {unknown:,} example{'s' * (unknown != 1)} of users "
                     "without events (training leaves them out)", highlight=False,
                     markup=False)
    warning = _empty_history_warning(gap_ms, rows)
    if warning:
        stderr.print(warning, highlight=False, markup=False, soft_wrap=True)


def inspect(
    data: Path = _DATA,
    spec: Optional[Path] = typer.Option(
        None, "--spec", help="Count empty histories at this spec's gap (.slice or IR .json)."),
    gap: Optional[str] = typer.Option(
        None, "--gap", help="Count empty histories at this gap (e.g. 24h, 6h, 0s; default "
                            "24h, or the gap of --spec)."),
    days: int = typer.Option(3, "--last-days", min=1,
                             help="Also count the examples of the last N days."),
) -> None:
    """Print what a data folder holds: users, events, history lengths, mixes, label rates,
    and how many examples see no history at the gap."""
    from dv365.data.folder import locate
    from dv365.data.summary import summarize_events, summarize_examples
    from dv365.data.validate import DatasetReader

    folder = locate(display_path(data))
    both = folder.events is not None and folder.examples is not None
    if spec is not None and gap is not None:
        raise UsageError("give --spec or --gap, not both", where="--gap",
                         hint="the spec's gap is the one training uses")
    if (spec is not None or gap is not None) and not both:
        raise UsageError("counting empty histories needs events and examples",
                         where=display_path(data), hint="pass a data folder holding both")
    gap_ms = DEFAULT_GAP_MS if gap is None else gap_ms_of(gap)
    if spec is not None:
        from dv365.slices.compile import load_spec

        gap_ms = load_spec(Path(display_path(spec)),
                           DatasetReader(folder.events, "events").meta).gap_ms
    for kind, path in folder.datasets():
        reader = DatasetReader(path, kind)
        with progress(f"reading {kind}", reader.num_rows) as advance:
            if kind == "events":
                tables = _events_tables(path, summarize_events(reader, advance))
            else:
                tables = _examples_tables(path, summarize_examples(reader, advance))
        for table in tables:
            stdout.print(table)
    if both:
        _empty_history(folder, gap_ms, days)
    if folder.truth is not None:
        stdout.print(f"ground truth: {display_path(folder.truth)}", highlight=False,
                     markup=False)


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)
