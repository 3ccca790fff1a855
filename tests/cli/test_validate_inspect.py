"""dv365 validate and dv365 inspect, run as a user runs them."""

from __future__ import annotations

import subprocess
import sys

import pyarrow.parquet as pq

from dv365.cli.app import main
from tests.data.conftest import (
    good_events,
    good_examples,
    with_value,
    write_events,
    write_examples,
)


def _data(root, events, examples=None, files=2):
    write_events(root / "events", events, files=files)
    if examples is not None:
        write_examples(root / "examples", examples)
    (root / "truth").mkdir()
    (root / "truth" / "users.json").write_text("{}")
    return root


def test_validate_ok_reports_row_counts(tmp_path, capsys):
    data = _data(tmp_path / "data", good_events(300), good_examples(120))
    assert main(["validate", str(data)]) == 0
    out = capsys.readouterr().out
    assert f"{data / 'events'}: OK: 300 events in 2 files" in out
    assert f"{data / 'examples'}: OK: 120 examples in 1 file" in out


def test_validate_lists_first_bad_row_of_each_reason_and_fails(tmp_path, capsys):
    cols = good_events(300)
    implicit = [i for i, t in enumerate(cols["timeline"]) if t == "implicit"]
    cols = with_value(cols, "dwell_time", implicit[3], -3.0)
    cols = with_value(cols, "dwell_time", implicit[5], -4.0)
    explicit = [i for i, t in enumerate(cols["timeline"]) if t == "explicit"]
    cols = with_value(cols, "surface", explicit[2], "feeds")
    data = _data(tmp_path / "data", cols, files=1)
    assert main(["validate", str(data)]) == 1
    captured = capsys.readouterr()
    assert "3 bad of 300 rows (events)" in captured.out
    assert "dwell_time: negative: 2 rows" in captured.out
    assert "surface: not declared: 1 row" in captured.out
    part = data / "events" / "part-00000.parquet"
    assert (f"{part}: row {implicit[3]}: column 'dwell_time': error: negative value -3.0"
            in captured.err)
    assert f"{part}: row {explicit[2]}: column 'surface': error: value 'feeds'" in captured.err
    assert "did you mean 'feed'?" in captured.err
    assert captured.err.strip().splitlines()[-1].startswith(f"{data}: error: 3 rows bad")


def test_repair_writes_a_clean_copy_and_counts_drops(tmp_path, capsys):
    cols = with_value(good_events(300), "ts", 7, 12)
    examples = with_value(good_examples(50), "label_like", 3, 5)
    data = _data(tmp_path / "data", cols, examples)
    out = tmp_path / "fixed"
    assert main(["validate", str(data), "--repair", str(out)]) == 0
    text = capsys.readouterr().out
    assert "events: kept 299 of 300 rows, dropped 1" in text
    assert "dropped 1 row: ts: out of range" in text
    assert "examples: kept 49 of 50 rows, dropped 1" in text
    assert "dropped 1 row: label_like: not 0 or 1" in text
    assert (out / "truth" / "users.json").read_text() == "{}"
    assert pq.read_table(out / "events").num_rows == 299
    assert main(["validate", str(out)]) == 0
    # OUT exists now: refusing to overwrite without --force, and nothing changes.
    assert main(["validate", str(data), "--repair", str(out)]) == 2
    assert main(["validate", str(data), "--repair", str(out), "--force"]) == 0


def test_repair_of_unreadable_data_writes_nothing(tmp_path, capsys):
    data = _data(tmp_path / "data", good_events(100))
    (data / "events" / "part-00001.parquet").write_text("not parquet")
    assert main(["validate", str(data), "--repair", str(tmp_path / "out")]) == 1
    assert "part-00001.parquet: error: not a readable Parquet file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_inspect_prints_counts_percentiles_and_label_rates(tmp_path, capsys):
    events = good_events(400, users=4)
    data = _data(tmp_path / "data", events, good_examples(100))
    assert main(["inspect", str(data)]) == 0
    out = capsys.readouterr().out
    explicit = events["timeline"].count("explicit")
    for text in ["users", "400", f"{explicit:,}", f"{400 - explicit:,}", "p50", "p99",
                 "history length", "reels", "like", "watch_time", "regression (mean)",
                 "date range (UTC)", "ground truth"]:
        assert text in out, text
    lengths = sorted(events["user_id"].count(u) for u in set(events["user_id"]))
    history = next(line for line in out.splitlines() if line.count("│") == 6)
    assert history.split("│")[4].strip() == str(lengths[-1])  # the max column


def test_inspect_a_bare_examples_dataset(tmp_path, capsys):
    examples = good_examples(80)
    write_examples(tmp_path / "ex", examples)
    assert main(["inspect", str(tmp_path / "ex")]) == 0
    out = capsys.readouterr().out
    rate = 100 * sum(examples["label_like"]) / 80
    assert f"{rate:.2f}%" in out and "examples" in out and "history length" not in out


def test_bad_data_is_one_line_and_exit_1_without_traceback(tmp_path):
    data = _data(tmp_path / "data", with_value(good_events(50), "action", 0, "lov"))
    for command in ("inspect", "validate"):
        proc = subprocess.run([sys.executable, "-m", "dv365.cli.app", command, str(data)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "column 'action'" in proc.stderr


def test_missing_path(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_validate_prints_normalized_paths(tmp_path, monkeypatch, capsys):
    _data(tmp_path / "data", good_events(30), files=1)
    (tmp_path / "configs").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PWD", raising=False)
    assert main(["validate", "configs/../data"]) == 0
    assert capsys.readouterr().out.startswith("data/events: OK: 30 events in 1 file")
