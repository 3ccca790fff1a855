"""A real log mapped to UniTi columns, and writing it as a dv365 data folder.

Every importer ends the same way: NumPy columns for the events and the examples, enumerated
columns as integer codes into candidate vocabularies. :func:`write_data_folder` keeps only the
vocabulary values the data uses (so each dataset declares what it holds, not what the importer
could have written), sorts events and examples by ``(user_id, time)`` and writes
``OUT/events/`` and ``OUT/examples/`` atomically.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa

from dv365.atomic_write import staged_directory
from dv365.data.dataset import DatasetWriter
from dv365.durations import moment_text
from dv365.data.schema import (
    TS_TYPE,
    VOCAB_COLUMNS,
    DatasetMeta,
    dense_column,
    events_schema,
    examples_schema,
    label_column,
)

EVENTS_FOLDER = "events"
EXAMPLES_FOLDER = "examples"

# The author_id of an item whose log names no author. Real logs number authors from 0
# (KuaiRand has an author 0), so an unknown author must not be a number one of them could have;
# slices and the model see all such items as one author, -1, that no real item shares.
UNKNOWN_AUTHOR = -1


@dataclass
class ImportedLog:
    """UniTi columns of an imported log, before sorting and writing.

    ``events`` holds ``user_id``, ``ts`` (int64 ms UTC), ``timeline`` (0 explicit, 1 implicit),
    ``media_id``, ``author_id``, ``topic_id``, ``media_type``, ``surface``, ``action`` (codes
    into ``vocab``, -1 for null), ``video_duration`` and ``dwell_time`` (float32 seconds, NaN
    for null). ``examples`` holds ``user_id``, ``request_ts`` (int64 ms), the target item's
    ``media_id``/``author_id``/``topic_id``/``media_type``/``surface``, ``dense_<name>`` for
    each of ``dense`` and ``label_<task>`` for each of ``tasks``. ``notes`` are what the user
    should know about how the log was mapped (a column it lacked, what was put in its place).
    """

    source: str
    vocab: dict[str, list[str]]
    events: dict[str, np.ndarray]
    examples: dict[str, np.ndarray]
    tasks: dict[str, Literal["binary", "regression"]]
    dense: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImportSummary:
    """What an import wrote, for the command's report."""

    out: Path
    users: int
    events: int
    explicit_events: int
    examples: int
    first_ts: int | None
    last_ts: int | None
    vocab: dict[str, list[str]]
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        def day(ms: int | None) -> str:
            if ms is None:
                return "-"
            return moment_text(ms, "day")

        return (f"{self.out}: {self.users:,} users, {self.events:,} events "
                f"({self.explicit_events:,} explicit), {self.examples:,} examples, "
                f"{day(self.first_ts)} .. {day(self.last_ts)}")


def write_data_folder(log: ImportedLog, out: str | os.PathLike, *,
                      overwrite: bool = False) -> ImportSummary:
    """Write ``log`` as ``out/events`` and ``out/examples`` (all or nothing)."""
    vocab = _prune_vocab(log)
    events_meta = DatasetMeta(kind="events", vocab=vocab, source=log.source)
    examples_meta = DatasetMeta(kind="examples", vocab=vocab, tasks=dict(log.tasks),
                                dense=list(log.dense), source=log.source)
    with staged_directory(out, if_exists="replace" if overwrite else "refuse") as stage:
        # Examples are built and written on a second thread while events are: NumPy gathers
        # and the Parquet encoder release the GIL, so the two cores share the work.
        with ThreadPoolExecutor(max_workers=1) as pool:
            events_order = user_time_order(log.events["user_id"], log.events["ts"])
            if (log.examples["user_id"] is log.events["user_id"]
                    and log.examples["request_ts"] is log.events["ts"]):
                examples_order = events_order  # one example per event (MovieLens): same order
            else:
                examples_order = user_time_order(log.examples["user_id"],
                                                 log.examples["request_ts"])
            examples_written = pool.submit(lambda: _write(
                stage / EXAMPLES_FOLDER,
                _examples_table(log.examples, examples_order, examples_meta)))
            events = _events_table(log.events, events_order, events_meta)
            _write(stage / EVENTS_FOLDER, events)
            examples_written.result()
    users = events.column("user_id").to_numpy()
    ts = log.events["ts"]
    return ImportSummary(
        out=Path(out),
        users=int(np.count_nonzero(users[1:] != users[:-1]) + 1) if users.size else 0,
        events=int(ts.size),
        explicit_events=int(np.count_nonzero(log.events["timeline"] == 0)),
        examples=int(log.examples["user_id"].size),
        first_ts=int(ts.min()) if ts.size else None,
        last_ts=int(ts.max()) if ts.size else None,
        vocab=vocab,
        notes=tuple(log.notes),
    )


