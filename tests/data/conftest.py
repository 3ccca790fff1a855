"""Small writers of real events/examples Parquet files for the data tests.

Columns are given in their *external* form, as a user's file holds them: strings for enums,
``None`` for nulls, ``ts`` as int milliseconds. The helpers build Arrow tables with the
canonical schema (or one the test passes) and write them with plain ``pyarrow.parquet``, so
the code under test never writes its own inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dv365.data.schema import (
    DEFAULT_BINARY_TASKS,
    DEFAULT_VOCAB,
    TS_MIN_MS,
    DatasetMeta,
    events_schema,
    examples_schema,
)

EVENTS_META = DatasetMeta(kind="events", vocab=DEFAULT_VOCAB, source="test")
EXAMPLES_META = DatasetMeta(
    kind="examples",
    vocab={k: v for k, v in DEFAULT_VOCAB.items() if k != "action"},
    tasks={**{t: "binary" for t in DEFAULT_BINARY_TASKS}, "watch_time": "regression"},
    dense=["hour"],
    source="test",
)
T0 = TS_MIN_MS + 20 * 365 * 86_400_000  # around 2020


def good_events(n: int, seed: int = 0, users: int = 5) -> dict[str, list]:
    """``n`` valid events in external form, sorted by (user, ts)."""
    rng = np.random.default_rng(seed)
    user = np.sort(rng.integers(1, users + 1, n))
    ts = T0 + rng.integers(0, 10_000_000, n)
    order = np.lexsort((ts, user))
    user, ts = user[order], ts[order]
    implicit = rng.random(n) < 0.7
    media = rng.choice(DEFAULT_VOCAB["media_type"], n)
    duration = np.round(rng.uniform(5, 120, n), 1)
    return {
        "user_id": user.tolist(),
        "ts": ts.tolist(),
        "timeline": ["implicit" if i else "explicit" for i in implicit],
        "media_id": rng.integers(0, 1000, n).tolist(),
        "author_id": rng.integers(0, 100, n).tolist(),
        "topic_id": rng.integers(0, 10, n).tolist(),
        "media_type": media.tolist(),
        "surface": rng.choice(DEFAULT_VOCAB["surface"], n).tolist(),
        "action": [None if i else str(a) for i, a in
                   zip(implicit, rng.choice(DEFAULT_VOCAB["action"], n))],
        "video_duration": [float(d) if m == "video" else None for d, m in zip(duration, media)],
        "dwell_time": [float(round(d * 0.5, 1)) if i else None
                       for d, i in zip(duration, implicit)],
    }


def good_examples(n: int, seed: int = 0, users: int = 5) -> dict[str, list]:
    """``n`` valid examples in external form."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {
        "user_id": np.sort(rng.integers(1, users + 1, n)).tolist(),
        "request_ts": (T0 + rng.integers(0, 10_000_000, n)).tolist(),
        "media_id": rng.integers(0, 1000, n).tolist(),
        "author_id": rng.integers(0, 100, n).tolist(),
        "topic_id": rng.integers(0, 10, n).tolist(),
        "media_type": rng.choice(DEFAULT_VOCAB["media_type"], n).tolist(),
        "surface": rng.choice(DEFAULT_VOCAB["surface"], n).tolist(),
        "dense_hour": rng.uniform(0, 24, n).astype(np.float32).tolist(),
    }
    for task, kind in EXAMPLES_META.tasks.items():
        cols[f"label_{task}"] = (rng.integers(0, 2, n).tolist() if kind == "binary"
                                 else rng.uniform(0, 60, n).astype(np.float32).tolist())
    return cols


def table(cols: dict[str, list], schema: pa.Schema) -> pa.Table:
    """An Arrow table of ``cols`` with ``schema`` (columns in the schema's order).

    Every field is made nullable, as in files from other tools, so tests can write nulls.
    """
    schema = pa.schema([f.with_nullable(True) for f in schema], metadata=schema.metadata)
    return pa.table({f.name: pa.array(cols[f.name], type=f.type) for f in schema},
                     schema=schema)


def write_parquet(path: Path, tbl: pa.Table, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(tbl, path, **kwargs)
    return path


def write_dataset(folder: Path, cols: dict[str, list], schema: pa.Schema, *,
                  files: int = 1) -> Path:
    """Write ``cols`` as ``files`` consecutive part files (part-00000.parquet, ...)."""
    tbl = table(cols, schema)
    bounds = np.linspace(0, tbl.num_rows, files + 1).astype(int)
    for k in range(files):
        write_parquet(folder / f"part-{k:05d}.parquet",
                      tbl.slice(bounds[k], bounds[k + 1] - bounds[k]))
    return folder


def write_events(folder: Path, cols: dict[str, list], *, files: int = 1,
                 meta: DatasetMeta = EVENTS_META) -> Path:
    return write_dataset(folder, cols, events_schema(meta), files=files)


def write_examples(folder: Path, cols: dict[str, list], *, files: int = 1,
                   meta: DatasetMeta = EXAMPLES_META) -> Path:
    return write_dataset(folder, cols, examples_schema(meta), files=files)


def with_value(cols: dict[str, list], column: str, row: int, value) -> dict[str, list]:
    """A copy of ``cols`` with one cell changed."""
    out = {k: list(v) for k, v in cols.items()}
    out[column][row] = value
    return out


@pytest.fixture
def data_folder(tmp_path) -> Path:
    """A valid data folder: 2 files of events (500 rows), 1 file of examples (200 rows)."""
    root = tmp_path / "data"
    write_events(root / "events", good_events(500, seed=1), files=2)
    write_examples(root / "examples", good_examples(200, seed=2))
    return root
