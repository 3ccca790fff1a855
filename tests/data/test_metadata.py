"""A dataset file's declaration is read from its footer; every problem names the file."""

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dv365.data.metadata import one_line, read_footer, read_meta
from dv365.data.schema import DatasetMeta, events_schema
from dv365.errors import DataError


def test_the_declaration_and_row_count_come_from_the_footer(tmp_path):
    meta = DatasetMeta(kind="events", vocab={"action": ["like"]})
    schema = events_schema(meta)
    pq.write_table(schema.empty_table(), tmp_path / "e.parquet")
    rows, read_schema = read_footer(tmp_path / "e.parquet")
    assert rows == 0 and read_meta(tmp_path / "e.parquet", read_schema) == meta


@pytest.mark.parametrize("write,match", [
    (lambda p: pq.write_table(pa.table({"x": [1]}), p), "no dv365 metadata"),
    (lambda p: pq.write_table(pa.table({"x": [1]}).replace_schema_metadata(
        {b"dv365": b'{"kind": "logs"}'}), p), "invalid dv365 metadata: kind"),
    (lambda p: p.write_text("user_id,ts\n1,2\n"), "not a readable Parquet file"),
])
def test_problems_name_the_file(tmp_path, write, match):
    path = tmp_path / "f.parquet"
    write(path)
    with pytest.raises(DataError, match=match) as err:
        read_meta(path)
    assert err.value.where == str(path)


@pytest.mark.parametrize("declaration,match", [
    ({"kind": "events", "version": 999},
     "invalid dv365 metadata: version: version 999 is newer than this dv365 reads (version 1)"),
    ({"kind": "events", "version": 0}, "version 0 is not a dv365 metadata version"),
    ({"kind": "examples", "dense": ["hour", "age", "hour"]},
     "invalid dv365 metadata: dense: dense feature 'hour' is listed more than once"),
])
def test_declarations_this_version_cannot_read_are_refused(tmp_path, declaration, match):
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"x": [1]}).replace_schema_metadata(
        {b"dv365": json.dumps(declaration).encode()}), path)
    with pytest.raises(DataError, match=re.escape(match)) as err:
        read_meta(path)
    assert err.value.where == str(path)


def test_the_footers_two_copies_of_the_declaration_must_agree(tmp_path):
    path = tmp_path / "f.parquet"
    pq.write_table(events_schema(DatasetMeta(kind="events", source="test")).empty_table(), path)
    data = path.read_bytes()
    at = data.index(b'"source":"test"')  # the key-value copy; the other is in ARROW:schema
    path.write_bytes(data[:at] + b'"source":"tesu"' + data[at + 15:])
    with pytest.raises(DataError, match="two copies of the dv365 metadata differ") as err:
        read_footer(path)
    assert err.value.where == str(path)


def test_messages_are_one_line():
    assert one_line(ValueError("a\n  b\tc")) == "a b c"
    assert one_line(ValueError("")) == "ValueError"
