"""`dv365 import kuairand`: KuaiRand logs become UniTi events and examples."""

import csv
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from dv365.cli import app as cli_app
from dv365.data.importers.imported_log import UNKNOWN_AUTHOR
from dv365.data.importers.kuairand import first_tag_ids, import_kuairand
from dv365.data.schema import DatasetMeta
from dv365.data.validate import validate_dataset
from dv365.errors import DataError, NotFoundError, UsageError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "kuairand"
PARQUET_LOG = FIXTURES / "log_2022-04-25_val_head.parquet"
CSV_LOG = FIXTURES / "log_standard_sample_pure.csv"
VIDEOS = FIXTURES / "video_features_basic_pure.csv"
SHARED_SAMPLE = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "kuairand-pure-sample"

FLAG_ACTIONS = {"is_like": "like", "is_comment": "comment", "is_forward": "share",
                "is_follow": "follow", "is_profile_enter": "profile_visit", "is_hate": "dislike"}


def _raw_rows():
    """The fixture logs as plain dicts, read independently of the importer."""
    rows = pq.read_table(PARQUET_LOG).to_pylist()
    rows += pcsv.read_csv(CSV_LOG).to_pylist()
    return rows


def _videos():
    return {r["video_id"]: r for r in pcsv.read_csv(VIDEOS).to_pylist()}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("kuairand") / "data"
    summary = import_kuairand(FIXTURES, out)
    return summary, pq.read_table(out / "events"), pq.read_table(out / "examples")


def test_every_row_is_an_implicit_event_and_every_flag_an_explicit_one(imported):
    _, events, _ = imported
    raw = _raw_rows()
    got = Counter((e["user_id"], e["media_id"], int(e["ts"].timestamp() * 1000), e["timeline"],
                   e["action"]) for e in events.to_pylist())
    want = Counter()
    for r in raw:
        want[(r["user_id"], r["video_id"], r["time_ms"], "implicit", None)] += 1
        for flag, action in FLAG_ACTIONS.items():
            if r[flag] == 1:
                want[(r["user_id"], r["video_id"], r["time_ms"], "explicit", action)] += 1
    assert got == want
    assert sum(k[3] == "explicit" for k in want.elements()) > 0


def test_events_are_sorted_by_user_then_time_with_the_impression_first(imported):
    _, events, _ = imported
    users = events["user_id"].to_numpy()
    ts = events["ts"].cast(pa.int64()).to_numpy()
    key = users.astype(np.float64) * 1e13 + ts
    assert np.all(np.diff(key) >= 0)
    timeline = events["timeline"].to_pylist()
    same = np.flatnonzero((np.diff(users) == 0) & (np.diff(ts) == 0))
    for i in same:  # an explicit event is never followed by the impression it belongs to
        assert not (timeline[i] == "explicit" and timeline[i + 1] == "implicit"
                    and events["media_id"][i] == events["media_id"][i + 1])


def test_durations_are_seconds_and_items_come_from_row_or_video_file(imported):
    _, events, _ = imported
    videos = _videos()
    by_key = {(e["user_id"], e["media_id"], int(e["ts"].timestamp() * 1000)): e
              for e in events.to_pylist() if e["timeline"] == "implicit"}
    parquet_rows = pq.read_table(PARQUET_LOG).to_pylist()
    for r in parquet_rows[:200]:  # rows that carry author_id and tag themselves
        e = by_key[(r["user_id"], r["video_id"], r["time_ms"])]
        assert e["dwell_time"] == pytest.approx(r["play_time_ms"] / 1000, rel=1e-6)
        assert e["video_duration"] == pytest.approx(r["duration_ms"] / 1000, rel=1e-6)
        assert e["author_id"] == r["author_id"]
        assert e["surface"] == f"tab_{r['tab']}"
    for r in pcsv.read_csv(CSV_LOG).to_pylist()[:200]:  # official layout: look-ups by video_id
        e = by_key[(r["user_id"], r["video_id"], r["time_ms"])]
        video = videos[r["video_id"]]
        assert e["author_id"] == video["author_id"]
        first = str(video["tag"]).split(",")[0]
        assert e["topic_id"] == (int(first) if first.isdigit() else 0)
        assert e["media_type"] == ("ad" if video["video_type"] == "AD" else "video")


