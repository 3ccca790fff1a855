"""``dv365 inspect DATA``: what a data folder holds, in one streaming pass per dataset.

Users, events, events per timeline, history-length percentiles, date range, the action,
surface and media-type mix; for examples, their count, date range, label rates per binary
task and the mean of each regression task (watch_time).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer
from rich.table import Table

from dv365.console import progress, stdout

_DATA = typer.Argument(..., help="Data folder (events/, examples/) or one dataset folder.")


def _day(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


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
    overview = _overview(f"events: {path}", s, [
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
    overview = _overview(f"examples: {path}", s, [("examples", f"{s.examples:,}")])
    labels = Table(title="labels", title_justify="left")
    labels.add_column("task", style="bold")
    labels.add_column("kind")
    labels.add_column("rate / mean", justify="right")
    for task, (kind, value) in s.labels.items():
        shown = "-" if not s.examples else (f"{100 * value:.2f}%" if kind == "binary"
                                            else f"{value:,.3f}")
        labels.add_row(task, "binary (rate)" if kind == "binary" else "regression (mean)", shown)
    return [overview, labels]


def inspect(data: Path = _DATA) -> None:
    """Print what a data folder holds: users, events, history lengths, mixes, label rates."""
    from dv365.data.folder import locate
    from dv365.data.summary import summarize_events, summarize_examples
    from dv365.data.validate import DatasetReader

    folder = locate(data)
    for kind, path in folder.datasets():
        reader = DatasetReader(path, kind)
        with progress(f"reading {kind}", reader.num_rows) as advance:
            if kind == "events":
                tables = _events_tables(path, summarize_events(reader, advance))
            else:
                tables = _examples_tables(path, summarize_examples(reader, advance))
        for table in tables:
            stdout.print(table)
    if folder.truth is not None:
        stdout.print(f"ground truth: {folder.truth}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)
