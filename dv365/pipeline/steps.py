"""The steps of one cycle: collect, train, export, verify, publish, gc.

Each step has ``inputs(context)`` (a JSON mapping: what decides its result; its hash keys the
step's row in the state database) and ``run(context)`` (does the work, returns the status and
the outputs JSON). Every step is idempotent: run again on the same inputs it finds its work
done (collect: the files in place; train: the run at its target step; export: the version
published; publish: the version current; gc: nothing left to remove) and says so instead of
doing it twice. A step only reads the outputs of the steps before it.

**Publishing once.** The export step publishes its snapshot *without* making it current (a
sink that passes ``make_current=False``; :func:`dv365.export.job.export_snapshot` would
otherwise promote it): readers keep the current snapshot until the publish step promotes
the verified one, in one state-document update of the store. A kill after the store
published the version and before the state database recorded it is found on the rerun: a
published, non-current version of the same inputs (checkpoint hash, data key, time, codec,
parent) is adopted, not exported again; a publish whose version is already current records
that and promotes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dv365.data.timeline import TimelineStore, discard_ancestors
from dv365.durations import DAY_MS
from dv365.errors import ConfigError
from dv365.export.job import checkpoint_hash, data_key, export_snapshot
from dv365.export.manifest import Manifest
from dv365.export.request_time import DataSpan
from dv365.model.checkpoint import latest_checkpoint
from dv365.model.train import train
from dv365.pipeline.collect import collect, planned_files
from dv365.pipeline.config import PipelineConfig
from dv365.pipeline.state import Cycle, PipelineState
from dv365.pipeline.verify import verify_snapshot
from dv365.plugins import Plugins
from dv365.stores import open_store
from dv365.stores.base import Store

Outputs = dict[str, Any]


@dataclass
class CycleContext:
    """What the steps of one cycle share: the config, the state, the opened data and store,
    and the outputs of the steps so far."""

    config: PipelineConfig
    state: PipelineState
    cycle: Cycle
    clock: Callable[[], float] = time.time
    progress: Callable | None = None
    plugins: Plugins | None = None
    outputs: dict[str, Outputs] = field(default_factory=dict)
    _timeline: TimelineStore | None = None
    _store: Store | None = None

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def timeline(self) -> TimelineStore:
        """The data's timeline store (built into the cache once its files changed)."""
        if self._timeline is None:
            self._timeline = TimelineStore.open(self.config.data,
                                                cache_dir=self.config.cache_dir)
        return self._timeline

    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.config.store, plugins=self.plugins,
                                     where=self.config.where("store"))
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


class Collect:
    """Landed batches validated and moved into the data folder; the timeline store opened
    (the cached arrays extended by the collected files, rebuilt when an old file changed)."""

    name = "collect"

    def inputs(self, ctx: CycleContext) -> dict:
        return {"data": str(ctx.config.data),
                "files": planned_files(ctx.config.data, ctx.config.landing_dir)}

    def run(self, ctx: CycleContext) -> tuple[str, Outputs]:
        collected = collect(ctx.config.data, ctx.config.landing_dir)
        t0 = time.perf_counter()
        store = ctx.timeline()
        return "done", {"batches": collected.batches, "files": collected.files,
                        "rows": collected.rows, "data_key": data_key(store),
                        "users": store.num_users, "events": store.num_events,
                        "end_ms": DataSpan.of(store).end_ms,
                        "timeline": store.opened,
                        "timeline_s": round(time.perf_counter() - t0, 3)}


def checkpoint_step(path: Path | None) -> int:
    """The step of a rolling checkpoint ``step-<N>.pt`` (0 for none)."""
    return 0 if path is None else int(path.stem.split("-")[1])


class Train:
    """Fine-tune the foundation model from its newest checkpoint when the retrain policy says
    it is due (or there is no checkpoint), by the train config's ``steps`` more steps."""

    name = "train"

    def inputs(self, ctx: CycleContext) -> dict:
        config = ctx.config.train_config
        if config.steps is None:
            raise ConfigError("the pipeline fine-tunes by steps: give the train config "
                              "`steps`, not `epochs`", where=ctx.config.where("train"))
        started = ctx.state.step(ctx.cycle.id, self.name)
        if started is not None:  # the plan this cycle made when the step first started
            due, reason, target = (started.inputs["due"], started.inputs["reason"],
                                   started.inputs["target"])
        else:
            latest = latest_checkpoint(config.out)
            due, reason = self._due(ctx, latest)
            target = checkpoint_step(latest) + (config.steps if due else 0)
        return {"data_key": ctx.outputs["collect"]["data_key"], "config": config.to_json(),
                "due": due, "reason": reason, "target": target}

    def _due(self, ctx: CycleContext, latest: Path | None) -> tuple[bool, str]:
        policy = ctx.config.retrain
        if latest is None:
            return True, "no checkpoint yet"
        prior = ctx.state.last_finished(self.name, before=ctx.cycle.id)
        if policy.every_cycles is not None:
            # cycles completed since the one that trained last (that one included)
            since = ctx.state.done_cycles_from(prior.cycle if prior else 0)
            return (since >= policy.every_cycles,
                    f"{since} cycle(s) done since the last training, due every "
                    f"{policy.every_cycles}")
        last_ms = prior.ended_ms if prior else int(latest.stat().st_mtime * 1000)
        days = (ctx.now_ms() - last_ms) / DAY_MS
        return (days >= policy.every_days,
                f"{days:.2f} day(s) since the last training, due every {policy.every_days:g}")

    def run(self, ctx: CycleContext) -> tuple[str, Outputs]:
        inputs = ctx.state.step(ctx.cycle.id, self.name).inputs
        config = ctx.config.train_config
        out: Outputs = {"due": inputs["due"], "reason": inputs["reason"]}
        status = "skipped"
        if inputs["due"]:
            t0 = time.perf_counter()
            tuned = config.model_copy(update={"steps": inputs["target"]})
            tuned._file = config._file
            result = train(tuned, plugins=ctx.plugins)
            out |= {"step": result.step, "resumed_from": result.resumed_from,
                    "seconds": round(time.perf_counter() - t0, 3)}
            status = "done"
        latest = latest_checkpoint(config.out)
        out |= {"checkpoint": str(latest), "checkpoint_hash": checkpoint_hash(latest),
                "checkpoint_step": checkpoint_step(latest)}
        return status, out


