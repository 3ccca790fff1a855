"""``dv365 report RUN_DIR``: one self-contained HTML page of a ``dv365 eval`` run directory
(:mod:`dv365.report`), written atomically; a partial run's page names what is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dv365.console import stdout
from dv365.paths import display_path


def report(
    run_dir: Path = typer.Argument(..., help="The out: folder of a dv365 eval run."),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="The HTML file to write (default: RUN_DIR/report.html)."),
) -> None:
    """Write the run's report (figures, tables, provenance, what is missing) as one HTML
    file that needs no network to open, and print its path."""
    from dv365.atomic_write import write_text
    from dv365.errors import UsageError
    from dv365.report.page import render
    from dv365.report.run_dir import read_run_dir

    run = read_run_dir(run_dir)
    target = output if output is not None else run_dir / "report.html"
    if target.is_dir():
        raise UsageError("is a folder, not a file to write", where=display_path(target),
                         hint="pass -o with a file name such as report.html")
    try:
        write_text(target, render(run))
    except OSError as exc:
        raise UsageError(f"cannot write the report ({exc.strerror or exc})",
                         where=display_path(target)) from None
    stdout.print(display_path(target), highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
