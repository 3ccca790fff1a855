"""A dataset file's declaration is read from its footer; every problem names the file."""

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


def test_messages_are_one_line():
    assert one_line(ValueError("a\n  b\tc")) == "a b c"
    assert one_line(ValueError("")) == "ValueError"
