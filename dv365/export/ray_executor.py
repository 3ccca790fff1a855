"""Shards on a Ray cluster (``dv365 export --ray local|auto|ADDRESS``), an
:class:`~dv365.export.parallel.Executor`.

A pool of ``workers`` Ray actors, each holding one
:class:`~dv365.export.shards.ShardWorker` (the model, its compiled kernels and the store
opened once per actor), with ``gpus_per_worker`` GPUs (Ray sets the actor's
``CUDA_VISIBLE_DEVICES``, so its ``cuda`` is its own GPU) and ``cpus_per_worker`` CPUs.
Shards are handed out one at a time to whichever actor is free, so a slower worker takes
fewer (tasks over fixed user ranges would wait for the slowest). An actor whose shard
raises goes on; one that dies fails its shard and leaves the pool; a shard that overruns
``timeout_s`` is failed and its actor killed.

``ray`` is an optional dependency (``pip install 'dv365[ray]'``), imported here only.
Ray Data is not used: the unit of work is a shard of the export's own plan, which is what
keeps its records, checksums and resume the single-process export's.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Iterator, Sequence

from dv365.errors import UsageError
from dv365.export.parallel import Fault, ShardFailure
from dv365.export.shards import ShardResult, ShardTask, ShardWorker, WorkerInputs

READY_TIMEOUT_S = 600.0
"""How long the actors may take to be placed and to load the model before the export gives
up (a cluster without the CPUs or GPUs asked for never places them)."""

PROBE_TIMEOUT_S = 5.0
"""How long a cluster address may take to accept a TCP connection before it is called
unreachable (Ray's own connect retries for minutes)."""


def probe_address(address: str, where: str = "--ray") -> None:
    """A one-line :class:`UsageError` at once when ``address`` (``host:port`` or
    ``ray://host:port``) cannot be read or accepts no connection; ``auto`` is not probed."""
    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UsageError(f"cannot read {address!r} as a Ray address", where=where,
                         hint="local, auto, HOST:PORT (the head's GCS port, 6379 by default) "
                              "or ray://HOST:10001")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(f"cannot reach the Ray cluster at {address} ({reason})", where=where,
                         hint="start it (`ray start --head`) or pass its address") from None


def import_ray(where: str = "--ray"):
    """The ``ray`` module, or a one-line :class:`UsageError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError("Ray is not installed", where=where,
                         hint="pip install 'dv365[ray]'") from None
    return ray


class _RayWorker:
    """The body of one actor (wrapped by ``ray.remote`` in :meth:`RayExecutor.run`)."""

    def __init__(self, inputs: WorkerInputs, gpus: float, fault: Fault | None):
        device = "cuda" if gpus > 0 else "cpu"
        self.worker = ShardWorker(inputs, device)
        self.fault = fault

    def ready(self) -> str:
        return self.worker.name

    def run(self, task: ShardTask) -> ShardResult | ShardFailure:
        try:
            if self.fault is not None:
                self.fault(task)
            return self.worker.run(task)
        except Exception as exc:
            return ShardFailure.of(exc)


class RayExecutor:
    """Shards on ``workers`` Ray actors (see the module docstring).

    ``address``: ``None`` or ``"local"`` starts a Ray instance on this machine when none is
    running in this process, ``"auto"`` joins the cluster this machine belongs to, anything
    else is a cluster address (``ray://head:10001``, ``head:6379``); when this process is
    connected to Ray already, that connection is used. ``fault`` is called in the actor
    before each shard (tests inject failures with it)."""

    def __init__(self, address: str | None = None, *, workers: int = 1,
                 gpus_per_worker: float = 0, cpus_per_worker: float = 1,
                 timeout_s: float | None = None, ready_timeout_s: float = READY_TIMEOUT_S,
                 fault: Fault | None = None, where: str = "--ray"):
        if workers < 1:
            raise UsageError("at least one worker", where="--workers")
        if gpus_per_worker < 0 or cpus_per_worker < 0:
            raise UsageError("a worker's CPUs and GPUs cannot be negative",
                             where="--gpus-per-worker")
        self.address = None if address in (None, "", "local") else address
        if self.address is not None:
            probe_address(self.address, where)  # before any data is read
        self.workers, self.gpus, self.cpus = int(workers), gpus_per_worker, cpus_per_worker
        self.timeout_s, self.ready_timeout_s, self.fault = timeout_s, ready_timeout_s, fault
        self.where = where

    @property
    def description(self) -> str:
        where = self.address or "a local Ray"
        return (f"{self.workers} Ray workers on {where} ({self.cpus:g} CPU"
                + (f", {self.gpus:g} GPU" if self.gpus else "") + " each)")

    def connect(self):
        """``ray``, connected (started locally when this process has no connection)."""
        ray = import_ray()
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            except ConnectionError as exc:
                raise UsageError(f"cannot reach the Ray cluster: {exc}", where=self.where,
                                 hint="start it (`ray start --head`) or pass its address") \
                    from None
        return ray

    def run(self, inputs: WorkerInputs, tasks: Sequence[ShardTask]
            ) -> Iterator[tuple[ShardTask, ShardResult | ShardFailure]]:
        if not tasks:
            return
        ray = self.connect()
        actor = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=0,
                           max_concurrency=1)(_RayWorker)
        actors = [actor.remote(inputs, self.gpus, self.fault)
                  for _ in range(min(self.workers, len(tasks)))]
        try:
            yield from self._dispatch(ray, actors, list(tasks))
        finally:
            for a in actors:
                ray.kill(a, no_restart=True)

    def _dispatch(self, ray, actors, tasks: list[ShardTask]
                  ) -> Iterator[tuple[ShardTask, ShardResult | ShardFailure]]:
        ready = {a.ready.remote(): a for a in actors}
        pool, reason = [], "no Ray worker started"
        waiting, _ = ray.wait(list(ready), num_returns=len(ready),
                              timeout=self.ready_timeout_s)
        for ref in waiting:
            try:
                ray.get(ref, timeout=self.ready_timeout_s)
                pool.append(ready[ref])
            except Exception as exc:  # the model or the store did not open there
                reason = f"a Ray worker did not start: {ShardFailure.of(exc).reason}"
        if not waiting:
            reason = (f"no Ray worker was ready within {self.ready_timeout_s:g} s: the "
                      f"cluster may lack {self.cpus:g} CPU"
                      + (f" and {self.gpus:g} GPU" if self.gpus else "") + " per worker "
                      f"(it has {ray.cluster_resources()})")
        running: dict = {}  # object ref -> (task, actor, started)
        todo = list(reversed(tasks))

        def hand_out() -> None:
            busy = {id(a) for _, a, _ in running.values()}
            for a in pool:
                if todo and id(a) not in busy:
                    task = todo.pop()
                    running[a.run.remote(task)] = (task, a, time.monotonic())

        hand_out()
        while running:
            done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for ref in done:
                task, a, _ = running.pop(ref)
                try:
                    outcome = ray.get(ref, timeout=60)
                except Exception as exc:  # the actor died: drop it from the pool
                    outcome = ShardFailure(f"Ray worker died: {ShardFailure.of(exc).reason}")
                    pool = [p for p in pool if p is not a]
                    reason = "every Ray worker died"
                yield task, outcome
            if self.timeout_s is not None:
                now = time.monotonic()
                for ref, (task, a, started) in list(running.items()):
                    if now - started > self.timeout_s:
                        running.pop(ref)
                        ray.kill(a, no_restart=True)
                        pool = [p for p in pool if p is not a]
                        reason = "every Ray worker died"
                        yield task, ShardFailure(f"shard took over {self.timeout_s:g} s")
            hand_out()
        for task in reversed(todo):  # no worker left to run them
            yield task, ShardFailure(reason)

