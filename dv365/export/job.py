"""The export job: every user's embedding at one request time, written to a snapshot.

:func:`export_snapshot` rebuilds the model from its checkpoint, checks that its spec means
the same on the data (:mod:`dv365.export.spec_match`) and that the request time is one the
data can answer (:mod:`dv365.export.request_time`), then writes the data's users in
ascending id order, ``shard_size`` users a shard, to a staged snapshot of a
:class:`~dv365.export.sink.SnapshotSink`, and publishes it with its completed manifest.

* **Resume.** The draft manifest's identity (checkpoint hash, spec hash, data key, time, gap,
  codec, shape, shard size, parent) decides every byte, so a staged draft of the same identity
  is continued: its completed shards are skipped, the others (re)written (a write replaces
  a user's record, so a shard cut short by a crash leaves no duplicate).
* **Incremental** (``since``): users whose embedding cannot have changed since the parent
  snapshot (:mod:`dv365.export.refresh`) get the parent's record, copied unchanged.
* **Overlap.** Writes run on a writer thread (one shard ahead at most), so computing the next
  shard overlaps writing the last; on CUDA the next batch's events travel to the GPU while
  this one computes (:class:`dv365.export.encode.UserEncoder`).
* **Across workers** (``executor``): the same checks, draft, shard plan and publish here; the
  shards computed and written into the staged draft by the executor's workers, a failed
  shard retried (:mod:`dv365.export.parallel`).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dv365.data.timeline import TimelineStore, default_cache_dir, file_digest
from dv365.data.vocabulary import Vocabulary
from dv365.durations import moment_text
from dv365.errors import DataError, UsageError
from dv365.export.codecs import codec_named
from dv365.export.encode import Phases, UserEncoder
from dv365.export.manifest import Manifest, new_snapshot_id
from dv365.export.records import combine_checksums, record_size
from dv365.export.parallel import DEFAULT_RETRIES, Executor, run_shards
from dv365.export.refresh import Refresh, changed_users
from dv365.export.request_time import DataSpan, check_request_time
from dv365.export.shards import (ShardResult, ShardTask, WorkerInputs, compute_shard,
                                 plan_shards, shard_done)
from dv365.export.sink import SnapshotSink, StagedSnapshot
from dv365.export.spec_match import check_vocabulary
from dv365.model.foundation import load_foundation_model
from dv365.paths import display_path
from dv365.plugins import Plugins

DEFAULT_BATCH_SIZE = 256
DEFAULT_SHARD_SIZE = 65_536


@dataclass(frozen=True)
class ExportResult:
    """What one export did."""

    manifest: Manifest
    seconds: float
    computed: int
    """Users whose embedding this process computed (a resumed export skips shards)."""
    copied: int
    """Users whose record this process copied from the parent."""
    resumed_shards: int
    """Shards a previous, interrupted run had completed."""
    refresh: Refresh | None
    phases: Phases
    setup_seconds: float = 0.0
    """Of ``seconds``, what came before the first shard: rebuilding the model, the checks,
    the changed-user computation, staging."""
    ran_on: str | None = None
    """The executor's description when workers computed the shards."""

    @property
    def users_per_second(self) -> float:
        return (self.computed + self.copied) / max(self.seconds, 1e-9)

    def summary(self) -> str:
        """The line ``dv365 export`` prints."""
        m = self.manifest
        parts = [f"exported {m.users:,} users in {self.seconds:.1f} s "
                 f"({self.users_per_second:,.0f} users/s), {m.bytes:,} bytes "
                 f"({m.codec}, [{m.rows}, {m.dim}])"]
        if m.parent is not None:
            parts.append(f"recomputed {m.recomputed:,}, copied {m.users - m.recomputed:,} "
                         f"from {m.parent}")
            if self.refresh is not None and self.refresh.everyone:
                parts.append(f"everyone recomputed: {self.refresh.everyone}")
        if self.resumed_shards:
            parts.append(f"resumed after {self.resumed_shards} completed shards")
        if self.ran_on is not None:
            parts.append(f"on {self.ran_on}")
        return "; ".join(parts) + f" -> version {m.id}"


def checkpoint_hash(path: str | os.PathLike) -> str:
    """A content hash of a checkpoint file (BLAKE2b-160, hex; remembered in the data cache
    like a dataset file's, so an unchanged checkpoint is read once)."""
    return file_digest(Path(path), default_cache_dir())


def data_key(store: TimelineStore) -> str:
    """The timeline store's content key (its cache entry's name)."""
    if store.path is None:
        raise ValueError("an export reads a cached timeline store (TimelineStore.open)")
    return Path(store.path).name