class _Unpromoted:
    """A store as an export's sink whose publish leaves the current version current."""

    def __init__(self, store: Store):
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def stage(self, draft: Manifest) -> Any:
        return _UnpromotedStage(self._store.stage(draft))


class _UnpromotedStage:
    def __init__(self, staged: Any):
        self._staged = staged

    def __getattr__(self, name: str) -> Any:
        return getattr(self._staged, name)

    def publish(self, manifest: Manifest, *, make_current: bool = True) -> None:
        self._staged.publish(manifest, make_current=False)


def _same_inputs(m: Manifest, inputs: dict, parent: str | None) -> bool:
    return (m.checkpoint_hash == inputs["checkpoint_hash"] and m.data_key == inputs["data_key"]
            and m.at_ms == inputs["at_ms"] and m.codec == inputs["codec"]
            and m.shard_size == inputs["options"]["shard_size"] and m.parent == parent)


class Export:
    """Every user's embedding at the data's end, published unpromoted: a refresh of the
    current snapshot (``since``) when the checkpoint is the one it was exported from, else a
    full export; nothing when the current snapshot has these very inputs."""

    name = "export"

    def inputs(self, ctx: CycleContext) -> dict:
        return {"checkpoint_hash": ctx.outputs["train"]["checkpoint_hash"],
                "data_key": ctx.outputs["collect"]["data_key"],
                "at_ms": ctx.outputs["collect"]["end_ms"], "codec": ctx.config.codec,
                "options": ctx.config.export.identity()}

    def run(self, ctx: CycleContext) -> tuple[str, Outputs]:
        inputs = self.inputs(ctx)
        store = ctx.store()
        current = store.current_version()
        parent = store.manifest(current) if current is not None else None
        base = {"current_before": current}
        if parent is not None and _same_inputs(parent, inputs, parent.parent):
            return "skipped", base | {"version": current, "users": parent.users,
                                      "recomputed": 0, "reason": "the current snapshot has "
                                                                 "these inputs"}
        since = current if (parent is not None
                            and parent.checkpoint_hash == inputs["checkpoint_hash"]
                            and parent.codec == inputs["codec"]
                            and parent.at_ms <= inputs["at_ms"]) else None
        for info in store.versions():
            m = info.manifest
            if not info.current and _same_inputs(m, inputs, since):
                return "done", base | {"version": m.id, "parent": since, "users": m.users,
                                       "recomputed": m.recomputed, "adopted": True}
        t0 = time.perf_counter()
        result = export_snapshot(ctx.outputs["train"]["checkpoint"], ctx.timeline(),
                                 inputs["at_ms"], _Unpromoted(store), since=since,
                                 codec=inputs["codec"], plugins=ctx.plugins,
                                 progress=ctx.progress,
                                 **ctx.config.export.job_options(ctx.config.store,
                                                                 ctx.config._file))
        m = result.manifest
        return "done", base | {"version": m.id, "parent": since, "users": m.users,
                               "recomputed": m.recomputed, "copied": m.users - m.recomputed,
                               "resumed_shards": result.resumed_shards,
                               "seconds": round(time.perf_counter() - t0, 3)}


class Verify:
    """Counts, checksum and a recomputed sample of the exported version."""

    name = "verify"

    def inputs(self, ctx: CycleContext) -> dict:
        return {"version": ctx.outputs["export"]["version"],
                "sample": ctx.config.verify_sample}

    def run(self, ctx: CycleContext) -> tuple[str, Outputs]:
        t0 = time.perf_counter()
        verified = verify_snapshot(ctx.store(), ctx.outputs["export"]["version"],
                                   ctx.timeline(), sample=ctx.config.verify_sample,
                                   device=ctx.config.export.device)
        return "done", verified.to_dict() | {"seconds": round(time.perf_counter() - t0, 3)}


class Publish:
    """Make the verified version current (once: a version found current is left so)."""

    name = "publish"

    def inputs(self, ctx: CycleContext) -> dict:
        return {"version": ctx.outputs["export"]["version"]}

    def run(self, ctx: CycleContext) -> tuple[str, Outputs]:
        version = ctx.outputs["export"]["version"]
        store = ctx.store()
        out = {"version": version, "previous": ctx.outputs["export"]["current_before"]}
        if store.current_version() == version:
            return "skipped", out | {"reason": "already current"}
        store.promote(version)
        return "done", out


class Gc:
    """Remove all but the newest ``gc_keep`` versions (never the current or a pinned one),
    and the timeline store entries of the data's earlier states."""

    name = "gc"

    def inputs(self, ctx: CycleContext) -> dict:
        return {"keep": ctx.config.gc_keep, "current": ctx.outputs["publish"]["version"]}

    def run(self, ctx: CycleContext) -> tuple[str, Outputs]:
        return "done", {"removed": ctx.store().gc(keep=ctx.config.gc_keep),
                        "timeline_removed": discard_ancestors(ctx.timeline())}


STEPS = (Collect(), Train(), Export(), Verify(), Publish(), Gc())
