"""Export across workers (dv365.export.parallel and dv365.export.shards): the coordinator
plans the single-process job's shards, workers write them into the one staged draft, a
failed shard is retried, and the snapshot is the single-process one.

The executor here runs its worker in this process (the protocol's simplest sibling); the
Ray and process executors have their own tests and reuse the fault hooks and checks below.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from dv365.export.parallel import ShardFailure, ShardsFailed, run_shards
from dv365.export.shards import ShardResult, ShardTask, ShardWorker, plan_shards
from dv365.export.sink import ShardDone
from dv365.stores import open_store
from tests.export.test_job import PLUGINS, _STORES, all_records, export, split

SHARED_FIXTURES = (split,)  # the data and checkpoint of tests/export/test_job.py


# ------------------------------------------------------------------ shared by the executors
def fresh_uri(scheme: str = "lmdb") -> str:
    """The URI of a new, empty store of ``scheme`` in a temporary folder."""
    return f"{scheme}://{tempfile.mkdtemp(dir=_STORES.name)}/store"


def opener(uri: str):
    """What a worker opens the store with (picklable)."""
    return functools.partial(open_store, uri)


class FailOnce:
    """A fault hook: the first attempt at each shard of ``shards`` raises (a marker file in
    ``folder`` remembers the attempt across processes)."""

    def __init__(self, folder: Path, shards, *, crash: bool = False):
        self.folder, self.shards, self.crash = str(folder), frozenset(shards), crash

    def __call__(self, task: ShardTask) -> None:
        if task.index not in self.shards:
            return
        marker = Path(self.folder) / f"failed-{task.index}"
        try:
            marker.touch(exist_ok=False)
        except FileExistsError:
            return
        if self.crash:
            os._exit(3)  # the worker's process dies mid-shard
        raise RuntimeError(f"injected failure of shard {task.index}")

    def attempts(self) -> int:
        return len(list(Path(self.folder).glob("failed-*")))


class AlwaysFail:
    """A fault hook: every attempt at a shard of ``shards`` raises."""

    def __init__(self, shards):
        self.shards = frozenset(shards)

    def __call__(self, task: ShardTask) -> None:
        if task.index in self.shards:
            raise RuntimeError(f"shard {task.index} cannot be computed")


def reference(split, store, at_ms: int, *, scheme: str = "lmdb", **options):
    """The single-process export to a new store: ``(sink, manifest)``."""
    sink = open_store(fresh_uri(scheme), plugins=PLUGINS)
    return sink, export(split, store, at_ms, sink, **options).manifest


def assert_same_snapshot(sink, expected_sink, expected) -> None:
    """Canonically the single-process snapshot: counts, checksum, every user's bytes."""
    m = sink.manifest()
    assert (m.users, m.bytes, m.checksum, m.recomputed) == (
        expected.users, expected.bytes, expected.checksum, expected.recomputed)
    assert all_records(sink) == all_records(expected_sink, expected.id)
    assert sink.staged() == []


def export_on(split, store, at_ms: int, uri: str, executor, **options):
    """``export_snapshot`` on ``executor``, its workers opening ``uri``."""
    sink = open_store(uri, plugins=PLUGINS)
    result = export(split, store, at_ms, sink, executor=executor, open_sink=opener(uri),
                    **options)
    return sink, result


class InProcess:
    """An executor whose one worker is in this process."""

    description = "this process"

    def __init__(self, fault=None):
        self.fault = fault
        self.rounds: list[list[int]] = []

    def run(self, inputs, tasks):
        self.rounds.append([t.index for t in tasks])
        worker = ShardWorker(inputs)
        try:
            for task in tasks:
                try:
                    if self.fault is not None:
                        self.fault(task)
                    yield task, worker.run(task)
                except Exception as exc:
                    yield task, ShardFailure.of(exc)
        finally:
            worker.close()


# ------------------------------------------------------------------ the plan
def test_shards_are_the_single_process_users_in_order_leaving_out_completed_ones():
    tasks = plan_shards(10, 4)
    assert [(t.index, t.lo, t.hi) for t in tasks] == [(0, 0, 4), (1, 4, 8), (2, 8, 10)]
    assert [t.index for t in plan_shards(10, 4, skip={0, 2})] == [1]
    mask = np.arange(10) % 3 == 0
    assert [t.recompute.tolist() for t in plan_shards(10, 4, recompute=mask)][2] == [False, True]


