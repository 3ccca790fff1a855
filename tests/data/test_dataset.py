"""Parquet dataset folders: files rolled by row count, the schema metadata on every file."""

import pyarrow as pa
import pyarrow.parquet as pq

from dv365.atomic_write import staged_directory
from dv365.data.dataset import DatasetWriter

SCHEMA = pa.schema([("x", pa.int64())], metadata={b"k": b"v"})


def _table(n, start=0):
    return pa.table({"x": pa.array(range(start, start + n), pa.int64())})


def test_writer_rolls_files_and_keeps_metadata(tmp_path):
    with staged_directory(tmp_path / "out") as stage:
        with DatasetWriter(stage / "d", SCHEMA, rows_per_file=4, row_group_size=2) as w:
            w.write(_table(10))
    files = sorted((tmp_path / "out" / "d").glob("*.parquet"))
    assert [pq.read_metadata(f).num_rows for f in files] == [4, 4, 2]
    assert pq.read_schema(files[0]).metadata[b"k"] == b"v"
    assert pq.read_table(tmp_path / "out" / "d").column("x").to_pylist() == list(range(10))


def test_empty_dataset_still_has_a_schema_file(tmp_path):
    with DatasetWriter(tmp_path / "d", SCHEMA) as w:
        pass
    assert w.files and pq.read_schema(w.files[0]).names == ["x"]
