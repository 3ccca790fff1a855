"""Export across workers: the coordinator and the :class:`Executor` protocol its executors
implement (:class:`~dv365.export.ray_executor.RayExecutor` over a Ray cluster,
:class:`~dv365.export.process_executor.ProcessExecutor` one process per device of a host).

:func:`dv365.export.job.export_snapshot` with an executor does everything the single-process
export does in its own process: the checks, the draft manifest, staging (or finding the
staged draft to resume), the shard plan (the same boundaries, so the same records and the
same per-shard checksums) and, once every shard is complete, the one atomic publish. Only
the shards' computation and writes move to the workers, which write into that same staged
draft (:class:`~dv365.export.shards.ShardWorker`).

:func:`run_shards` hands the shards to the executor and collects a
:class:`~dv365.export.shards.ShardResult` per shard; a shard whose worker raised, crashed
or timed out is handed out again, up to ``retries`` more times. A shard redone leaves no
duplicate (a write replaces a user's record). When a shard still fails, nothing is
published: the draft keeps the shards that completed and the next run resumes it.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence

from dv365.data.metadata import one_line
from dv365.errors import Dv365Error
from dv365.export.shards import ShardResult, ShardTask, WorkerInputs

DEFAULT_RETRIES = 2


@dataclass(frozen=True)
class ShardFailure:
    """A shard a worker did not finish: why, in one line, and the worker's traceback."""

    reason: str
    details: str = ""

    @classmethod
    def of(cls, exc: BaseException) -> "ShardFailure":
        return cls(f"{type(exc).__name__}: {one_line(exc)}",
                   "".join(traceback.format_exception(exc)))


Fault = Callable[[ShardTask], None]
"""A hook a worker calls before each shard (tests inject failures with it)."""


class Executor(Protocol):
    """Runs shards on workers that each build one :class:`~dv365.export.shards.ShardWorker`
    and then take shards one at a time."""

    @property
    def description(self) -> str:
        """Where the shards run, for messages (``2 processes (cpu, cpu)``)."""

    def run(self, inputs: WorkerInputs, tasks: Sequence[ShardTask]
            ) -> Iterator[tuple[ShardTask, ShardResult | ShardFailure]]:
        """Every task's outcome as it completes, each task once; a worker that fails or
        dies fails its task (yielded, never raised). Workers are gone when it returns."""


class ShardsFailed(Dv365Error):
    """Shards that still failed after their retries; nothing was published."""


def run_shards(executor: Executor, inputs: WorkerInputs, tasks: Sequence[ShardTask], *,
               retries: int = DEFAULT_RETRIES, where: str | None = None,
               on_done: Callable[[ShardTask, ShardResult], object] | None = None
               ) -> list[ShardResult]:
    """The results of every task, each computed by ``executor``'s workers; a failed task is
    run again (in a new round, after the others) up to ``retries`` times. A task that fails
    every time raises :class:`ShardsFailed` once the round is over (the shards that
    completed stay in the draft)."""
    if retries < 0:
        raise ValueError("retries must not be negative")
    results: list[ShardResult] = []
    pending = list(tasks)
    failures: dict[int, ShardFailure] = {}
    for _ in range(retries + 1):
        if not pending:
            break
        failed = []
        for task, outcome in executor.run(inputs, pending):
            if isinstance(outcome, ShardFailure):
                failed.append(task)
                failures[task.index] = outcome
            else:
                results.append(outcome)
                if on_done is not None:
                    on_done(task, outcome)
        pending = sorted(failed, key=lambda t: t.index)
    if pending:
        first = failures[pending[0].index]
        shards = ", ".join(str(t.index) for t in pending[:5]) + (", ..." if len(pending) > 5
                                                                 else "")
        raise ShardsFailed(f"{len(pending)} shard(s) failed {retries + 1} times on "
                           f"{executor.description} (shard {shards}): {first.reason}",
                           where=where,
                           hint="nothing was published; the staged draft keeps the completed "
                                "shards: fix the cause and run the export again to resume")
    return results
