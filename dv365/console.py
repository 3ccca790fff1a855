"""The terminal: one stderr console for messages and progress bars.

Progress goes to stderr so that command output on stdout stays pipeable; bars disappear when
stderr is not a terminal (CI logs stay readable).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

stderr = Console(stderr=True)
stdout = Console()


@contextmanager
def progress(description: str, total: float | None) -> Iterator[callable]:
    """A progress bar for a long step; yields ``advance(n)``."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
