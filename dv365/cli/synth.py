"""``dv365 synth``: generate the default long-history data set (events, examples, truth), or
extend one by more days for the same users (``--extend DATA --days N [--out INCOMING]``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from dv365.console import progress, stdout


def synth(
    out: Optional[Path] = typer.Argument(
        None, help="Data folder to write: events/, examples/, truth/."),
    users: Optional[int] = typer.Option(None, "--users", help="Number of users."),
    seed: int = typer.Option(0, "--seed", help="Random seed; same arguments, same bytes."),
    profile: str = typer.Option(
        "small", "--profile",
        help="small (mean 1,000 events, cap 5,000) or paper (mean 40,000, cap 70,000)."),
    mean_events: Optional[int] = typer.Option(
        None, "--mean-events", help="Target mean history length (default: the profile's)."),
    max_events: Optional[int] = typer.Option(
        None, "--max-events", help="Cap on one user's history length (default: the profile's)."),
    days: Optional[int] = typer.Option(
        None, "--days", help="Days at the end of the year that hold the examples (default "
                             "28); with --extend, the days to add."),
    examples_per_user: Optional[int] = typer.Option(
        None, "--examples-per-user", help="Labelled impressions per user (default: profile's)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    extend: Optional[Path] = typer.Option(
        None, "--extend", help="A data folder of `dv365 synth` to extend by --days more days "
                               "of the same users, as new files of a landing folder."),
    landing: Optional[Path] = typer.Option(
        None, "--out", help="With --extend: the landing folder the new batch is written to "
                            "(default DATA/incoming)."),
) -> None:
    """Generate a year of long user histories with planted stable and emerging interests."""
    from dv365.data.synth import SynthConfig, synthesize
    from dv365.errors import UsageError

    if extend is not None:
        given = [name for name, value, default in (
            ("OUT", out, None), ("--users", users, None), ("--seed", seed, 0),
            ("--profile", profile, "small"), ("--mean-events", mean_events, None),
            ("--max-events", max_events, None), ("--examples-per-user", examples_per_user, None),
            ("--force", force, False)) if value != default]
        if given:
            raise UsageError(f"{given[0]} does not go with --extend: the extended data fixes "
                             "the users and the world", where=given[0],
                             hint="dv365 synth --extend DATA --days N [--out INCOMING]")
        if days is None:
            raise UsageError("how many days to add?", where="--days",
                             hint="dv365 synth --extend DATA --days N")
        _extend(extend, days, landing)
        return
    if landing is not None:
        raise UsageError("--out goes with --extend", where="--out",
                         hint="a new data set is written to OUT: dv365 synth OUT --users N")
    if out is None or users is None:
        missing = "OUT" if out is None else "--users"
        raise UsageError("missing", where=missing, hint="dv365 synth OUT --users N")
    config = SynthConfig(users=users, seed=seed, profile=profile, mean_events=mean_events,
                         max_events=max_events, days=28 if days is None else days,
                         examples_per_user=examples_per_user).resolved()
    start = time.perf_counter()
    with progress("generating users", total=config.users) as advance:
        summary = synthesize(out, config, overwrite=force, progress=advance)
    seconds = time.perf_counter() - start
    stdout.print(
        f"wrote {summary.path}: {summary.users:,} users, {summary.events:,} events "
        f"({summary.explicit:,} explicit), {summary.examples:,} examples "
        f"in {seconds:.1f} s ({summary.events / max(seconds, 1e-9) / 1e6:.1f} M events/s)",
        highlight=False, markup=False, soft_wrap=True)


def _extend(data: Path, days: int, landing: Optional[Path]) -> None:
    from dv365.data.synth_extend import extend
    from dv365.durations import moment_text
    from dv365.paths import display_path

    start = time.perf_counter()
    result = extend(data, days, landing)
    stdout.print(
        f"wrote {display_path(result.batch)}: {result.days} day(s) from "
        f"{moment_text(result.start_ms)} to {moment_text(result.end_ms)} UTC for "
        f"{result.users:,} users, {result.events:,} events, {result.examples:,} examples in "
        f"{time.perf_counter() - start:.1f} s", highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
