"""``dv365 inspect``: how many examples see no history at the gap, and a warning when most do.

The rated log (tests/cli/conftest.py) at the default 24h gap: of its 7 examples whose user
has events, 2 have no event before their own cutoff and 5 none before their user-day group's
(users 1 and 4 act on day 0 and are asked on day 1, the group's earliest request early in
the morning); its last 3 days hold 2 examples, both with history.
"""

from __future__ import annotations

import pytest

from dv365.cli.app import main
from dv365.cli.inspect import gap_ms_of
from dv365.durations import DAY_MS, HOUR_MS, MINUTE_MS
from dv365.errors import UsageError
from tests.cli.conftest import write_rated_log


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")


def _row(out: str, label: str) -> list[str]:
    line = next(line for line in out.splitlines() if line.strip("│ ").startswith(label))
    return [cell.strip() for cell in line.strip().strip("│").split("│")]


def test_empty_histories_are_counted_per_request_and_per_user_day(tmp_path, capsys):
    data = write_rated_log(tmp_path / "data")
    assert main(["inspect", str(data)]) == 0
    captured = capsys.readouterr()
    assert "examples that see no history at gap 24h" in captured.out
    assert _row(captured.out, "all") == ["all", "7", "28.6%", "71.4%"]
    assert _row(captured.out, "last 3 days") == ["last 3 days", "2", "0.0%", "0.0%"]
    assert "not counted: 1 example of users without events" in captured.out
    warning = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert warning == ["warning: 71.4% of the examples see no history at gap 24h grouped per "
                       "user-day (28.6% with their own cutoff): group per request for exact "
                       "cutoffs, or shorten the gap"]


def test_the_gap_option_and_the_last_days(tmp_path, capsys):
    data = write_rated_log(tmp_path / "data")
    assert main(["inspect", str(data), "--gap", "0s", "--last-days", "4"]) == 0
    captured = capsys.readouterr()
    assert _row(captured.out, "all") == ["all", "7", "0.0%", "0.0%"]
    assert _row(captured.out, "last 4 days") == ["last 4 days", "7", "0.0%", "0.0%"]
    assert "warning" not in captured.err


def test_a_spec_gives_its_gap_compiled_against_the_data(tmp_path, capsys):
    data = write_rated_log(tmp_path / "data")
    spec = tmp_path / "dislikes.slice"
    spec.write_text("table media: media_id, rows 10, dim 4\ngap 3d\n"
                    "slice d: from explicit where action == dislike pool media_id into media "
                    "mean\n")
    assert main(["inspect", str(data), "--spec", str(spec)]) == 0
    captured = capsys.readouterr()
    assert "at gap 3d" in captured.out
    assert _row(captured.out, "all") == ["all", "7", "85.7%", "85.7%"]
    assert ("warning: 85.7% of the examples see no history at gap 3d even with their own "
            "cutoff") in captured.err


def test_spec_and_gap_together_or_without_examples_are_usage_errors(tmp_path, capsys):
    data = write_rated_log(tmp_path / "data")
    spec = tmp_path / "x.slice"
    spec.write_text("table media: media_id, rows 10, dim 4\n"
                    "slice a: from explicit pool media_id into media mean\n")
    assert main(["inspect", str(data), "--spec", str(spec), "--gap", "6h"]) == 2
    assert "give --spec or --gap, not both" in capsys.readouterr().err
    assert main(["inspect", str(data / "events"), "--gap", "6h"]) == 2
    assert "needs events and examples" in capsys.readouterr().err
    assert main(["inspect", str(data), "--gap", "six hours"]) == 2
    assert "--gap: error: cannot read 'six hours' as a gap" in capsys.readouterr().err


def test_gaps_are_spelled_like_the_slice_language():
    assert gap_ms_of("24h") == DAY_MS
    assert gap_ms_of("90m") == 90 * MINUTE_MS
    assert gap_ms_of("1.5h") == 90 * MINUTE_MS
    assert gap_ms_of("2d") == 2 * DAY_MS and gap_ms_of("0s") == 0
    assert gap_ms_of(" 6h ") == 6 * HOUR_MS
    with pytest.raises(UsageError):
        gap_ms_of("-1h")


def test_paths_in_the_report_are_normalized(tmp_path, monkeypatch, capsys):
    write_rated_log(tmp_path / "data")
    (tmp_path / "configs").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PWD", raising=False)
    assert main(["inspect", "configs/../data"]) == 0
    out = capsys.readouterr().out
    assert "events: data/events" in out and "examples: data/examples" in out
    assert "configs" not in out
