"""One worker process per device of this host (``dv365 export --devices cuda:0,cuda:1`` or
``--workers N``), an :class:`~dv365.export.parallel.Executor`.

Each process is started fresh (``spawn``: CUDA and LMDB handles do not survive a fork),
sees only its own GPU (``CUDA_VISIBLE_DEVICES`` set before anything touches CUDA, so
``cuda:1`` is that process's ``cuda``), builds one
:class:`~dv365.export.shards.ShardWorker` and takes shards from a shared queue until it is
empty: a process that is faster takes more. A process that raises fails that shard and goes
on; one that dies (a crash, the OOM killer) or overruns ``timeout_s`` fails the shard it
held; the shards left go to the others. Workers die with the coordinator's process (a
SIGKILLed export leaves no worker writing into its draft).
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import time
from typing import Iterator, Sequence

from dv365.errors import UsageError
from dv365.export.parallel import Fault, ShardFailure
from dv365.export.shards import ShardResult, ShardTask, ShardWorker, WorkerInputs
from dv365.model.foundation import torch_device

PR_SET_PDEATHSIG = 1
POLL_S = 0.2
"""How often the coordinator looks for workers that died, and workers for a vanished
coordinator."""


class ProcessExecutor:
    """Shards on one spawned process per entry of ``devices`` (``cpu`` or ``cuda:N``).

    ``threads``: torch threads per process (default: this host's cores shared evenly).
    ``fault`` is called in the worker before each shard (tests inject failures with it)."""

    def __init__(self, devices: Sequence[str], *, threads: int | None = None,
                 timeout_s: float | None = None, fault: Fault | None = None,
                 where: str = "--devices"):
        devices = [d.strip() for d in devices]
        if not devices:
            raise UsageError("no devices to run on", where=where,
                             hint="for example --devices cuda:0,cuda:1")
        for d in devices:
            if d != "cpu" and not (d.startswith("cuda:") and d[5:].isdigit()):
                raise UsageError(f"unknown device {d!r}", where=where,
                                 hint="cpu or cuda:N, comma-separated")
        for d in devices:  # told now, not by every worker after its start-up
            if d != "cpu":
                torch_device(d, where=where, hint="list cpu devices, or run on a GPU machine")
        self.devices = devices
        self.threads = threads if threads is not None else max(
            1, (os.cpu_count() or 1) // len(devices))
        self.timeout_s = timeout_s
        self.fault = fault

    @property
    def description(self) -> str:
        return f"{len(self.devices)} processes ({', '.join(self.devices)})"

    def run(self, inputs: WorkerInputs, tasks: Sequence[ShardTask]
            ) -> Iterator[tuple[ShardTask, ShardResult | ShardFailure]]:
        import torch.multiprocessing as mp

        if not tasks:
            return
        context = mp.get_context("spawn")
        todo, results = context.Queue(), context.Queue()
        for task in tasks:
            todo.put(task)
        for _ in self.devices:
            todo.put(None)  # one "no more work" for each worker
        by_index = {t.index: t for t in tasks}
        workers = [context.Process(target=_serve, name=f"dv365-export-{n}", daemon=True,
                                   args=(n, inputs, device, self.threads, self.fault, todo,
                                         results, os.getpid()))
                   for n, device in enumerate(self.devices)]
        for worker in workers:
            worker.start()
        held: dict[int, tuple[int, float]] = {}  # worker -> (shard, when it started it)
        outstanding = set(by_index)
        broken = ""
        try:
            while outstanding:
                try:
                    message = results.get(timeout=POLL_S)
                except queue.Empty:
                    message = None
                if message is not None:
                    kind, n, payload = message
                    if kind == "start":
                        held[n] = (payload, time.monotonic())
                    elif kind in ("done", "failed"):
                        index, outcome = payload
                        held.pop(n, None)
                        if index in outstanding:
                            outstanding.discard(index)
                            yield by_index[index], outcome
                    elif kind == "broken":  # the worker could not start; it has left
                        broken = payload.reason
                    continue
                now = time.monotonic()
                for n, worker in enumerate(workers):
                    index, since = held.get(n, (None, now))
                    late = self.timeout_s is not None and now - since > self.timeout_s
                    if worker.is_alive() and not late:
                        continue
                    if late:
                        worker.kill()
                        worker.join()
                    held.pop(n, None)
                    if index in outstanding:
                        outstanding.discard(index)
                        why = (f"shard took over {self.timeout_s:g} s" if late else
                               f"worker process died (exit code {worker.exitcode})")
                        yield by_index[index], ShardFailure(f"{why} on {self.devices[n]}")
                if not any(w.is_alive() for w in workers):
                    reason = broken or "every worker process ended"
                    for index in sorted(outstanding):
                        yield by_index[index], ShardFailure(reason)
                    outstanding.clear()
        finally:
            for worker in workers:
                if worker.is_alive():
                    worker.kill()
                worker.join()
            for q in (todo, results):
                q.cancel_join_thread()
                q.close()


def visible_device(device: str, environ: dict | None = None) -> tuple[str, str | None]:
    """``(device for torch, CUDA_VISIBLE_DEVICES)`` of a worker on ``device``: ``cuda:N``
    becomes the process's only GPU, the N-th of those this process may see."""
    if device == "cpu":
        return "cpu", None
    n = int(device.split(":", 1)[1])
    visible = (environ if environ is not None else os.environ).get("CUDA_VISIBLE_DEVICES")
    if visible:
        names = [v.strip() for v in visible.split(",") if v.strip()]
        if n >= len(names):
            raise UsageError(f"{device} is not visible (CUDA_VISIBLE_DEVICES={visible})",
                             where="--devices")
        return "cuda", names[n]
    return "cuda", str(n)


def _serve(n: int, inputs: WorkerInputs, device: str, threads: int, fault: Fault | None,
           todo, results, coordinator: int) -> None:
    """A worker process: build the worker, then take shards until told to stop."""
    _die_with_parent()
    try:
        torch_device, visible = visible_device(device)
        if visible is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = visible
        if inputs.threads is None:
            inputs = _with_threads(inputs, threads)
        worker = ShardWorker(inputs, torch_device)
    except BaseException as exc:
        results.put(("broken", n, ShardFailure.of(exc)))
        return
    try:
        while True:
            try:
                task = todo.get(timeout=POLL_S)
            except queue.Empty:
                if os.getppid() != coordinator:  # the coordinator is gone: so is the job
                    return
                continue
            if task is None or os.getppid() != coordinator:
                return
            results.put(("start", n, task.index))
            try:
                if fault is not None:
                    fault(task)
                outcome = worker.run(task)
            except Exception as exc:
                outcome = ShardFailure.of(exc)
            results.put(("done" if isinstance(outcome, ShardResult) else "failed", n,
                         (task.index, outcome)))
    finally:
        worker.close()


def _die_with_parent() -> None:
    """Ask Linux to kill this process when the coordinator dies (a SIGKILLed export must
    not leave workers writing into its draft); elsewhere the queue polls notice it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _with_threads(inputs: WorkerInputs, threads: int) -> WorkerInputs:
    import dataclasses

    return dataclasses.replace(inputs, threads=threads)
