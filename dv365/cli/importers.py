"""``dv365 import``: turn real interaction logs into a dv365 data folder (events + examples)."""

from __future__ import annotations

from pathlib import Path

import typer

from dv365.console import stdout

import_app = typer.Typer(
    name="import",
    help="Import real logs (KuaiRand, MovieLens) into a data folder: OUT/events, OUT/examples.",
    no_args_is_help=True,
)

_SRC = typer.Argument(..., help="Folder (or file) holding the source logs.")
_OUT = typer.Argument(..., help="Data folder to write (events/ and examples/).")
_FORCE = typer.Option(False, "--force", help="Replace OUT if it exists.")


@import_app.command("kuairand")
def kuairand(src: Path = _SRC, out: Path = _OUT, force: bool = _FORCE) -> None:
    """KuaiRand logs (log_*.csv / log_*.parquet, optional video_features_basic*.csv)."""
    from dv365.data.importers.kuairand import import_kuairand

    summary = import_kuairand(src, out, overwrite=force)
    stdout.print(summary.describe(), highlight=False, markup=False, soft_wrap=True)


@import_app.command("movielens")
def movielens(src: Path = _SRC, out: Path = _OUT, force: bool = _FORCE) -> None:
    """MovieLens ratings (ratings.csv, ratings.dat or u.data; movies file optional)."""
    from dv365.data.importers.movielens import import_movielens

    summary = import_movielens(src, out, overwrite=force)
    stdout.print(summary.describe(), highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")
