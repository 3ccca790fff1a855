"""``dv365 explain``: per-slice counts for one real user of a real (tiny) events dataset."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dv365.cli import app as cli_app
from dv365.cli.explain import TIME_RANGE_TEXT, parse_time
from dv365.data.schema import DEFAULT_VOCAB, DatasetMeta, events_schema
from dv365.durations import DAY_MS, window_text
from dv365.errors import UsageError
from dv365.slices.ir import Compare, FieldRef, Member, Slice, SpecIR, Table

DAY = DAY_MS
T0 = 1_750_000_000_000  # 2025-06-15T15:06:40Z


def _write_events(folder):
    """User 7: three likes (days 0, 5, 9), two implicit views (day 9); user 8: one view."""
    rows = [
        # user, ts, timeline, media, action, dwell
        (7, T0, "explicit", 11, "like", None),
        (7, T0 + 5 * DAY, "explicit", 12, "like", None),
        (7, T0 + 9 * DAY, "explicit", 13, "like", None),
        (7, T0 + 9 * DAY, "implicit", 14, None, 20.0),
        (7, T0 + 9 * DAY + 1, "implicit", 15, None, 2.0),
        (8, T0, "implicit", 16, None, 30.0),
    ]
    n = len(rows)
    cols = {
        "user_id": [r[0] for r in rows], "ts": [r[1] for r in rows],
        "timeline": [r[2] for r in rows], "media_id": [r[3] for r in rows],
        "author_id": [1] * n, "topic_id": [2] * n, "media_type": ["video"] * n,
        "surface": ["reels"] * n, "action": [r[4] for r in rows],
        "video_duration": [30.0] * n, "dwell_time": [r[5] for r in rows],
    }
    schema = events_schema(DatasetMeta(kind="events", vocab=DEFAULT_VOCAB))
    schema = pa.schema([f.with_nullable(True) for f in schema], metadata=schema.metadata)
    folder.mkdir(parents=True)
    pq.write_table(pa.table({f.name: pa.array(cols[f.name], type=f.type) for f in schema},
                            schema=schema), folder / "part-00000.parquet")


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("DV365_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "200")
    _write_events(tmp_path / "data" / "events")
    return tmp_path / "data"


@pytest.fixture
def ir_file(tmp_path):
    table = Table(name="media", id_column="media_id", num_rows=100, dim=8)
    ir = SpecIR(tables=(table,), slices=(
        Slice(name="likes_all", timeline="explicit", id_column="media_id", table="media",
              predicate=Member(field="action", values=("like",))),
        Slice(name="likes_7d", timeline="explicit", id_column="media_id", table="media",
              predicate=Member(field="action", values=("like",)), window_ms=7 * DAY),
        Slice(name="long_views", timeline="implicit", id_column="media_id", table="media",
              predicate=Compare(expr=FieldRef(field="dwell_time"), op=">", value=15)),
    ))
    path = tmp_path / "spec.json"
    path.write_text(ir.to_json())
    return path


def _table_counts(out: str) -> dict[str, int]:
    counts = {}
    for line in out.splitlines():
        cells = line.split()
        if len(cells) > 3 and cells[1] in ("explicit", "implicit"):
            counts[cells[0]] = int(cells[3])
    return counts


def test_default_time_is_after_the_last_event_and_the_gap_applies(data, ir_file, capsys):
    assert cli_app.main(["explain", str(ir_file), "--data", str(data), "--user", "7"]) == 0
    out = capsys.readouterr().out
    # Request at day 9 + 2 ms: the gap hides day 9; likes of days 0 and 5 remain, the 7d
    # window starts at day 2 + 2 ms.
    assert _table_counts(out) == {"likes_all": 2, "likes_7d": 1, "long_views": 0}
    assert "user 7: 5 events, 2 before the gap cutoff" in out


def test_explicit_time_iso_and_epoch_agree(data, ir_file, capsys):
    at = T0 + 11 * DAY
    outs = []
    for text in (str(at), "2025-06-26T15:06:40Z", "2025-06-26T15:06:40"):
        assert cli_app.main(["explain", str(ir_file), "--data", str(data), "--user", "7",
                             "--at", text, "--rows", "2"]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] == outs[2]
    assert _table_counts(outs[0]) == {"likes_all": 3, "likes_7d": 2, "long_views": 1}
    assert "likes_all rows: 11, 12, ... (3 in all)" in outs[0]  # oldest first


def test_missing_user_is_one_line(data, ir_file, capsys):
    assert cli_app.main(["explain", str(ir_file), "--data", str(data), "--user", "99"]) == 1
    err = capsys.readouterr().err.strip()
    assert "error: user 99 is not in the timeline store" in err
    assert len(err.splitlines()) == 1


def test_bad_time_is_a_usage_error(data, ir_file, capsys):
    assert cli_app.main(["explain", str(ir_file), "--data", str(data), "--user", "7",
                         "--at", "yesterday"]) == 2
    assert "--at: error: cannot read 'yesterday' as a time" in capsys.readouterr().err


def test_time_parsing_and_durations():
    assert parse_time("2025-06-15T15:06:40Z") == T0
    assert parse_time("2025-06-15T17:06:40+02:00") == T0
    with pytest.raises(UsageError, match="outside 1990-01-01..2100-01-01 UTC") as info:
        parse_time("1750000000")  # seconds, not milliseconds
    assert TIME_RANGE_TEXT in info.value.message
    assert [window_text(x) for x in (None, 3 * DAY, DAY, 90 * 60_000, 1500)] == [
        "all", "3d", "1d", "90m", "1500ms"]


SPEC = """gap 24h
dim 8
table media: media_id, rows 100, hashing modulo
slice likes_{window}: from explicit where action == like pool media_id into media mean
    over all, 7d
