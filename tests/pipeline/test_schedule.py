"""Cycles on a cadence, with a clock the test controls."""

from __future__ import annotations

from dv365.errors import DataError
from dv365.pipeline.schedule import run_schedule


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_cycles_start_on_the_ticks_and_a_failure_does_not_stop_the_schedule():
    clock = Clock()
    started = []

    def run(config, *, clock):
        started.append(clock())
        clock.now += 600  # a cycle takes ten minutes
        if len(started) == 2:
            raise DataError("a bad batch", where="incoming")
        return f"report {len(started)}"

    ticks = run_schedule(None, 6 * 3600, cycles=3, clock=clock, sleep=clock.sleep, run=run)
    assert started == [1_000.0, 1_000.0 + 6 * 3600, 1_000.0 + 12 * 3600]
    assert [t.report for t in ticks] == ["report 1", None, "report 3"]
    assert ticks[1].error.message == "a bad batch"


def test_a_cycle_longer_than_the_cadence_skips_the_ticks_it_missed():
    clock = Clock()
    started = []

    def run(config, *, clock):
        started.append(clock() - 1_000.0)
        clock.now += 2.5 * 3600 if len(started) == 1 else 60

    run_schedule(None, 3600, cycles=3, clock=clock, sleep=clock.sleep, run=run)
    assert started == [0.0, 3 * 3600, 4 * 3600]
