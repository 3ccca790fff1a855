"""``dv365 validate DATA [--repair OUT]``: check every row of a data folder.

Reports each dataset as OK with its row count, or lists how many rows break each rule with
the first such row (file, row, column) and exits 1. ``--repair OUT`` writes a copy without the
bad rows (all or nothing) and prints how many rows it dropped for each reason.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import typer

from dv365.console import progress, stderr, stdout
from dv365.errors import DataError
from dv365.paths import display_path

_DATA = typer.Argument(..., help="Data folder (events/, examples/) or one dataset folder.")


def _rows(n: int) -> str:
    return f"{n:,} row" if n == 1 else f"{n:,} rows"


def _print(text: str) -> None:
    stdout.print(text, highlight=False, markup=False, soft_wrap=True)


def validate(
    data: Path = _DATA,
    repair: Optional[Path] = typer.Option(
        None, "--repair", metavar="OUT",
        help="Write a copy of DATA without the bad rows to OUT, reporting what was dropped."),
    force: bool = typer.Option(False, "--force", help="With --repair: replace OUT if it exists."),
) -> None:
    """Validate a data folder: schema, metadata, and every row."""
    from dv365.data.folder import locate
    from dv365.data.validate import DatasetReader, RowReport

    folder = locate(display_path(data))
    if repair is not None:
        _repair(folder, repair, force)
        return
    bad_total = 0
    for kind, path in folder.datasets():
        reader = DatasetReader(path, kind)
        report = RowReport()
        with progress(f"validating {kind}", reader.num_rows) as advance:
            for _ in reader.batches(repair=True, report=report, advance=advance):
                pass
        if report.ok:
            _print(f"{path}: OK: {report.rows_read:,} {kind} in {len(reader.files)} "
                   f"file{'s' if len(reader.files) != 1 else ''}")
            continue
        bad_total += report.rows_dropped
        _print(f"{path}: {report.rows_dropped:,} bad of {_rows(report.rows_read)} ({kind})")
        for reason, count in report.dropped.items():
            _print(f"  {reason}: {_rows(count)}")
        for problem in report.problems():
            stderr.print(problem.error().render(), highlight=False, markup=False,
                         soft_wrap=True)
    if bad_total:
        raise DataError(f"{_rows(bad_total)} bad", where=display_path(data),
                        hint="the first of each kind is listed above; "
                             "dv365 validate DATA --repair OUT writes a copy without them")


def _repair(folder, out: Path, force: bool) -> None:
    from dv365.atomic_write import staged_directory
    from dv365.data.validate import DatasetReader, repair_dataset

    bare = folder.datasets()[0][1] == folder.root
    reports = []
    with staged_directory(out, if_exists="replace" if force else "refuse") as stage:
        for kind, path in folder.datasets():
            dst = stage if bare else stage / path.name
            total = DatasetReader(path, kind).num_rows
            with progress(f"repairing {kind}", total) as advance:
                reports.append((kind, repair_dataset(path, dst, kind, advance=advance)))
        if folder.truth is not None:
            copy = shutil.copytree if folder.truth.is_dir() else shutil.copy2
            copy(folder.truth, stage / folder.truth.name)
    for kind, report in reports:
        _print(f"{kind}: kept {report.rows_kept:,} of {_rows(report.rows_read)}, "
               f"dropped {report.rows_dropped:,}")
        for reason, count in report.dropped.items():
            _print(f"  dropped {_rows(count)}: {reason}")
    _print(f"wrote {display_path(out)}")


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