slice long_views: from implicit where dwell_time > 15s pool media_id into media
    weighted mean by dwell_time
"""


def test_a_slice_spec_is_compiled_against_the_data_vocabulary(data, tmp_path, capsys):
    spec = tmp_path / "mini.slice"
    spec.write_text(SPEC)
    assert cli_app.main(["explain", str(spec), "--data", str(data), "--user", "7",
                         "--at", str(T0 + 11 * DAY)]) == 0
    out = capsys.readouterr().out
    assert _table_counts(out) == {"likes_all": 3, "likes_7d": 2, "long_views": 1}
    assert "20.000" in out  # the weight sum of the one long view (dwell 20 s)


def test_a_spec_error_is_reported_with_its_position(data, tmp_path, capsys):
    spec = tmp_path / "bad.slice"
    spec.write_text(SPEC.replace("action == like", "action == likes"))
    assert cli_app.main(["explain", str(spec), "--data", str(data), "--user", "7"]) == 2
    err = capsys.readouterr().err
    assert f"{spec}:4:" in err and "unknown action 'likes'" in err and "Traceback" not in err


def test_an_ir_naming_a_value_the_data_does_not_declare_is_one_line(data, tmp_path, capsys):
    from dv365.slices.compile import compile_spec

    rated = {"media_type": ["movie"], "surface": ["catalog"], "action": ["like", "dislike"]}
    ir = compile_spec("table media: media_id, rows 10, dim 4\n"
                      "slice d: from explicit where action == dislike pool media_id into "
                      "media mean\n", vocab=rated)
    path = tmp_path / "rated.ir.json"
    path.write_text(ir.to_json())
    assert cli_app.main(["explain", str(path), "--data", str(data), "--user", "7"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        f"{path}: error: slice 'd' filters on action 'dislike', which the data does not "
        "declare: the IR was compiled against another vocabulary (give the .slice spec, "
        "which is compiled against the data's vocabulary, or recompile it with dv365 compile "
        "SPEC --data DATA)"]


def test_paths_in_messages_are_normalized(data, tmp_path, monkeypatch, capsys):
    (tmp_path / "configs").mkdir()
    spec = tmp_path / "bad.slice"
    spec.write_text(SPEC.replace("action == like", "action == likes"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PWD", raising=False)
    assert cli_app.main(["explain", "configs/../bad.slice", "--data", "configs/../data",
                         "--user", "7"]) == 2
    assert capsys.readouterr().err.startswith("bad.slice:4:")


@pytest.mark.parametrize("text", ["²", "-²", "١٧٥٠٠٠٠٠٠٠٠٠٠", "9" * 5000, "2025-13-01",
                                  "\x00", "+1750000000000"])
def test_unreadable_times_are_usage_errors_at_the_option(text):
    with pytest.raises(UsageError) as info:
        parse_time(text)
    assert info.value.where == "--at"
    assert len(info.value.render().splitlines()) == 1


def test_the_time_range_is_the_one_the_code_checks():
    from dv365.data.schema import TS_MAX_MS, TS_MIN_MS

    assert parse_time(str(TS_MIN_MS)) == TS_MIN_MS
    assert parse_time(str(TS_MAX_MS - 1)) == TS_MAX_MS - 1
    for outside in (TS_MIN_MS - 1, TS_MAX_MS):
        with pytest.raises(UsageError, match=re.escape(f"outside {TIME_RANGE_TEXT}")):
            parse_time(str(outside))
    assert TIME_RANGE_TEXT.startswith("1990-01-01..2100-01-01")


def test_a_unicode_digit_time_exits_2_in_one_line(data, ir_file, capsys):
    assert cli_app.main(["explain", str(ir_file), "--data", str(data), "--user", "7",
                         "--at", "²"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "--at: error: cannot read '²' as a time (use ISO-8601 like " \
        "2025-06-01T12:00:00Z or epoch milliseconds)"
