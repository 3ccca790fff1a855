"""Validation on read: every bad input gives one clear error naming file, row and column."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dv365.data.folder import locate
from dv365.data.schema import EVENT_FIELDS, METADATA_KEY, TS_TYPE, events_schema
from dv365.data.validate import DatasetReader, repair_dataset, validate_dataset
from dv365.errors import DataError, NotFoundError
from tests.data.bit_rot import events_file, flip_run
from tests.data.conftest import (
    EVENTS_META,
    EXAMPLES_META,
    T0,
    good_events,
    good_examples,
    table,
    with_value,
    write_events,
    write_examples,
    write_parquet,
)

N = 400


def _rows(cols, timeline):
    return [i for i, t in enumerate(cols["timeline"]) if t == timeline]


@pytest.fixture(scope="module")
def cols():
    return good_events(N, seed=3)


def read_all(path, kind="events", **kwargs):
    reader = DatasetReader(path, kind, **kwargs)
    return reader, list(reader.batches())


def test_good_events_read_in_internal_form(tmp_path, cols):
    reader, batches = read_all(write_events(tmp_path / "ev", cols, files=3))
    assert reader.num_rows == N and [b.file.name for b in batches] == [
        "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    c = {k: np.concatenate([b.columns[k] for b in batches]) for k in batches[0].columns}
    assert c["ts"].dtype == np.int64 and c["ts"].tolist() == cols["ts"]
    assert c["timeline"].tolist() == [0 if t == "explicit" else 1 for t in cols["timeline"]]
    vocab = EVENTS_META.vocab["action"]
    assert c["action"].tolist() == [-1 if a is None else vocab.index(a) for a in cols["action"]]
    assert np.array_equal(np.isnan(c["video_duration"]),
                          [d is None for d in cols["video_duration"]])
    assert c["dwell_time"].dtype == np.float32


BAD_EVENT_CELLS = [
    # (column, value, which rows, expected message)
    ("dwell_time", -3.0, "implicit", "negative value -3.0"),
    ("video_duration", float("inf"), "implicit", "non-finite value inf"),
    ("dwell_time", float("nan"), "implicit", "non-finite value nan"),
    ("dwell_time", None, "implicit", "null dwell_time on an implicit row"),
    ("ts", 1_000, "any", "outside the sane range"),
    ("ts", 4_200_000_000_000, "any", "outside the sane range"),
    ("action", "likee", "explicit", "not declared in the vocabulary of 'action'; "
                                    "did you mean 'like'?"),
    ("surface", "television", "any", "not declared in the vocabulary of 'surface' "
                                     "(reels, feed, stories, explore)"),
    ("timeline", "explict", "any", "did you mean 'explicit'?"),
    ("action", None, "explicit", "null action on an explicit row"),
    ("action", "like", "implicit", "action on an implicit row"),
    ("user_id", None, "any", "null value in a required column"),
    ("media_type", None, "any", "null value in a required column"),
]


@pytest.mark.parametrize("column, value, rows, message", BAD_EVENT_CELLS,
                         ids=[f"{c}={v}" for c, v, _, _ in BAD_EVENT_CELLS])
def test_bad_cell_names_file_row_and_column(tmp_path, cols, column, value, rows, message):
    candidates = range(N) if rows == "any" else _rows(cols, rows)
    row = [r for r in candidates if r >= 250][0]  # in the second of two files (rows 200..399)
    folder = write_events(tmp_path / "ev", with_value(cols, column, row, value), files=2)
    with pytest.raises(DataError) as err:
        read_all(folder, batch_rows=64)  # several batches per file: row numbers must add up
    text = err.value.render()
    assert text.startswith(f"{folder}/part-00001.parquet: row {row - 200}: column {column!r}: "
                           f"error: "), text
    assert message in text
    assert "\n" not in text


def test_second_micro_and_nanosecond_timestamps_with_any_zone_become_ms(tmp_path, cols):
    ms = np.array(cols["ts"])
    cases = [("s", None, ms // 1000, ms // 1000 * 1000),  # whole seconds
             ("us", "UTC", ms * 1000 + 999, ms),  # sub-millisecond part floored
             ("ns", "Asia/Tokyo", ms * 10**6 + 7, ms)]  # a zone does not move the instant
    for unit, tz, raw, want in cases:
        schema = events_schema(EVENTS_META)
        schema = schema.set(schema.get_field_index("ts"), pa.field("ts", pa.timestamp(unit, tz)))
        path = write_parquet(tmp_path / unit / "part-0.parquet",
                             table(dict(cols, ts=raw.tolist()), schema))
        _, [batch] = read_all(path)
        assert batch.columns["ts"].tolist() == want.tolist(), unit


def test_narrow_ints_and_plain_strings_are_accepted(tmp_path, cols):
    schema = events_schema(EVENTS_META)
    for name, typ in [("media_id", pa.int32()), ("topic_id", pa.uint16()),
                      ("surface", pa.string()), ("action", pa.large_string()),
                      ("dwell_time", pa.float64()), ("video_duration", pa.float16())]:
        schema = schema.set(schema.get_field_index(name), pa.field(name, typ))
    path = write_parquet(tmp_path / "part-0.parquet", table(cols, schema))
    _, [batch] = read_all(path)
    assert batch.columns["media_id"].dtype == np.int64
    assert batch.columns["media_id"].tolist() == cols["media_id"]
    assert batch.columns["surface"].tolist() == [
        EVENTS_META.vocab["surface"].index(s) for s in cols["surface"]]


@pytest.mark.parametrize("column, typ, message", [
    ("user_id", pa.float64(), "mistyped column: expected int64, found double"),
    ("media_id", pa.uint64(), "expected int64, found uint64"),
    ("ts", pa.int64(), "expected timestamp[ms, tz=UTC], found int64 (store times as "
                       "timestamp[ms, tz=UTC]"),
    ("dwell_time", pa.string(), "expected float32 seconds, found string"),
    ("surface", pa.int8(), "expected string or dictionary<string>, found int8"),
])
def test_mistyped_column(tmp_path, cols, column, typ, message):
    schema = events_schema(EVENTS_META)
    schema = schema.set(schema.get_field_index(column), pa.field(column, typ))
    c = dict(cols)
    if typ == pa.string():
        c[column] = [None if v is None else str(v) for v in c[column]]
    if column == "surface":
        c[column] = [0] * N
    path = write_parquet(tmp_path / "part-0.parquet", table(c, schema))
    with pytest.raises(DataError) as err:
        DatasetReader(tmp_path, "events")
    text = err.value.render()
    assert text.startswith(f"{path}: column {column!r}: error: mistyped column: "), text
    assert message in text


def test_missing_column(tmp_path, cols):
    tbl = table(cols, events_schema(EVENTS_META)).drop_columns(["topic_id"])
    path = write_parquet(tmp_path / "part-0.parquet", tbl)
    with pytest.raises(DataError, match="missing column") as err:
        DatasetReader(tmp_path, "events")
    assert err.value.where == f"{path}: column 'topic_id'"


def test_duplicated_column_is_named_as_such(tmp_path, cols):
    tbl = table(cols, events_schema(EVENTS_META))
    tbl = tbl.append_column(pa.field("user_id", pa.int64()), tbl.column("user_id"))
    path = write_parquet(tmp_path / "part-0.parquet", tbl)
    with pytest.raises(DataError, match="duplicated column: 2 columns are named 'user_id'") as err:
        DatasetReader(tmp_path, "events")
    assert err.value.where == f"{path}: column 'user_id'"


def test_extra_columns_are_ignored(tmp_path, cols):
    tbl = table(cols, events_schema(EVENTS_META)).append_column("note", pa.array(["x"] * N))
    write_parquet(tmp_path / "part-0.parquet", tbl)
    _, [batch] = read_all(tmp_path)
    assert "note" not in batch.columns and set(batch.columns) == set(EVENT_FIELDS)


def test_not_parquet_is_one_line_naming_the_file(tmp_path, cols):
    write_events(tmp_path, cols, files=2)
    (tmp_path / "part-00001.parquet").write_bytes(b"user_id,ts\n1,2\n" * 50)
    with pytest.raises(DataError) as err:
        DatasetReader(tmp_path, "events")
    text = err.value.render()
    assert text.startswith(f"{tmp_path}/part-00001.parquet: error: not a readable Parquet file")
    assert "\n" not in text


def test_truncated_parquet_file(tmp_path, cols):
    path = write_events(tmp_path, cols) / "part-00000.parquet"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="not a readable Parquet file"):
        DatasetReader(tmp_path, "events")


def _schema_with_metadata(metadata):
    return events_schema(EVENTS_META).with_metadata(metadata)


@pytest.mark.parametrize("metadata, message", [
    ({}, "no dv365 metadata in the Parquet schema"),
    ({METADATA_KEY: b"{not json"}, "invalid dv365 metadata"),
    ({METADATA_KEY: json.dumps({"kind": "events", "vocab": {"colour": ["red"]}}).encode()},
     "invalid dv365 metadata: vocab: vocab for unknown column 'colour'"),
    ({METADATA_KEY: json.dumps({"kind": "examples", "vocab": {}}).encode()},
     "this is an examples dataset, expected events"),
    ({METADATA_KEY: json.dumps({"kind": "events", "vocab": {"surface": ["feed"]}}).encode()},
     "dv365 metadata declares no vocabulary for column 'media_type'"),
])
def test_bad_metadata(tmp_path, cols, metadata, message):
    path = write_parquet(tmp_path / "part-0.parquet", table(cols, _schema_with_metadata(metadata)))
    with pytest.raises(DataError) as err:
        DatasetReader(tmp_path, "events")
    assert err.value.render().startswith(f"{path}: error: {message}")


def test_files_must_agree_on_metadata(tmp_path, cols):
    write_events(tmp_path, cols)
    other = EVENTS_META.model_copy(update={"vocab": {**EVENTS_META.vocab, "surface": ["feed"]}})
    write_parquet(tmp_path / "part-00001.parquet",
                  table(dict(cols, surface=["feed"] * N), events_schema(other)))
    with pytest.raises(DataError, match="metadata differs from that of") as err:
        DatasetReader(tmp_path, "events")
    assert err.value.where == str(tmp_path / "part-00001.parquet")


def test_empty_folder_and_missing_path(tmp_path):
    with pytest.raises(DataError, match="no Parquet files"):
        DatasetReader(tmp_path, "events")
    with pytest.raises(NotFoundError, match="no such file"):
        DatasetReader(tmp_path / "nope", "events")


def test_an_unreadable_folder_is_reported_as_unreadable(tmp_path, cols, monkeypatch):
    folder = write_events(tmp_path / "ev" / "inner", cols).parent
    listing = os.scandir

    def scandir(path="."):
        # what a folder without read permission does (chmod alone does not stop root)
        if Path(path) == folder / "inner":
            raise PermissionError(13, "Permission denied", str(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(DataError, match=r"cannot read this folder \(permission denied\)") as err:
        DatasetReader(folder, "events")
    assert err.value.where == str(folder / "inner")


def test_repair_drops_bad_rows_and_counts_each_reason(tmp_path, cols):
    implicit, explicit = _rows(cols, "implicit"), _rows(cols, "explicit")
    bad = with_value(cols, "dwell_time", implicit[0], -1.0)
    bad = with_value(bad, "dwell_time", implicit[1], -2.0)
    bad = with_value(bad, "action", explicit[0], "lik")
    bad = with_value(bad, "ts", implicit[2], 5)
    bad = with_value(bad, "dwell_time", implicit[2], -1.0)  # two problems, counted once
    src = write_events(tmp_path / "src", bad, files=2)
    _, found = validate_dataset(src, "events")
    assert found.dropped == {"dwell_time: negative": 2, "action: not declared": 1,
                             "ts: out of range": 1}
    assert found.rows_dropped == 4 and found.rows_read == N
    report = repair_dataset(src, tmp_path / "dst", "events")
    assert report.dropped == found.dropped
    reader, rep = validate_dataset(tmp_path / "dst", "events")
    assert rep.ok and reader.num_rows == N - 4 and reader.meta == EVENTS_META
    dropped = {implicit[0], implicit[1], explicit[0], implicit[2]}
    keep = [i for i in range(N) if i not in dropped]
    _, batches = read_all(tmp_path / "dst")
    got = np.concatenate([b.columns["media_id"] for b in batches])
    assert got.tolist() == [cols["media_id"][i] for i in keep]
    first = found.first["action: not declared"]
    assert first.row == explicit[0] - (0 if explicit[0] < 200 else 200)
    assert "did you mean 'like'?" in first.message


def test_good_examples(tmp_path):
    cols = good_examples(100)
    reader, [batch] = read_all(write_examples(tmp_path, cols), "examples")
    assert batch.columns["label_like"].dtype == np.int8
    assert batch.columns["label_watch_time"].dtype == np.float32
    assert batch.columns["request_ts"].tolist() == cols["request_ts"]
    assert reader.meta == EXAMPLES_META


@pytest.mark.parametrize("column, value, message", [
    ("label_like", 2, "binary label value 2 is not 0 or 1"),
    ("label_watch_time", float("nan"), "non-finite value nan"),
    ("dense_hour", float("-inf"), "non-finite value -inf"),
    ("request_ts", 123, "outside the sane range"),
    ("surface", "Feed", "did you mean 'feed'?"),
])
def test_bad_examples(tmp_path, column, value, message):
    folder = write_examples(tmp_path, with_value(good_examples(100), column, 42, value))
    with pytest.raises(DataError) as err:
        read_all(folder, "examples")
    assert err.value.where == f"{folder}/part-00000.parquet: row 42: column {column!r}"
    assert message in err.value.message


def test_examples_need_their_declared_label_columns(tmp_path):
    tbl = table(good_examples(10), pa.schema(
        [f for f in EXAMPLES_META_SCHEMA() if f.name != "label_skip"],
        metadata=EXAMPLES_META.to_metadata()))
    write_parquet(tmp_path / "part-0.parquet", tbl)
    with pytest.raises(DataError, match="missing column") as err:
        DatasetReader(tmp_path, "examples")
    assert err.value.where.endswith("column 'label_skip'")


def EXAMPLES_META_SCHEMA():
    from dv365.data.schema import examples_schema

    return examples_schema(EXAMPLES_META)


def test_locate_data_folder_and_bare_datasets(data_folder):
    found = locate(data_folder)
    assert found.events == data_folder / "events" and found.examples == data_folder / "examples"
    bare = locate(data_folder / "examples")
    assert bare.events is None and bare.examples == data_folder / "examples"
    assert locate(data_folder / "events" / "part-00000.parquet").events is not None


def test_timestamp_column_round_trips_through_canonical_type(tmp_path, cols):
    # The canonical ts type is what the writers use; a row at the lower bound is fine.
    c = with_value(cols, "ts", 0, 946_684_800_000)
    write_events(tmp_path, c)
    _, [batch] = read_all(tmp_path)
    assert batch.columns["ts"][0] == 946_684_800_000
    assert events_schema(EVENTS_META).field("ts").type == TS_TYPE
    assert T0 > 946_684_800_000


CORRUPTIONS = {
    "dwell_time": -1.5,
    "video_duration": float("nan"),
    "ts": 5,
    "surface": "nowhere",
    "user_id": None,
    "media_type": None,
    "action": "toggle",  # null on an explicit row, set on an implicit row
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hits=st.lists(st.tuples(st.integers(0, 59), st.sampled_from(sorted(CORRUPTIONS))),
                     max_size=12),
       files=st.integers(1, 3))
def test_repair_drops_exactly_the_bad_rows_and_counts_add_up(hits, files):
    cols = good_events(60, seed=11)
    for row, column in hits:
        value = CORRUPTIONS[column]
        if value == "toggle":
            value = "like" if cols["timeline"][row] == "implicit" else None
        cols = with_value(cols, column, row, value)
    bad = {row for row, _ in hits}
    with tempfile.TemporaryDirectory() as tmp:
        src = write_events(Path(tmp) / "src", cols, files=files)
        report = repair_dataset(src, Path(tmp) / "dst", "events")
        assert report.rows_read == 60 and report.rows_dropped == len(bad)
        assert sum(report.dropped.values()) == len(bad)
        assert set(report.first) >= set(report.dropped)
        kept = pq.read_table(Path(tmp) / "dst").column("media_id").to_pylist()
        assert kept == [cols["media_id"][i] for i in range(60) if i not in bad]


def test_the_time_range_is_said_as_it_is_checked():
    from dv365.data.schema import TS_MAX_MS, TS_MIN_MS, TS_RANGE_TEXT
    from dv365.durations import moment_text

    assert TS_RANGE_TEXT == (f"{moment_text(TS_MIN_MS, 'day')}..{moment_text(TS_MAX_MS, 'day')}"
                             " UTC (end excluded)")

# ----------------------------------------------------------------------------- damaged files

def test_dictionary_index_past_its_dictionary_is_a_located_error(tmp_path, cols):
    # Parquet keeps dictionary indices as given; index 3 of a 3-value dictionary is what a
    # damaged page of a file without checksums decodes to.
    surface = pa.DictionaryArray.from_arrays(
        pa.array([1] * 7 + [3] + [1] * (N - 8), pa.int32()),
        pa.array(["reels", "feed", "stories"]), safe=False)
    tbl = table(cols, events_schema(EVENTS_META))
    tbl = tbl.set_column(tbl.schema.get_field_index("surface"), "surface", surface)
    path = write_parquet(tmp_path / "part-0.parquet", tbl, write_statistics=False)
    for repair in (False, True):  # a damaged file is refused even when repairing
        with pytest.raises(DataError, match="dictionary index 3 is past the column's "
                                            "dictionary of 3 values") as err:
            list(DatasetReader(tmp_path, "events").batches(repair=repair))
        assert err.value.where == f"{path}: row 7: column 'surface'"


def test_a_page_checksum_mismatch_names_file_row_group_and_column(tmp_path):
    source = events_file(tmp_path, "none")
    ts = pq.read_metadata(source).row_group(1).column(1)
    data = bytearray(source.read_bytes())
    data[ts.data_page_offset + ts.total_compressed_size - 2] ^= 0x10  # a value of ts
    source.write_bytes(bytes(data))
    with pytest.raises(DataError) as err:
        list(DatasetReader(source, "events").batches())
    assert err.value.where == f"{source}: row group 1: column 'ts'"
    assert "corrupt page: its checksum does not match its bytes" in err.value.message


def test_files_without_checksums_are_read(tmp_path, cols):
    write_parquet(tmp_path / "part-0.parquet", table(cols, events_schema(EVENTS_META)),
                  write_page_checksum=False)
    _, [batch] = read_all(tmp_path)
    assert batch.columns["ts"].tolist() == cols["ts"]


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_a_flipped_bit_is_refused_or_changes_nothing(tmp_path, compression):
    counts = flip_run(tmp_path, compression, 600, every_byte=True)
    assert counts.ok, counts.examples
    assert counts.refused > counts.tried // 2  # page data are most of the file's bytes
