"""SIGKILL the LMDB publisher at random points while two reader processes read."""

from __future__ import annotations

import pytest

from tests.stores.crash import crash_run

KILLS = 50


@pytest.mark.slow
def test_killed_publishers_never_tear_a_read_nor_break_a_published_version(tmp_path):
    report = crash_run(f"lmdb://{tmp_path / 'store'}", kills=KILLS, readers=2, seed=14,
                       stop_dir=tmp_path)
    assert report.kills == KILLS
    assert report.problems == [] and report.broken == []
    assert report.torn == 0 and report.corrupt == 0 and report.reader_errors == 0
    assert report.reader_batches > 1000
    assert report.checks >= KILLS  # the current (and the previous) version after each kill
    assert report.resumed > 0      # some kills left a staged version the next round resumed
    assert report.final_publish and report.publishes > KILLS // 2
