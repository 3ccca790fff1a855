"""Dataset folders are written all-or-nothing."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dv365.data.dataset import DatasetWriter, staged_output
from dv365.errors import UsageError

SCHEMA = pa.schema([("x", pa.int64())], metadata={b"k": b"v"})


def _table(n, start=0):
    return pa.table({"x": pa.array(range(start, start + n), pa.int64())})


def test_writer_rolls_files_and_keeps_metadata(tmp_path):
    with staged_output(tmp_path / "out") as stage:
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


def test_failure_leaves_previous_output_untouched(tmp_path):
    out = tmp_path / "out"
    with staged_output(out) as stage:
        (stage / "keep").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_output(out, overwrite=True) as stage:
            (stage / "keep").write_text("new")
            raise RuntimeError("interrupted")
    assert (out / "keep").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_refuses_to_overwrite_without_force(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(UsageError, match="already exists"):
        with staged_output(tmp_path / "out"):
            pass


def test_overwrite_replaces(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale").write_text("x")
    with staged_output(out, overwrite=True) as stage:
        (stage / "fresh").write_text("y")
    assert [p.name for p in out.iterdir()] == ["fresh"]
