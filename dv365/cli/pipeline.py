"""``dv365 pipeline``: run one cycle, run cycles on a cadence, show the cycles and steps.

``run CONFIG`` runs (or resumes) one cycle and prints a line a step; ``schedule CONFIG
--every 6h`` runs cycles on that cadence; ``status CONFIG`` shows the recent cycles and the
steps of each (status, duration, snapshot, error). A failed step is one line on stderr (exit
non-zero) and leaves the store's current snapshot current. See docs/pipeline.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dv365.console import progress, stderr, stdout
from dv365.durations import moment_text

pipeline_app = typer.Typer(
    name="pipeline", no_args_is_help=True,
    help="The recurring pipeline: collect, train when due, export, verify, publish, gc.")

_CONFIG = typer.Argument(..., help="A pipeline config YAML (docs/pipeline.md).")


def _say(text: str) -> None:
    stdout.print(text, highlight=False, markup=False, soft_wrap=True)


def step_detail(step) -> str:
    """What a step of a cycle did, in a few words."""
    out = step.outputs or {}
    name = step.name
    if step.status == "failed":
        return f"failed: {step.error}"
    if step.status == "running":
        return "started, not finished (killed?): the next run resumes it"
    if name == "collect":
        rows = out.get("rows", {})
        return (f"{len(out.get('batches', []))} batch(es), {out.get('files', 0)} "
                f"file(s) ({rows.get('events', 0):,} events, {rows.get('examples', 0):,} "
                f"examples); {out.get('users', 0):,} users, {out.get('events', 0):,} events "
                f"to {moment_text(out['end_ms'])} (timeline {out.get('timeline', 'opened')} "
                f"in {out.get('timeline_s', 0):.1f} s)"
                if "end_ms" in out else "")
    if name == "train":
        done = (f"trained to step {out.get('step')} (from {out.get('resumed_from')})"
                if step.status == "done" else "not due")
        return f"{done}: {out.get('reason', '')}; checkpoint step {out.get('checkpoint_step')}"
    if name == "export":
        if step.status == "skipped":
            return f"nothing new: {out.get('reason', '')} ({out.get('version')})"
        kind = (f"incremental from {out['parent']}: recomputed {out.get('recomputed', 0):,} of "
                f"{out.get('users', 0):,}" if out.get("parent") else
                f"full: {out.get('users', 0):,} users")
        extra = " (adopted: published by an earlier run)" if out.get("adopted") else ""
        return f"{kind} -> {out.get('version')}{extra}"
    if name == "verify":
        return (f"{out.get('users', 0):,} records, checksum {out.get('checksum')}, "
                f"{out.get('sampled', 0)} users recomputed (worst "
                f"{out.get('worst_error_ratio', 0):.2f} of the codec's tolerance)")
    if name == "publish":
        return (f"{out.get('version')} is current"
                + (" (it was already)" if step.status == "skipped" else
                   f" (was {out.get('previous')})"))
    if name == "gc":
        removed, stale = out.get("removed", []), out.get("timeline_removed", [])
        return f"removed {len(removed)} version(s)" + (
            f": {', '.join(removed)}" if removed else "") + (
            f"; {len(stale)} stale timeline store(s)" if stale else "")
    return ""


def step_line(step) -> str:
    """One step of a cycle in a line: its name and what it did."""
    return f"{step.name}: {step_detail(step)}"


def _seconds(step) -> float | None:
    return None if step.ended_ms is None else (step.ended_ms - step.started_ms) / 1000


def _print_report(report) -> None:
    head = f"cycle {report.cycle}" + (" (resumed)" if report.resumed else "")
    for step in report.steps:
        took = _seconds(step)
        reused = " (done before)" if step.name in report.reused else ""
        _say(f"{head}: {step_line(step)}{reused}"
             + (f" [{took:.1f} s]" if took is not None and not reused else ""))
    _say(f"{head}: done in {report.seconds:.1f} s; current snapshot {report.snapshot}")


def _load(config: Path):
    from dv365.pipeline.config import load_pipeline_config

    return load_pipeline_config(config)


@pipeline_app.command("run")
def run(config: Path = _CONFIG) -> None:
    """Run one cycle (resuming the last one if it did not finish): cron-friendly."""
    from dv365.pipeline.cycle import run_cycle

    _print_report(run_cycle(_load(config), progress=progress))


@pipeline_app.command("schedule")
def schedule(config: Path = _CONFIG,
             every: str = typer.Option(..., "--every", help="Cadence: 6h, 30m, 1d, ..."),
             cycles: Optional[int] = typer.Option(
                 None, "--cycles", min=1, help="Stop after this many (default: run on).")
             ) -> None:
    """Run a cycle at every tick of a cadence; a failed cycle is reported and the next tick
    resumes it."""
    from dv365.durations import parse_duration
    from dv365.errors import UsageError
    from dv365.pipeline.schedule import run_schedule

    try:
        every_ms = parse_duration(every)
    except ValueError as exc:
        raise UsageError(str(exc), where="--every", hint="for example 6h") from None
    if every_ms <= 0:
        raise UsageError("the cadence must be positive", where="--every")
    loaded = _load(config)

    def told(tick) -> None:
        if tick.report is not None:
            _print_report(tick.report)
        else:
            stderr.print(tick.error.render(), style="red", highlight=False, markup=False,
                         soft_wrap=True)

    ticks = run_schedule(loaded, every_ms / 1000, cycles=cycles, on_tick=told,
                         progress=progress)
    if any(t.error is not None for t in ticks[-1:]):
        raise typer.Exit(1)


@pipeline_app.command("status")
def status(config: Path = _CONFIG,
           last: int = typer.Option(10, "--last", min=1, help="Cycles to show.")) -> None:
    """The recent cycles and their steps: status, duration, snapshot, failures."""
    from rich.table import Table

    from dv365.paths import display_path
    from dv365.pipeline.state import PipelineState

    loaded = _load(config)
    if not loaded.state_path.exists():
        _say(f"{display_path(loaded.state_path)}: no cycles yet")
        return
    with PipelineState(loaded.state_path) as state:
        cycles = state.cycles(last)
        table = Table(title=f"pipeline {display_path(loaded.state_path)}", title_justify="left")
        for column in ("cycle", "step", "status", "seconds", "snapshot", "what"):
            table.add_column(column, justify="right" if column in ("cycle", "seconds")
                             else "left", no_wrap=column != "what", overflow="fold")
        for cycle in reversed(cycles):
            took = ("" if cycle.ended_ms is None else
                    f"{(cycle.ended_ms - cycle.started_ms) / 1000:.1f}")
            what = (f"started {moment_text(cycle.started_ms)}" if cycle.status == "done" else
                    cycle.error or "not finished (killed?): the next run resumes it")
            table.add_row(str(cycle.id), "", cycle.status, took, cycle.snapshot or "", what,
                          style="bold")
            for step in state.steps(cycle.id):
                seconds = _seconds(step)
                version = (step.outputs or {}).get("version", "")
                table.add_row("", step.name, step.status,
                              "" if seconds is None else f"{seconds:.1f}", version,
                              step_detail(step))
        stdout.print(table, highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(pipeline_app, name="pipeline")
