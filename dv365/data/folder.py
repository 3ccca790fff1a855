"""The data folder: where a dataset's files are and which dataset a path names.

A *data folder* ``DATA`` holds ``DATA/events/`` and ``DATA/examples/`` (each a Parquet dataset
folder of ``part-*.parquet`` files) and optionally ``DATA/truth/`` (the generator's ground
truth). Commands that take ``DATA`` also accept a bare events or examples dataset folder (or a
single Parquet file); its kind is read from its ``dv365`` metadata.

The files of a dataset are every ``*.parquet`` file below its folder (Hive-style partition
folders included), in lexicographic order of their relative paths; that order is the dataset's
*source order* (the timeline store's tie rule refers to it). Names starting with ``.`` or
``_`` (``_SUCCESS``, ``_metadata``, staging folders) are not data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dv365.data.metadata import one_line, read_meta
from dv365.data.schema import DatasetMeta
from dv365.errors import DataError, NotFoundError

EVENTS = "events"
EXAMPLES = "examples"
TRUTH = "truth"

DatasetKind = Literal["events", "examples"]


def dataset_files(path: str | os.PathLike) -> list[Path]:
    """The Parquet files of a dataset folder (or the file itself), in source order."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise NotFoundError("no such file or folder", where=str(path))
    files = []
    for folder, subfolders, names in os.walk(path, onerror=_unreadable, followlinks=True):
        subfolders[:] = [d for d in subfolders if not d.startswith((".", "_"))]
        files += [Path(folder, n) for n in names
                  if n.endswith(".parquet") and not n.startswith((".", "_"))
                  and Path(folder, n).is_file()]
    if not files:
        raise DataError("no Parquet files in this folder", where=str(path),
                        hint="a dataset folder holds part-*.parquet files")
    return sorted(files, key=lambda p: p.relative_to(path).as_posix())


def _unreadable(exc: OSError) -> None:
    # os.walk skips folders it cannot list; a dataset with a folder left out is not the dataset.
    reason = "permission denied" if isinstance(exc, PermissionError) else one_line(exc)
    raise DataError(f"cannot read this folder ({reason})", where=exc.filename or None) from None


@dataclass(frozen=True)
class DataFolder:
    """The datasets a path names: ``events`` and/or ``examples`` (None where absent)."""

    root: Path
    events: Path | None
    examples: Path | None
    truth: Path | None

    def datasets(self) -> list[tuple[DatasetKind, Path]]:
        """(kind, folder) of each dataset present, events first."""
        out: list[tuple[DatasetKind, Path]] = []
        if self.events is not None:
            out.append(("events", self.events))
        if self.examples is not None:
            out.append(("examples", self.examples))
        return out


def locate(path: str | os.PathLike) -> DataFolder:
    """Resolve ``path`` to a data folder, or to a bare events/examples dataset."""
    path = Path(path)
    if not path.exists():
        raise NotFoundError("no such file or folder", where=str(path))
    if path.is_dir():
        events, examples, truth = path / EVENTS, path / EXAMPLES, path / TRUTH
        if events.is_dir() or examples.is_dir():
            return DataFolder(path, events if events.is_dir() else None,
                              examples if examples.is_dir() else None,
                              truth if truth.exists() else None)
    kind = _declared_kind(dataset_files(path)[0])
    return DataFolder(path, path if kind == "events" else None,
                      path if kind == "examples" else None, None)


def _declared_kind(file: Path) -> DatasetKind:
    meta: DatasetMeta = read_meta(file)
    return meta.kind