def _check_parent(parent: Manifest, draft: Manifest, since: str) -> None:
    if parent.checkpoint_hash != draft.checkpoint_hash:
        raise UsageError(f"snapshot {since} was exported from another checkpoint "
                         f"({parent.checkpoint})", where="--since",
                         hint="a new checkpoint changes every embedding: export in full, "
                              "leaving out --since")
    for name, what in (("spec_hash", "spec"), ("gap_ms", "gap"), ("codec", "codec"),
                       ("rows", "shape"), ("dim", "shape"), ("record_size", "record size")):
        if getattr(parent, name) != getattr(draft, name):
            raise UsageError(f"snapshot {since} has another {what} ({name} "
                             f"{getattr(parent, name)!r}, this export {getattr(draft, name)!r})",
                             where="--since", hint="export in full: leave out --since")
    if draft.at_ms < parent.at_ms:
        raise UsageError(f"request time {moment_text(draft.at_ms, 'ms')} is before snapshot "
                         f"{since}'s ({moment_text(parent.at_ms, 'ms')}): a refresh only "
                         "moves forward", where="--since",
                         hint="export in full at that time: leave out --since")


def _parent_store(store: TimelineStore, key: str) -> TimelineStore | None:
    """The parent's data from the timeline cache, if it is still there."""
    if store.path is None or key == data_key(store):
        return None
    entry = Path(store.path).parent / key
    if not entry.is_dir():
        return None
    try:
        return TimelineStore.load(entry)
    except Exception:  # a broken or foreign entry: refresh as if it were gone
        return None


class _Writer:
    """Writes shards on one thread, at most one shard behind the computation."""

    def __init__(self, staged: StagedSnapshot, phases: Phases):
        self.staged, self.phases = staged, phases
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dv365-export-writer")
        self.pending: Future | None = None

    def _write(self, index: int, ids: np.ndarray, records: np.ndarray, recomputed: int) -> None:
        t0 = time.perf_counter()
        done = shard_done(index, ids, records, recomputed)
        self.staged.write(ids, records)
        self.staged.finish_shard(done)
        self.phases.add("write", t0)

    def submit(self, index: int, ids: np.ndarray, records: np.ndarray, recomputed: int) -> None:
        """Write shard ``index`` and mark it finished (its checksum computed here too)."""
        self.wait()
        self.pending = self.pool.submit(self._write, index, ids, records, recomputed)

    def wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.pool.shutdown(wait=True)