def _write(folder: Path, table: pa.Table) -> None:
    with DatasetWriter(folder, table.schema) as writer:
        writer.write(table)


def _prune_vocab(log: ImportedLog) -> dict[str, list[str]]:
    """Drop unused values from each vocabulary and renumber the codes in place."""
    pruned: dict[str, list[str]] = {}
    for column in VOCAB_COLUMNS:
        candidates = log.vocab.get(column, [])
        holders = [cols for cols in (log.events, log.examples) if column in cols]
        used = np.zeros(len(candidates), dtype=bool)
        for cols in holders:
            codes = cols[column]
            used |= np.bincount(codes[codes >= 0], minlength=len(candidates))[:len(candidates)] > 0
        pruned[column] = [v for v, keep in zip(candidates, used) if keep]
        if used.all():
            continue  # codes already index the kept values
        remap = np.full(len(candidates), -1, dtype=np.int64)
        remap[used] = np.arange(int(used.sum()))
        for cols in holders:
            codes = cols[column]
            cols[column] = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
    return pruned


def _enum(codes: np.ndarray, values: list[str]) -> pa.DictionaryArray:
    codes = np.asarray(codes)
    indices = pa.array(codes.astype(np.int32), mask=codes < 0)
    return pa.DictionaryArray.from_arrays(indices, pa.array(values, pa.string()))


def _int64(x: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(x, dtype=np.int64))


def _seconds(x: np.ndarray) -> pa.Array:
    x = np.asarray(x, dtype=np.float32)
    return pa.array(x, mask=np.isnan(x))


def _time(ms: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(ms, dtype=np.int64)).cast(TS_TYPE)


def side_table_positions(ids: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, int | None]:
    """Where each key sits in a side table's sorted, unique ``ids`` (videos, movies), and the
    index of the first key the table lacks (``None`` when all are there)."""
    at = np.searchsorted(ids, keys)
    found = at < ids.size
    found[found] = ids[at[found]] == keys[found]
    missing = None if found.all() else int(np.flatnonzero(~found)[0])
    return at, missing


def user_time_order(user: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """The stable permutation sorting rows by ``(user, ts)``; ties keep their input order."""
    user = np.asarray(user, dtype=np.int64)
    ts = np.asarray(ts, dtype=np.int64)
    if user.size == 0:
        return np.zeros(0, dtype=np.int64)
    u_min, u_max = int(user.min()), int(user.max())
    t_min, t_max = int(ts.min()), int(ts.max())
    span = t_max - t_min + 1
    if (u_max - u_min + 1) * span < 2**63:
        # One int64 key sorts about ten times faster than np.lexsort over two.
        key = (user - u_min) * span + (ts - t_min)
        return np.argsort(key, kind="stable")
    return np.lexsort((ts, user))


def _events_table(cols: dict[str, np.ndarray], order: np.ndarray,
                  meta: DatasetMeta) -> pa.Table:
    c = {name: values[order] for name, values in cols.items()}
    arrays = {
        "user_id": _int64(c["user_id"]),
        "ts": _time(c["ts"]),
        "timeline": _enum(c["timeline"], list(meta.values("timeline"))),
        "media_id": _int64(c["media_id"]),
        "author_id": _int64(c["author_id"]),
        "topic_id": _int64(c["topic_id"]),
        "media_type": _enum(c["media_type"], meta.vocab["media_type"]),
        "surface": _enum(c["surface"], meta.vocab["surface"]),
        "action": _enum(c["action"], meta.vocab["action"]),
        "video_duration": _seconds(c["video_duration"]),
        "dwell_time": _seconds(c["dwell_time"]),
    }
    schema = events_schema(meta)
    return pa.Table.from_arrays([arrays[f.name] for f in schema], schema=schema)


def _examples_table(cols: dict[str, np.ndarray], order: np.ndarray,
                    meta: DatasetMeta) -> pa.Table:
    c = {name: values[order] for name, values in cols.items()}
    arrays = {
        "user_id": _int64(c["user_id"]),
        "request_ts": _time(c["request_ts"]),
        "media_id": _int64(c["media_id"]),
        "author_id": _int64(c["author_id"]),
        "topic_id": _int64(c["topic_id"]),
        "media_type": _enum(c["media_type"], meta.vocab["media_type"]),
        "surface": _enum(c["surface"], meta.vocab["surface"]),
    }
    for name in meta.dense:
        arrays[dense_column(name)] = pa.array(np.asarray(c[dense_column(name)], np.float32))
    for task, kind in meta.tasks.items():
        dtype = np.int8 if kind == "binary" else np.float32
        arrays[label_column(task)] = pa.array(np.asarray(c[label_column(task)], dtype))
    schema = examples_schema(meta)
    return pa.Table.from_arrays([arrays[f.name] for f in schema], schema=schema)
