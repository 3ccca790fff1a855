"""``dv365 import``: turn real interaction logs into a dv365 data folder (events + examples)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dv365.console import stderr, stdout

import_app = typer.Typer(
    name="import",
    help="Import real logs (KuaiRand, MovieLens) into a data folder: OUT/events, OUT/examples.",
    no_args_is_help=True,
)

_SRC = typer.Argument(..., help="Folder (or file) holding the source logs.")
_OUT = typer.Argument(..., help="Data folder to write (events/ and examples/).")
_FORCE = typer.Option(False, "--force", help="Replace OUT if it exists.")
_DELIMITER = typer.Option(
    None, "--delimiter",
    help="Delimiter of the text logs: one character, '\\t' or tab, or '::' "
         "(default: sniffed per file; side files are always sniffed).")


@import_app.command("kuairand")
def kuairand(src: Path = _SRC, out: Path = _OUT, force: bool = _FORCE,
             delimiter: Optional[str] = _DELIMITER) -> None:
    """KuaiRand logs (*.csv, *.tsv, *.parquet; optional video_features_basic* side file)."""
    from dv365.data.importers.kuairand import import_kuairand

    _report(import_kuairand(src, out, overwrite=force, delimiter=delimiter))


@import_app.command("movielens")
def movielens(src: Path = _SRC, out: Path = _OUT, force: bool = _FORCE,
              delimiter: Optional[str] = _DELIMITER) -> None:
    """MovieLens ratings (ratings.csv, ratings.dat or u.data; movies file optional)."""
    from dv365.data.importers.movielens import import_movielens

    _report(import_movielens(src, out, overwrite=force, delimiter=delimiter))


def _report(summary) -> None:
    for note in summary.notes:
        stderr.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
    stdout.print(summary.describe(), highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")
