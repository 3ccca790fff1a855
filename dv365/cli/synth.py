"""``dv365 synth``: generate the default long-history data set (events, examples, truth)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from dv365.console import progress, stdout


def synth(
    out: Path = typer.Argument(..., help="Data folder to write: events/, examples/, truth/."),
    users: int = typer.Option(..., "--users", help="Number of users."),
    seed: int = typer.Option(0, "--seed", help="Random seed; same arguments, same bytes."),
    profile: str = typer.Option(
        "small", "--profile",
        help="small (mean 1,000 events, cap 5,000) or paper (mean 40,000, cap 70,000)."),
    mean_events: Optional[int] = typer.Option(
        None, "--mean-events", help="Target mean history length (default: the profile's)."),
    max_events: Optional[int] = typer.Option(
        None, "--max-events", help="Cap on one user's history length (default: the profile's)."),
    days: int = typer.Option(
        28, "--days", help="Days at the end of the year that hold the examples."),
    examples_per_user: Optional[int] = typer.Option(
        None, "--examples-per-user", help="Labelled impressions per user (default: profile's)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
) -> None:
    """Generate a year of long user histories with planted stable and emerging interests."""
    from dv365.data.synth import SynthConfig, synthesize

    config = SynthConfig(users=users, seed=seed, profile=profile, mean_events=mean_events,
                         max_events=max_events, days=days,
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


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
