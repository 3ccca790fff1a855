"""Collecting landed batches into the data folder (the pipeline's first step).

Every batch of the landing folder (:mod:`dv365.data.landing`) is validated whole before any
file of it moves: every row (:func:`dv365.data.validate.validate_dataset`) and its ``dv365``
metadata against the data folder's (same vocabularies, tasks, dense features). Then each file
is moved to the data folder under its own name, one file at a time and atomically (a copy to
a hidden sibling, synced, renamed into place, then the landed file removed), so a kill at
any point leaves each file either still landed or in place, never half of one; a rerun
finishes the move. A name the data folder holds already is refused unless it is the same
bytes (a move cut short after the rename). Batches are collected in name order; existing
files of the data folder are never rewritten.
"""

from __future__ import annotations

import filecmp
import shutil
from dataclasses import dataclass
from pathlib import Path

from dv365.atomic_write import atomic_path
from dv365.data.folder import TRUTH, dataset_files
from dv365.data.landing import batch_datasets, batch_files, landing_batches
from dv365.data.metadata import read_meta
from dv365.data.validate import validate_dataset
from dv365.errors import DataError
from dv365.paths import display_path


@dataclass(frozen=True)
class Collected:
    """What one collection moved."""

    batches: list[str]
    files: int
    rows: dict[str, int]


def planned_files(data: Path, landing: Path) -> list[list]:
    """``[relative path, size]`` of every data file once the landed batches are collected:
    the same list before, during and after a collection (a step's inputs)."""
    files = {}
    for kind in ("events", "examples"):
        if (data / kind).is_dir():
            for file in dataset_files(data / kind):
                files[file.relative_to(data).as_posix()] = file.stat().st_size
    for batch in landing_batches(landing):
        for kind, file in batch_files(batch):
            files[f"{kind}/{file.name}"] = file.stat().st_size
    return [[name, size] for name, size in sorted(files.items())]


def collect(data: Path, landing: Path) -> Collected:
    """Validate and move every landed batch into ``data`` (see the module docstring)."""
    batches = landing_batches(landing)
    rows = {"events": 0, "examples": 0}
    for batch in batches:
        for kind, folder in batch_datasets(batch):
            rows[kind] += _check(data, kind, folder)
    moved = 0
    for batch in batches:
        for kind, file in batch_files(batch):
            _move(file, data / kind / file.name)
            moved += 1
        record = batch / "extension.json"
        if record.is_file() and (data / TRUTH).is_dir():
            _move(record, data / TRUTH / "extensions" / f"{batch.name}.json")
        shutil.rmtree(batch)
    return Collected([b.name for b in batches], moved, rows)


def _check(data: Path, kind: str, folder: Path) -> int:
    reader, report = validate_dataset(folder, kind)
    if not report.ok:
        first = report.problems()[0] if report.problems() else None
        raise DataError(f"{report.rows_dropped:,} bad {kind} row(s) in a landed batch"
                        + (f", first: {first}" if first else ""), where=display_path(folder),
                        hint="fix or remove the batch; nothing was collected")
    existing = dataset_files(data / kind)
    if read_meta(existing[0]) != reader.meta:
        raise DataError(f"the landed {kind} declare other dv365 metadata (vocabularies, tasks "
                        f"or dense features) than {display_path(data / kind)}",
                        where=display_path(reader.files[0]),
                        hint="a batch must extend the dataset it lands in")
    return report.rows_read


def _move(source: Path, target: Path) -> None:
    if target.exists():
        if not filecmp.cmp(source, target, shallow=False):
            raise DataError(f"{display_path(target)} exists with other content",
                            where=display_path(source),
                            hint="landed files must have names new to the data folder")
    else:
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
    source.unlink()