def export_snapshot(checkpoint: str | os.PathLike, store: TimelineStore, at_ms: int,
                    sink: SnapshotSink, *, since: str | None = None, device: str = "cpu",
                    codec: str = "fp32", batch_size: int = DEFAULT_BATCH_SIZE,
                    shard_size: int = DEFAULT_SHARD_SIZE, plugins: Plugins | None = None,
                    progress: Callable[[str, int], object] | None = None,
                    phases: Phases | None = None, executor: Executor | None = None,
                    open_sink: Callable[[], SnapshotSink] | None = None,
                    retries: int = DEFAULT_RETRIES, history: int | None = None
                    ) -> ExportResult:
    """Export every user of ``store`` at request time ``at_ms`` (history strictly before
    ``at_ms - gap``; only its ``history`` most recent events when given) to ``sink`` and
    publish the snapshot (see the module docstring).

    ``progress(description, total)`` is a context manager factory yielding ``advance(n)``
    (:func:`dv365.console.progress`). With an ``executor``
    (:mod:`dv365.export.parallel`), its workers compute and write the shards into the
    draft this process staged, each opening the store with ``open_sink()``; a failed shard
    is run again up to ``retries`` times; ``device`` is then the executor's business.
    """
    started = time.perf_counter()
    if batch_size < 1 or shard_size < 1:
        raise UsageError("batch and shard sizes must be positive",
                         where="--batch-size" if batch_size < 1 else "--shard-size")
    if history is not None and history < 1:
        raise UsageError("the history limit must be at least 1 event", where="--history")
    if history is not None and since is not None:
        # The refresh rule (which users can have changed) assumes the whole history.
        raise UsageError("a refresh of a history-limited export is not supported",
                         where="--since", hint="export in full: leave out --since")
    if executor is not None and open_sink is None:
        raise ValueError("an export on an executor needs open_sink (its workers open the "
                         "store themselves)")
    phases = phases if phases is not None else Phases()
    path = Path(checkpoint)
    if not path.is_file():
        raise UsageError("no such checkpoint file", where=display_path(path))
    chosen = codec_named(codec, plugins=plugins, where="--codec")
    trained = load_foundation_model(path, plugins=plugins)
    ir, model = trained.ir, trained.model
    if model.encoder is None:
        raise UsageError("the checkpoint's model has no user tower: it has no user embedding "
                         "to export", where=display_path(path))
    check_vocabulary(ir, Vocabulary.of_store(store), where=display_path(path),
                     data_where=display_path(store.source) if store.source else "data")
    check_request_time(at_ms, DataSpan.of(store), ir.gap_ms)
    rows, dim = int(model.encoder.num_outputs), int(model.encoder.dim)
    chosen.require(rows, dim, where="--codec")
    draft = Manifest(
        id=new_snapshot_id(at_ms), parent=since, checkpoint=str(path),
        checkpoint_hash=checkpoint_hash(path), spec_hash=ir.content_hash(),
        data_key=data_key(store), at_ms=int(at_ms), gap_ms=ir.gap_ms, codec=chosen.name,
        rows=rows, dim=dim, record_size=record_size(chosen.payload_size(rows, dim)),
        shard_size=int(shard_size), created_ms=int(time.time() * 1000),
        history=None if history is None else int(history))
    refresh = None
    if since is not None:
        parent = sink.manifest(since)
        _check_parent(parent, draft, since)
        refresh = changed_users(ir, store, parent.at_ms, at_ms,
                                parent_store=_parent_store(store, parent.data_key))
    encoder = None
    if executor is None:
        encoder = UserEncoder(model, ir, store, chosen, at_ms, device=device,
                              batch_size=batch_size, phases=phases, history=history)
    for old in sink.staged():
        if old.identity() == draft.identity():
            draft = old  # continue the interrupted export of the same inputs
            break
    staged = sink.stage(draft)
    completed = staged.completed_shards()
    setup_seconds = time.perf_counter() - started
    users = store.num_users
    tasks = plan_shards(users, shard_size, skip=completed,
                        recompute=None if refresh is None else refresh.recompute)
    bar = progress("exporting users", users) if progress is not None else nullcontext(None)
    with bar as advance:
        if advance is not None:
            advance(users - sum(t.users for t in tasks))  # completed by an earlier run
        if executor is None:
            computed = _run_here(encoder, sink, since, staged, tasks, phases, advance)
        else:
            inputs = WorkerInputs(str(path), str(store.path), int(at_ms), chosen.name,
                                  int(batch_size), draft, open_sink, since)
            computed = _run_on(executor, inputs, tasks, phases, advance, retries,
                               where=sink.display_uri)
    copied = sum(t.users for t in tasks) - computed
    shards = staged.completed_shards()
    manifest = draft.completed(
        users=sum(s.users for s in shards.values()), bytes=sum(s.bytes for s in shards.values()),
        checksum=combine_checksums([s.checksum for s in shards.values()]),
        recomputed=sum(s.recomputed for s in shards.values()))
    planned = -(-users // shard_size)
    if len(shards) != planned or manifest.users != users:
        raise DataError(f"the staged snapshot holds {len(shards)} of {planned} shards, "
                        f"{manifest.users:,} of {users:,} users", where=sink.display_uri,
                        hint="it is inconsistent: drop it with `dv365 store gc` and export again")
    staged.publish(manifest)
    return ExportResult(manifest, time.perf_counter() - started, computed, copied,
                        len(completed), refresh, phases, setup_seconds,
                        None if executor is None else executor.description)


def _run_here(encoder: UserEncoder, sink: SnapshotSink, since: str | None,
              staged: StagedSnapshot, tasks: list[ShardTask], phases: Phases, advance) -> int:
    """Compute ``tasks`` in this process, writing each on the writer thread while the next
    computes; the users computed."""
    computed = 0
    writer = _Writer(staged, phases)
    try:
        for task in tasks:
            ids, records, recomputed = compute_shard(encoder, sink, since, task, advance)
            computed += recomputed
            writer.submit(task.index, ids, records, recomputed)
        writer.close()
    except BaseException:
        writer.pool.shutdown(wait=True)
        raise
    return computed


def _run_on(executor: Executor, inputs: WorkerInputs, tasks: list[ShardTask], phases: Phases,
            advance, retries: int, *, where: str) -> int:
    """Compute ``tasks`` on ``executor``'s workers; the users computed."""
    def done(task: ShardTask, result: ShardResult) -> None:
        for name, seconds in result.phases.items():
            phases[name] = phases.get(name, 0.0) + seconds
        if advance is not None:
            advance(task.users)

    results = run_shards(executor, inputs, tasks, retries=retries, where=where, on_done=done)
    return sum(r.done.recomputed for r in results)
