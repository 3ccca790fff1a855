"""One cycle of the pipeline, resuming the last one when it did not finish.

``run_cycle`` takes the state database's lock, continues the newest cycle when it is not
done (killed, or stopped by a failed step) or starts a new one, and, once the store has
answered, runs the steps in order (:mod:`dv365.pipeline.steps`). A step whose row is
finished on the same inputs hash is not run again: its recorded outputs are used. A step
that fails records its one-line error on its row and on the cycle and stops the cycle
(:class:`StepFailed`); the store's current snapshot is untouched (only the publish step
changes it), and the next run resumes the cycle at that step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from dv365.errors import Dv365Error
from dv365.pipeline.config import PipelineConfig
from dv365.pipeline.state import PipelineState, Step, inputs_hash
from dv365.pipeline.steps import STEPS, CycleContext
from dv365.plugins import Plugins


class StepFailed(Dv365Error):
    """A step of a cycle failed (or, before the steps, the store did not answer); the
    message names the cycle and the step."""

    def __init__(self, cycle: int, step: str, cause: Dv365Error, *,
                 what: str | None = None):
        super().__init__(f"cycle {cycle}: {what or f'step {step} failed'}: {cause.message}",
                         where=cause.where, hint=cause.hint)
        self.exit_code = cause.exit_code


@dataclass(frozen=True)
class CycleReport:
    """What one call of :func:`run_cycle` did."""

    cycle: int
    resumed: bool
    steps: list[Step]
    reused: list[str]
    """Steps finished by an earlier run of this cycle, not run again."""
    snapshot: str | None
    seconds: float


def run_cycle(config: PipelineConfig, *, clock: Callable[[], float] = time.time,
              progress: Callable | None = None, plugins: Plugins | None = None
              ) -> CycleReport:
    """Run (or resume) one cycle; a :class:`StepFailed` when a step fails."""
    started = time.perf_counter()
    with PipelineState(config.state_path) as state, state.exclusive():
        cycle = state.unfinished_cycle()
        resumed = cycle is not None
        if cycle is None:
            cycle = state.new_cycle(int(clock() * 1000))
        else:
            state.reopen_cycle(cycle.id)
        ctx = CycleContext(config, state, cycle, clock=clock, progress=progress,
                           plugins=plugins)
        reused = []
        try:
            try:
                # An unreachable store or a refused password is told before any step runs,
                # not after a training of hours; nothing was collected then.
                ctx.store().current_version()
            except Dv365Error as exc:
                _record_failure(state, cycle.id, "store", exc, int(clock() * 1000))
                raise StepFailed(cycle.id, "store", exc,
                                 what="the store did not answer before the steps") from None
            for position, step in enumerate(STEPS):
                try:
                    inputs = step.inputs(ctx)
                    row = state.step(cycle.id, step.name)
                    if row is not None and row.finished and row.inputs_hash == inputs_hash(
                            inputs):
                        ctx.outputs[step.name] = row.outputs
                        reused.append(step.name)
                        continue
                    state.start_step(cycle.id, step.name, position, inputs)
                    status, outputs = step.run(ctx)
                except BaseException as exc:
                    _record_failure(state, cycle.id, step.name, exc, int(clock() * 1000))
                    if isinstance(exc, Dv365Error):
                        raise StepFailed(cycle.id, step.name, exc) from None
                    raise
                state.finish_step(cycle.id, step.name, outputs, status=status)
                ctx.outputs[step.name] = outputs
        finally:
            ctx.close()
        snapshot = ctx.outputs["publish"]["version"]
        state.finish_cycle(cycle.id, snapshot, int(clock() * 1000))
        return CycleReport(cycle.id, resumed, state.steps(cycle.id), reused, snapshot,
                           time.perf_counter() - started)


def _record_failure(state: PipelineState, cycle: int, step: str, exc: BaseException,
                    ended_ms: int) -> None:
    if isinstance(exc, Dv365Error):
        message = exc.render()
    elif isinstance(exc, KeyboardInterrupt):
        message = "interrupted"
    else:
        message = f"internal error: {type(exc).__name__}: {exc}"
    if state.step(cycle, step) is not None:
        state.fail_step(cycle, step, message)
    state.fail_cycle(cycle, f"{step}: {message}", ended_ms)