def test_a_failed_shard_is_run_again_in_a_later_round_until_the_retries_are_spent():
    class Flaky:
        description = "a test"

        def __init__(self, failures):
            self.failures, self.rounds = dict(failures), []

        def run(self, inputs, tasks):
            self.rounds.append([t.index for t in tasks])
            for t in tasks:
                if self.failures.get(t.index, 0):
                    self.failures[t.index] -= 1
                    yield t, ShardFailure(f"shard {t.index} broke")
                else:
                    yield t, ShardResult(ShardDone(t.index, t.users, 0, 0, t.users), {}, "w")

    tasks = plan_shards(12, 4)
    flaky = Flaky({1: 2})
    done = run_shards(flaky, None, tasks, retries=2)
    assert sorted(r.done.index for r in done) == [0, 1, 2]
    assert flaky.rounds == [[0, 1, 2], [1], [1]]
    with pytest.raises(ShardsFailed, match=r"1 shard\(s\) failed 2 times .*shard 1 broke") as e:
        run_shards(Flaky({1: 5}), None, tasks, retries=1, where="lmdb://x")
    assert e.value.where == "lmdb://x" and "resume" in e.value.hint


# ------------------------------------------------------------------ the snapshot
@pytest.mark.parametrize("scheme", ["lmdb", "parquet"])
def test_shards_written_by_a_worker_make_the_single_process_snapshot(split, scheme):
    store = split.store()
    end = int(store.ts.max()) + 1
    expected_sink, expected = reference(split, store, end, scheme=scheme, shard_size=48)
    sink, result = export_on(split, store, end, fresh_uri(scheme), InProcess(), shard_size=48)
    assert_same_snapshot(sink, expected_sink, expected)
    assert (result.computed, result.copied) == (store.num_users, 0)
    assert result.phases["kernels"] > 0 and result.phases["write"] > 0  # the workers' clocks


def test_a_shard_whose_worker_raised_is_retried_and_the_snapshot_is_exact(split, tmp_path):
    store = split.store()
    end = int(store.ts.max()) + 1
    expected_sink, expected = reference(split, store, end, shard_size=48)
    fault = FailOnce(tmp_path, {1, 3})
    executor = InProcess(fault)
    sink, _ = export_on(split, store, end, fresh_uri(), executor, shard_size=48)
    assert executor.rounds == [[0, 1, 2, 3, 4], [1, 3]] and fault.attempts() == 2
    assert_same_snapshot(sink, expected_sink, expected)


def test_a_shard_that_always_fails_changes_nothing_current_and_the_draft_resumes(split):
    store = split.store()
    end = int(store.ts.max()) + 1
    expected_sink, expected = reference(split, store, end, shard_size=48)
    uri = fresh_uri()
    sink, first = export_on(split, store, end - 1, uri, InProcess(), shard_size=48)
    with pytest.raises(ShardsFailed, match="shard 2 cannot be computed"):
        export_on(split, store, end, uri, InProcess(AlwaysFail({2})), shard_size=48, retries=1)
    assert sink.current_version() == first.manifest.id
    (draft,) = sink.staged()
    assert sorted(sink.stage(draft).completed_shards()) == [0, 1, 3, 4]
    executor = InProcess()
    sink, resumed = export_on(split, store, end, uri, executor, shard_size=48)
    assert executor.rounds == [[2]] and resumed.resumed_shards == 4
    assert resumed.manifest.id == draft.id and sink.current_version() == draft.id
    m = sink.manifest()
    assert (m.users, m.bytes, m.checksum) == (expected.users, expected.bytes, expected.checksum)
    assert all_records(sink) == all_records(expected_sink)


def test_an_incremental_refresh_on_workers_equals_the_single_process_refresh(split):
    old, new = split.store("old"), split.store("new")
    t0, t1 = int(old.ts.max()) + 1, int(new.ts.max()) + 1
    uri = fresh_uri()
    sink, parent = export_on(split, old, t0, uri, InProcess(), shard_size=48)
    expected_sink = open_store(fresh_uri(), plugins=PLUGINS)
    base = export(split, old, t0, expected_sink, shard_size=48).manifest
    expected = export(split, new, t1, expected_sink, since=base.id, shard_size=48).manifest
    sink, refreshed = export_on(split, new, t1, uri, InProcess(), shard_size=48,
                                since=parent.manifest.id)
    m = refreshed.manifest
    assert m.parent == parent.manifest.id and 0 < m.recomputed < m.users
    assert (m.recomputed, refreshed.computed, refreshed.copied) == (
        expected.recomputed, expected.recomputed, m.users - expected.recomputed)
    assert_same_snapshot(sink, expected_sink, expected)