def test_vocabularies_declare_only_what_is_used(imported):
    summary, events, examples = imported
    meta = DatasetMeta.from_schema(events.schema)
    assert meta.source == "kuairand" and meta.kind == "events"
    raw = _raw_rows()
    assert set(meta.vocab["surface"]) == {f"tab_{r['tab']}" for r in raw}
    used_actions = {a for r in raw for f, a in FLAG_ACTIONS.items() if r[f] == 1}
    assert set(meta.vocab["action"]) == used_actions
    assert set(meta.vocab["media_type"]) == set(events["media_type"].to_pylist())
    ex_meta = DatasetMeta.from_schema(examples.schema)
    assert ex_meta.kind == "examples" and ex_meta.vocab == meta.vocab
    assert summary.events == events.num_rows and summary.examples == len(raw)


def test_output_passes_validation(imported):
    summary = imported[0]
    for kind in ("events", "examples"):
        reader, report = validate_dataset(summary.out / kind, kind)
        assert report.ok and report.rows_read == getattr(summary, kind)


def test_examples_carry_the_logged_labels(imported):
    _, _, examples = imported
    meta = DatasetMeta.from_schema(examples.schema)
    assert meta.tasks["watch_time"] == "regression"
    assert {"like", "follow", "comment", "share", "profile_visit", "complete", "skip",
            "click", "long_view"} <= set(meta.tasks)
    assert meta.dense == ["video_duration", "is_rand"]
    got = {(x["user_id"], x["media_id"], int(x["request_ts"].timestamp() * 1000)): x
           for x in examples.to_pylist()}
    for r in _raw_rows():
        x = got[(r["user_id"], r["video_id"], r["time_ms"])]
        complete = r["duration_ms"] > 0 and r["play_time_ms"] >= r["duration_ms"]
        assert x["label_like"] == r["is_like"] and x["label_share"] == r["is_forward"]
        assert x["label_profile_visit"] == r["is_profile_enter"]
        assert x["label_click"] == r["is_click"] and x["label_long_view"] == r["long_view"]
        assert x["label_complete"] == complete
        assert x["label_skip"] == (not complete and r["play_time_ms"] < 3000)
        assert x["label_watch_time"] == pytest.approx(r["play_time_ms"] / 1000, rel=1e-6)
        assert x["dense_is_rand"] == r["is_rand"]


def test_first_tag_is_the_topic():
    tags = pa.array(["39", "20,43", " 7 ,1", "unknown", None, "", "62,7"])
    assert first_tag_ids(tags).tolist() == [39, 20, 7, 0, 0, 0, 62]


# --- bad input: one error naming the place, nothing written ---------------------------------

def _copy_fixtures(tmp_path, *names):
    src = tmp_path / "src"
    src.mkdir(parents=True)
    for name in names:
        shutil.copy(FIXTURES / name, src / name)
    return src


def _expect_error(src, out, *fragments):
    with pytest.raises(DataError) as err:
        import_kuairand(src, out)
    text = err.value.render()
    assert "\n" not in text
    for fragment in fragments:
        assert fragment in text, text
    assert not out.exists()
    assert not list(out.parent.glob(".data.partial-*"))


def test_csv_missing_column_is_named(tmp_path):
    src = _copy_fixtures(tmp_path, CSV_LOG.name, VIDEOS.name)
    log = src / CSV_LOG.name
    lines = log.read_text().splitlines()
    lines[0] = lines[0].replace("play_time_ms", "playtime")
    log.write_text("\n".join(lines) + "\n")
    _expect_error(src, tmp_path / "data", f"{log}:1", "'play_time_ms'")


def test_csv_bad_value_is_named_by_line(tmp_path):
    src = _copy_fixtures(tmp_path, CSV_LOG.name, VIDEOS.name)
    log = src / CSV_LOG.name
    lines = log.read_text().splitlines()
    fields = lines[41].split(",")
    fields[1] = "abc"
    lines[41] = ",".join(fields)
    log.write_text("\n".join(lines) + "\n")
    _expect_error(src, tmp_path / "data", f"{log}:42", "'video_id'", "abc")


def test_csv_short_line_is_named_by_line(tmp_path):
    src = _copy_fixtures(tmp_path, CSV_LOG.name, VIDEOS.name)
    log = src / CSV_LOG.name
    lines = log.read_text().splitlines()
    lines[9] = ",".join(lines[9].split(",")[:5])
    log.write_text("\n".join(lines) + "\n")
    _expect_error(src, tmp_path / "data", f"{log}:10", "expected 19 fields, found 5")


