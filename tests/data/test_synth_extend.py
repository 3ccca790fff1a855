"""``dv365 synth --extend``: more days of the same users, deterministic, as new files only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from dv365.cli import app as cli_app
from dv365.data.metadata import read_meta
from dv365.data.synth_extend import EXTENSION_FILE, events_end_ms, extend
from dv365.data.validate import validate_dataset
from dv365.durations import DAY_MS
from tests.model.conftest import tiny_data


def _digest(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _read(folder: Path):
    return ds.dataset(folder, format="parquet").to_table()


SHARED_FIXTURES = (tiny_data,)  # 40 generated users of tests/model/conftest.py


@pytest.fixture
def data(tiny_data) -> Path:
    return tiny_data


def test_the_same_data_and_days_give_the_same_bytes(data, tmp_path):
    a = extend(data, 3, tmp_path / "a")
    b = extend(data, 3, tmp_path / "b")
    assert a.batch.name == b.batch.name == "ext-20260101-3d"
    assert _digest(a.batch) == _digest(b.batch) and a.events > 0


def test_new_days_belong_to_the_same_users_strictly_after_the_old_end(data, tmp_path):
    before = _digest(data)
    old_end = events_end_ms([data / "events"])
    result = extend(data, 2, tmp_path / "in")
    assert _digest(data) == before  # nothing existing is rewritten
    events, examples = _read(result.batch / "events"), _read(result.batch / "examples")
    old_users = set(_read(data / "events").column("user_id").to_pylist())
    active = set(events.column("user_id").to_pylist())
    assert active <= old_users and len(active) > 0
    assert set(examples.column("user_id").to_pylist()) == old_users
    ts = events.column("ts").cast("int64").to_numpy()
    assert ts.min() >= result.start_ms >= old_end and ts.max() < result.end_ms
    assert result.end_ms - result.start_ms == 2 * DAY_MS and result.start_ms % DAY_MS == 0
    request = examples.column("request_ts").cast("int64").to_numpy()
    assert request.min() >= result.start_ms and request.max() < result.end_ms
    # sorted by (user, ts) like the generator's own files
    users = events.column("user_id").to_numpy()
    assert np.all((np.diff(users) > 0) | ((np.diff(users) == 0) & (np.diff(ts) >= 0)))
    recorded = json.loads((result.batch / EXTENSION_FILE).read_text())
    assert recorded["events"] == events.num_rows and recorded["examples"] == examples.num_rows


def test_the_batch_validates_with_the_datasets_schema_and_vocabulary(data, tmp_path):
    result = extend(data, 1, tmp_path / "in")
    for kind in ("events", "examples"):
        reader, report = validate_dataset(result.batch / kind, kind)
        assert report.ok and report.rows_read > 0
        new, old = reader.files[0], sorted((data / kind).glob("*.parquet"))[0]
        assert new.name.startswith("part-ext-20260101-1d-")
        assert read_meta(new) == read_meta(old)
        assert pq.read_schema(new).equals(pq.read_schema(old), check_metadata=True)


def test_a_second_extension_continues_after_the_waiting_one(data, tmp_path):
    first = extend(data, 2, tmp_path / "in")
    second = extend(data, 1, tmp_path / "in")
    assert second.start_ms == first.end_ms
    ts = _read(second.batch / "events").column("ts").cast("int64").to_numpy()
    assert ts.min() >= first.end_ms


def test_activity_follows_each_users_own_rate_and_ends_anywhere(data, tmp_path):
    result = extend(data, 90, tmp_path / "in")
    old = _read(data / "events").column("user_id").to_numpy()
    new = _read(result.batch / "events").column("user_id").to_numpy()
    per_year = np.bincount(old, minlength=40)
    per_quarter = np.bincount(new, minlength=40)
    # sessions of ~25 events make a quarter's counts noisy; the rates still follow the year's
    assert np.corrcoef(per_year, per_quarter)[0, 1] > 0.5
    assert 0.65 < per_quarter.sum() / (per_year.sum() * 90 / 365) < 1.5
    # a user's last new event is not pinned to the period's end (incremental exports then
    # recompute only the users who were active)
    events = _read(result.batch / "events")
    last = {}
    for user, ts in zip(new.tolist(), events.column("ts").cast("int64").to_pylist()):
        last[user] = max(ts, last.get(user, ts))
    idle_last_day = [u for u, ts in last.items() if ts < result.end_ms - DAY_MS]
    assert len(idle_last_day) > len(last) / 4


@pytest.mark.parametrize("args, where", [
    (["--users", "3"], "--users"),
    (["--force"], "--force"),
    ([], "--days"),
    (["--days", "0"], "--days"),
])
def test_bad_extensions_are_one_line_errors(data, tmp_path, capsys, args, where):
    rc = cli_app.main(["synth", "--extend", str(data), "--out", str(tmp_path / "in"), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith(f"{where}: error:") and "\n" not in err
    assert not (tmp_path / "in").exists()


def test_the_command_writes_one_batch_and_refuses_to_write_it_twice(data, tmp_path, capsys):
    args = ["synth", "--extend", str(data), "--days", "1", "--out", str(tmp_path / "in")]
    assert cli_app.main(args) == 0
    assert "ext-20260101-1d" in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "in").iterdir()] == ["ext-20260101-1d"]
    # the waiting batch moves the start on: a second run adds the next day
    assert cli_app.main(args) == 0
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == [
        "ext-20260101-1d", "ext-20260102-1d"]


def test_a_folder_not_written_by_the_generator_is_refused(tmp_path, capsys):
    (tmp_path / "events").mkdir()
    assert cli_app.main(["synth", "--extend", str(tmp_path), "--days", "1"]) == 2
    assert "no truth/params.json" in capsys.readouterr().err
