"""A shard of an export: which users it holds, how its records are computed, and the worker
that computes shards in a process of its own.

The job (:func:`dv365.export.job.export_snapshot`) plans shards once: the data's users in
ascending id order, ``shard_size`` a shard (:func:`plan_shards`). A shard's records depend
only on the model, the data, the request time and its users (the encoder runs on fixed
shapes, :mod:`dv365.export.encode`), so a shard computed by another process, on another
machine of the same type and thread count, is the same bytes with the same checksum.

:class:`ShardWorker` is what every worker of an executor (:mod:`dv365.export.parallel`)
holds: it rebuilds the model and its kernels once from :class:`WorkerInputs` (paths and
values, so it travels to another process), opens the staged snapshot the coordinator
created, and then computes, writes and finishes one :class:`ShardTask` after another.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from dv365.data.timeline import TimelineStore
from dv365.export.codecs import codec_named
from dv365.export.encode import Phases, UserEncoder
from dv365.export.manifest import Manifest
from dv365.export.records import records_checksum
from dv365.export.sink import ShardDone, SnapshotSink
from dv365.model.foundation import load_foundation_model


@dataclass(frozen=True)
class ShardTask:
    """Shard ``index``: the store users ``lo:hi``."""

    index: int
    lo: int
    hi: int
    recompute: np.ndarray | None = None
    """For a refresh, ``bool [hi - lo]``: the users to compute (the others are copied from
    the parent when it has them)."""

    @property
    def users(self) -> int:
        return self.hi - self.lo


def plan_shards(users: int, shard_size: int, *, skip=(),
                recompute: np.ndarray | None = None) -> list[ShardTask]:
    """The shards of ``users`` store users, ``shard_size`` a shard, leaving out the indices
    in ``skip`` (shards a resumed draft has completed)."""
    return [ShardTask(index, lo, min(users, lo + shard_size),
                      None if recompute is None else recompute[lo:lo + shard_size].copy())
            for index, lo in enumerate(range(0, users, shard_size)) if index not in skip]


def compute_shard(encoder: UserEncoder, sink: SnapshotSink, since: str | None,
                  task: ShardTask, advance=None) -> tuple[np.ndarray, np.ndarray, int]:
    """``(user ids, records, users computed)`` of ``task``: records copied from snapshot
    ``since`` where the task says a user need not be computed and the parent has it, the
    others computed by ``encoder``."""
    store, lo, hi = encoder.store, task.lo, task.hi
    ids = np.asarray(store.user_ids[lo:hi], dtype=np.int64)
    records = np.empty((hi - lo, encoder.record_size), dtype=np.uint8)
    compute = np.ones(hi - lo, dtype=bool)
    if since is not None and task.recompute is not None:
        compute = task.recompute.copy()
        keep = np.flatnonzero(~compute)
        if len(keep):
            t0 = time.perf_counter()
            opened = sink.read(ids[keep], version=since)
            encoder.phases.add("read", t0)
            records[keep[opened.found]] = opened.records[opened.found]
            compute[keep[~opened.found]] = True  # new in the data (or unreadable): compute
            if advance is not None:
                advance(int(opened.found.sum()))
    todo = np.flatnonzero(compute)
    size = encoder.batch_size
    batches = (todo[i:i + size] + lo for i in range(0, len(todo), size))
    for users, batch_records in encoder.stream(batches):
        records[users - lo] = batch_records
        if advance is not None:
            advance(len(users))
    return ids, records, len(todo)


def shard_done(index: int, ids: np.ndarray, records: np.ndarray, recomputed: int) -> ShardDone:
    """What a finished shard records: its counts and its records' checksum."""
    return ShardDone(index, len(ids), int(records.nbytes), records_checksum(ids, records),
                     recomputed)


@dataclass(frozen=True)
class WorkerInputs:
    """Everything a worker rebuilds its state from (plain values: it is pickled to the
    worker's process)."""

    checkpoint: str
    data: str
    """The timeline store's cache entry (:attr:`TimelineStore.path`), opened memory-mapped;
    on a cluster it must be on a file system every worker mounts at the same path."""
    at_ms: int
    codec: str
    batch_size: int
    draft: Manifest
    """The staged snapshot the shards are written into (the coordinator staged it)."""
    open_sink: Callable[[], SnapshotSink]
    """Opens the target store in the worker (picklable: ``functools.partial(open_store,
    uri)``)."""
    since: str | None = None
    threads: int | None = None
    """torch's intra-op threads in the worker (``None``: what the executor gives it). Records
    are the same bytes only at the same thread count as the run they are compared with."""


@dataclass(frozen=True)
class ShardResult:
    """A shard a worker finished."""

    done: ShardDone
    phases: dict[str, float]
    worker: str
    """Who computed it (host and device), for messages."""


class ShardWorker:
    """Computes shards of one export in this process: the model, kernels and store opened
    once (see the module docstring)."""

    def __init__(self, inputs: WorkerInputs, device: str = "cpu"):
        if inputs.threads is not None:
            torch.set_num_threads(inputs.threads)
        self.inputs = inputs
        self.name = f"{os.uname().nodename}:{os.getpid()}:{device}"
        trained = load_foundation_model(inputs.checkpoint)
        store = TimelineStore.load(inputs.data)
        self.phases = Phases()
        self.encoder = UserEncoder(trained.model, trained.ir, store, codec_named(inputs.codec),
                                   inputs.at_ms, device=device, batch_size=inputs.batch_size,
                                   phases=self.phases, history=inputs.draft.history)
        self.sink = inputs.open_sink()
        self.staged = self.sink.stage(inputs.draft)

    def run(self, task: ShardTask) -> ShardResult:
        """Compute, write and finish ``task``; what it took per phase."""
        before = dict(self.phases)
        ids, records, recomputed = compute_shard(self.encoder, self.sink, self.inputs.since,
                                                 task)
        t0 = time.perf_counter()
        done = shard_done(task.index, ids, records, recomputed)
        self.staged.write(ids, records)
        self.staged.finish_shard(done)
        self.phases.add("write", t0)
        return ShardResult(done, {k: v - before[k] for k, v in self.phases.items()}, self.name)

    def close(self) -> None:
        close = getattr(self.sink, "close", None)
        if close is not None:
            close()