def test_flag_that_is_not_binary_is_named(tmp_path):
    src = _copy_fixtures(tmp_path, CSV_LOG.name, VIDEOS.name)
    log = src / CSV_LOG.name
    table = pcsv.read_csv(log)
    likes = table["is_like"].to_pylist()
    likes[7] = 2
    table = table.set_column(table.schema.get_field_index("is_like"), "is_like", pa.array(likes))
    pcsv.write_csv(table, log)
    _expect_error(src, tmp_path / "data", f"{log}:9", "'is_like'", "2 is not 0 or 1")


def test_parquet_null_is_named_by_row_and_column(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    table = pq.read_table(PARQUET_LOG)
    times = table["time_ms"].to_pylist()
    times[5] = None
    table = table.set_column(table.schema.get_field_index("time_ms"), "time_ms",
                             pa.array(times, pa.int64()))
    pq.write_table(table, src / "log_x.parquet")
    _expect_error(src, tmp_path / "data", "log_x.parquet: row 5", "'time_ms'")


def test_unreadable_parquet_is_named(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "log_broken.parquet").write_bytes(b"not parquet at all")
    _expect_error(src, tmp_path / "data", "log_broken.parquet", "cannot read Parquet")


def test_video_missing_from_the_video_file_is_named(tmp_path):
    src = _copy_fixtures(tmp_path, CSV_LOG.name, VIDEOS.name)
    first_video = pcsv.read_csv(src / CSV_LOG.name)["video_id"][0].as_py()
    lines = (src / VIDEOS.name).read_text().splitlines()
    kept = [lines[0]] + [l for l in lines[1:] if int(l.split(",")[0]) != first_video]
    (src / VIDEOS.name).write_text("\n".join(kept) + "\n")
    _expect_error(src, tmp_path / "data", f"{src / CSV_LOG.name}:2",
                  f"video_id {first_video} is not in")


def test_a_single_log_file_finds_the_video_file_next_to_it(tmp_path):
    src = _copy_fixtures(tmp_path, CSV_LOG.name, VIDEOS.name)
    summary = import_kuairand(src / CSV_LOG.name, tmp_path / "data")
    assert summary.examples == pcsv.read_csv(CSV_LOG).num_rows


def test_folder_without_logs(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "README.md").write_text("not a log")
    shutil.copy(VIDEOS, tmp_path / "src" / VIDEOS.name)
    with pytest.raises(NotFoundError, match="no KuaiRand log files"):
        import_kuairand(tmp_path / "src", tmp_path / "data")


def test_existing_output_needs_overwrite(tmp_path):
    src = _copy_fixtures(tmp_path, PARQUET_LOG.name)
    import_kuairand(src, tmp_path / "data")
    with pytest.raises(UsageError):
        import_kuairand(src, tmp_path / "data")
    import_kuairand(src, tmp_path / "data", overwrite=True)


# --- the command ------------------------------------------------------------------------------

def test_cli_imports_and_reports(tmp_path, capsys):
    src = _copy_fixtures(tmp_path, PARQUET_LOG.name)
    out = tmp_path / "data"
    assert cli_app.main(["import", "kuairand", str(src), str(out)]) == 0
    assert "2,000 examples" in capsys.readouterr().out
    assert cli_app.main(["import", "kuairand", str(src), str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli_app.main(["import", "kuairand", "--force", str(src), str(out)]) == 0


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "log_broken.parquet").write_bytes(b"junk")
    assert cli_app.main(["import", "kuairand", str(src), str(tmp_path / "data")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "log_broken.parquet" in err


@pytest.mark.skipif(not SHARED_SAMPLE.is_dir(), reason="the shared KuaiRand sample is absent")
def test_full_shared_sample(tmp_path):
    summary = import_kuairand(SHARED_SAMPLE, tmp_path / "data")
    raw = pq.read_table(sorted(SHARED_SAMPLE.glob("log_*.parquet")),
                        columns=["user_id", *FLAG_ACTIONS])
    flags = sum(int(np.sum(raw[f].to_numpy())) for f in FLAG_ACTIONS)
    assert summary.examples == raw.num_rows == 94_784 + 133_545
    assert summary.events == raw.num_rows + flags
    assert summary.explicit_events == flags
    assert summary.users == len(set(raw["user_id"].to_pylist()))


def test_integral_decimals_and_crlf_lines_are_read_like_integers(tmp_path):
    # Logs exported through pandas sometimes write ints as 1650841029419.0, and Windows tools
    # end lines with CRLF; both must import to the same data.
    src = _copy_fixtures(tmp_path, CSV_LOG.name, VIDEOS.name)
    log = src / CSV_LOG.name
    lines = log.read_text().splitlines()
    header = lines[0].split(",")
    t, p = header.index("time_ms"), header.index("play_time_ms")
    for i in range(1, len(lines)):
        fields = lines[i].split(",")
        fields[t] += ".0"
        fields[p] += ".000"
        lines[i] = ",".join(fields)
    log.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    import_kuairand(src, tmp_path / "decimal")
    import_kuairand(_copy_fixtures(tmp_path / "plain", CSV_LOG.name, VIDEOS.name),
                    tmp_path / "plain" / "out")
    assert pq.read_table(tmp_path / "decimal" / "events").equals(
        pq.read_table(tmp_path / "plain" / "out" / "events"))


# --- ordinary variants of the format ---------------------------------------------------------

def _rewrite_delimited(source: Path, target: Path, delimiter: str) -> None:
    """``source`` (a comma CSV) with another delimiter, quoting only where that needs it."""
    with source.open(newline="") as f:
        rows = list(csv.reader(f))
    with target.open("w", newline="") as f:
        csv.writer(f, delimiter=delimiter, lineterminator="\n").writerows(rows)


def _events(out: Path) -> pa.Table:
    return pq.read_table(out / "events")


@pytest.fixture(scope="module")
def comma_events(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("comma")
    import_kuairand(_copy_fixtures(tmp, CSV_LOG.name, VIDEOS.name), tmp / "data")
    return _events(tmp / "data")


@pytest.mark.parametrize("delimiter", ["\t", ";", "|"])
def test_other_delimiters_are_sniffed(tmp_path, comma_events, delimiter):
    # The log and the video file in the same layout; video tags such as 42,18 are then unquoted.
    src = tmp_path / "src"
    src.mkdir()
    _rewrite_delimited(CSV_LOG, src / "log_standard_sample_pure.tsv", delimiter)
    _rewrite_delimited(VIDEOS, src / VIDEOS.name, delimiter)
    import_kuairand(src, tmp_path / "data")
    assert _events(tmp_path / "data").equals(comma_events)


def test_the_delimiter_can_be_forced(tmp_path, comma_events):
    src = tmp_path / "src"
    src.mkdir()
    _rewrite_delimited(CSV_LOG, src / "interactions.txt", "\t")
    shutil.copy(VIDEOS, src / VIDEOS.name)  # side files are sniffed, whatever is forced
    for spelling in ("\\t", "tab", "\t"):
        import_kuairand(src / "interactions.txt", tmp_path / "data", overwrite=True,
                        delimiter=spelling)
        assert _events(tmp_path / "data").equals(comma_events)
    with pytest.raises(DataError) as err:
        import_kuairand(src / "interactions.txt", tmp_path / "wrong", delimiter=",")
    assert "missing columns 'user_id'" in err.value.render()
    assert "check the delimiter, or force one with --delimiter)" in err.value.render()
    with pytest.raises(UsageError, match="--delimiter"):
        import_kuairand(src, tmp_path / "bad", delimiter=",,")


def test_a_folder_takes_logs_of_any_name(tmp_path):
    # A third party's layout: split logs named by purpose, Parquet and text mixed, the side
    # files KuaiRand ships, and files that are not tables at all.
    src = tmp_path / "src"
    (src / "logs").mkdir(parents=True)
    shutil.copy(PARQUET_LOG, src / "logs" / "val.parquet")
    _rewrite_delimited(CSV_LOG, src / "logs" / "Train.TSV", "\t")
    shutil.copy(VIDEOS, src / VIDEOS.name)
    (src / "user_features_pure.csv").write_text("user_id,user_active_degree\n1,high\n")
    (src / "video_features_statistic_pure.csv").write_text("video_id,show_cnt\n1,2\n")
    (src / "README.md").write_text("about these logs\n")
    (src / "logs" / "._val.parquet").write_bytes(b"macOS resource fork")
    (src / ".cache").mkdir()
    (src / ".cache" / "old.csv").write_text("junk\n")
    summary = import_kuairand(src, tmp_path / "data")
    assert summary.examples == len(_raw_rows())


def test_a_side_file_given_as_src_is_refused(tmp_path):
    with pytest.raises(UsageError, match="side file, not a log"):
        import_kuairand(VIDEOS, tmp_path / "data")


def test_every_missing_column_is_named_in_one_error(tmp_path):
    src = _copy_fixtures(tmp_path, CSV_LOG.name, VIDEOS.name)
    log = src / CSV_LOG.name
    lines = log.read_text().splitlines()
    lines[0] = (lines[0].replace("play_time_ms", "playtime").replace("is_rand", "IS_RAND")
                .replace(",tab", ",tab_id").replace("duration_ms", "length"))
    log.write_text("\n".join(lines) + "\n")
    _expect_error(src, tmp_path / "data", f"{log}:1: error: missing columns "
                  "'tab' (did you mean 'tab_id'?), 'play_time_ms' (did you mean 'playtime'?), "
                  "'duration_ms', 'is_rand' (did you mean 'IS_RAND'?); "
                  "found: user_id, video_id, date, hourmin, time_ms,")


def test_every_missing_parquet_column_is_named_in_one_error(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    table = pq.read_table(PARQUET_LOG).drop_columns(["tab", "is_hate"])
    pq.write_table(table, src / "log.parquet")
    _expect_error(src, tmp_path / "data", f"{src / 'log.parquet'}: error: missing columns",
                  "'tab'", "'is_hate'", "found: user_id")


def test_a_log_without_authors_or_video_file_imports_with_unknown_authors(tmp_path):
    src = _copy_fixtures(tmp_path, CSV_LOG.name)
    summary = import_kuairand(src, tmp_path / "data")
    rows = pcsv.read_csv(CSV_LOG).num_rows
    assert summary.examples == rows
    for kind in ("events", "examples"):
        assert set(pq.read_table(tmp_path / "data" / kind)["author_id"].to_pylist()) == {
            UNKNOWN_AUTHOR}
        assert validate_dataset(tmp_path / "data" / kind, kind)[1].ok
    (note,) = summary.notes
    assert note.startswith(f"{src / CSV_LOG.name}: {rows:,} of {rows:,} rows have no author_id")
    assert "video_features_basic*" in note and "-1 (unknown)" in note


def test_empty_author_and_tag_values_come_from_the_video_file(tmp_path):
    src = _copy_fixtures(tmp_path, VIDEOS.name)
    table = pq.read_table(PARQUET_LOG)
    authors, tags = table["author_id"].to_pylist(), table["tag"].to_pylist()
    for i in (3, 4, 1000):
        authors[i] = tags[i] = None
    table = table.set_column(table.schema.get_field_index("author_id"), "author_id",
                             pa.array(authors, pa.int64()))
    table = table.set_column(table.schema.get_field_index("tag"), "tag", pa.array(tags))
    pq.write_table(table, src / "log.parquet")
    summary = import_kuairand(src, tmp_path / "data")
    assert summary.notes == ()
    events = pq.read_table(tmp_path / "data" / "events").to_pylist()
    by_key = {(e["user_id"], e["media_id"], int(e["ts"].timestamp() * 1000)): e
              for e in events if e["timeline"] == "implicit"}
    videos = _videos()
    for i, r in enumerate(table.to_pylist()):
        e = by_key[(r["user_id"], r["video_id"], r["time_ms"])]
        if i in (3, 4, 1000):
            video = videos[r["video_id"]]
            first = str(video["tag"]).split(",")[0]
            assert e["author_id"] == video["author_id"]
            assert e["topic_id"] == (int(first) if first.isdigit() else 0)
        else:
            assert e["author_id"] == r["author_id"]


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path, comma_events):
    src = _copy_fixtures(tmp_path, CSV_LOG.name, VIDEOS.name)
    log = src / CSV_LOG.name
    log.write_bytes(b"\xef\xbb\xbf" + log.read_bytes())
    import_kuairand(src, tmp_path / "data")
    assert _events(tmp_path / "data").equals(comma_events)
