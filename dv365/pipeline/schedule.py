"""Cycles on a cadence: ``dv365 pipeline schedule CONFIG --every 6h``.

A cycle starts at each tick (``start + k * every``); one that runs past the next tick skips
the ticks it missed rather than running cycles back to back. A failed cycle is reported and
the schedule goes on (the next tick resumes it). The clock and the sleep are injected, so a
test runs a day of ticks in no time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from dv365.errors import Dv365Error
from dv365.pipeline.config import PipelineConfig
from dv365.pipeline.cycle import CycleReport, run_cycle


@dataclass(frozen=True)
class Tick:
    """One scheduled run: its report, or the error that stopped it."""

    at: float
    report: CycleReport | None
    error: Dv365Error | None


def run_schedule(config: PipelineConfig, every_s: float, *, cycles: int | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 on_tick: Callable[[Tick], None] | None = None,
                 run: Callable[..., CycleReport] = run_cycle, **options) -> list[Tick]:
    """Run a cycle every ``every_s`` seconds (``cycles`` of them, or forever)."""
    if every_s <= 0:
        raise ValueError("every_s must be positive")
    ticks: list[Tick] = []
    start = clock()
    k = 0
    while cycles is None or len(ticks) < cycles:
        at = start + k * every_s
        wait = at - clock()
        if wait > 0:
            sleep(wait)
        try:
            tick = Tick(at, run(config, clock=clock, **options), None)
        except Dv365Error as exc:
            tick = Tick(at, None, exc)
        ticks.append(tick)
        if on_tick is not None:
            on_tick(tick)
        # The next tick still ahead of the clock (missed ones are skipped).
        k = max(k + 1, int((clock() - start) // every_s) + 1)
    return ticks
