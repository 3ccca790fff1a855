"""The landing folder: new data waiting to be added to a data folder.

A landing folder ``INCOMING`` holds *batches*, one folder each (``INCOMING/ext-20260101-1d/``),
laid out like a data folder: ``events/`` and/or ``examples/`` of Parquet files whose names
are new to the data folder, plus anything else (``extension.json``) that is not data.
Writers create a batch atomically (a hidden staging folder renamed into place), so a batch
that is there is complete. ``dv365 synth --extend`` writes batches; ``dv365 pipeline``
collects them, in name order, into the data folder's ``events/`` and ``examples/``.
"""

from __future__ import annotations

from pathlib import Path

from dv365.data.folder import EVENTS, EXAMPLES, DatasetKind, dataset_files

DATASETS: tuple[DatasetKind, ...] = (EVENTS, EXAMPLES)


def landing_batches(incoming: Path) -> list[Path]:
    """The batch folders waiting in a landing folder, in name order (hidden and ``_`` names
    are staging or bookkeeping, not batches)."""
    if not incoming.is_dir():
        return []
    return sorted(p for p in incoming.iterdir()
                  if p.is_dir() and not p.name.startswith((".", "_")))


def batch_datasets(batch: Path) -> list[tuple[DatasetKind, Path]]:
    """``(kind, folder)`` of the datasets a batch holds."""
    return [(kind, batch / kind) for kind in DATASETS if (batch / kind).is_dir()]


def batch_files(batch: Path) -> list[tuple[DatasetKind, Path]]:
    """``(kind, file)`` of every Parquet file of a batch, events first."""
    return [(kind, file) for kind, folder in batch_datasets(batch)
            for file in dataset_files(folder)]
