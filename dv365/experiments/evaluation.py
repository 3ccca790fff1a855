"""``dv365 eval``: does the DV365 embedding help a strong downstream model? Measured the way
production uses it.

The protocol (docs/downstream.md, "The protocol"):

1. **Foundation.** The foundation model trains on the examples before the export time T
   (its own held-out days are the last ones before T), or an existing checkpoint that did.
2. **Export.** Every user's embedding at T is exported and published to a store
   (``int4`` by default); the run reads that one snapshot from then on, stale as in
   production.
3. **Downstream.** Each model trains on the examples from T to the held-out days and is
   evaluated on the held-out days at the end: the ranking control (HSTU over the recent
   events + DLRM) and one treatment per adapter, the retrieval control (two towers) and its
   treatments, each for every seed. Control and treatment train on the same examples, in the
   same batches, for the same steps; only the adapter input differs.
4. **Tables.** :mod:`dv365.experiments.eval_tables` compares each treatment with its control,
   seed-averaged, with paired bootstrap intervals over users.

5. **Experiments.** Each configured experiment kind lists arms
   (:mod:`dv365.experiments.experiment`); :mod:`dv365.experiments.units` plans them as
   units named by their content (a foundation per override, a snapshot per codec, history
   limit and time, the daily incremental series, a run per model), sharing every unit
   that equals one of the main comparison's; :mod:`dv365.experiments.experiment_tables`
   writes each experiment's document from its arms' runs.

The run directory holds each finished unit (foundation, snapshot, every model run) as it
completes, written atomically; running the same config again skips what is there, so an
interrupted evaluation resumes with the next unfinished run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dv365.atomic_write import staged_directory, write_text
from dv365.console import progress, stderr
from dv365.data.timeline import TimelineStore
from dv365.data.validate import DatasetReader
from dv365.data.vocabulary import Vocabulary
from dv365.downstream.adapters.build import build_adapter
from dv365.downstream.catalogue import Catalogue
from dv365.downstream.fit import fit, steps_of
from dv365.downstream.inputs import BatchBuilder
from dv365.downstream.ranking import HstuRanker, rank_predictions, ranking_loss
from dv365.downstream.retrieval import ItemFrequency
from dv365.downstream.store_input import DailyEmbeddings, StoreEmbeddings
from dv365.downstream.two_tower import TwoTower, retrieval_hits, retrieval_loss
from dv365.durations import DAY_MS, moment_text
from dv365.errors import ConfigError, DataError, UsageError
from dv365.experiments.eval_config import EvalConfig, Family
from dv365.experiments.experiment import Experiment, Serving, Setting
from dv365.experiments.run_summary import (
    data_summary,
    now_text,
    write_data_summary,
    write_provenance,
)
from dv365.experiments.units import FoundationUnit, Plan, RunUnit, plan_units, slug
from dv365.export.job import export_snapshot
from dv365.model.checkpoint import BEST, checkpoint_dir, load_checkpoint
from dv365.model.config import config_from_json, parse_config
from dv365.model.examples import Examples, item_features, load_examples
from dv365.model.foundation import initial_task_bias, load_foundation_model, torch_device
from dv365.model.tasks import Task
from dv365.model.train import train, use_threads
from dv365.paths import display_path
from dv365.stores import open_store

RESULT = "result.json"
PREDICTIONS = "predictions.npz"
SNAPSHOT = "snapshot.json"
SETTINGS = "eval.json"
# Keys that may change between an evaluation and its resumption: which seeds (a new seed
# adds runs), how many bootstrap replicates, where and on how many threads it computes.
# Experiments may be added or dropped too: every unit is named by its content.
RESUMABLE_KEYS = ("seeds", "bootstrap_replicates", "downstream.device", "downstream.threads",
                  "experiments")


@dataclass(frozen=True)
class Periods:
    """The protocol's times (ms): the export T, the first held-out moment, the data's end."""

    export_ms: int
    held_out_ms: int
    last_example_ms: int


def periods(config: EvalConfig, request_ts: np.ndarray) -> Periods:
    """T and the held-out start from the config and the examples' request times; a
    :class:`ConfigError` when the periods are empty or out of order."""
    last = int(request_ts.max())
    end_day = last // DAY_MS + 1
    held = (end_day - config.eval_days) * DAY_MS
    if config.export_at is not None:
        t, key = int(round(config.export_at.timestamp() * 1000)), "export_at"
    else:
        t, key = (end_day - config.export_days) * DAY_MS, "export_days"
    first = int(request_ts.min())
    if t <= first:
        raise ConfigError(f"T = {moment_text(t, 'minute')} leaves no example before it for "
                          f"the foundation model (the first is {moment_text(first, 'minute')})",
                          where=config.where(key), hint="a later export time")
    if t >= held:
        raise ConfigError(f"T = {moment_text(t, 'minute')} is not before the held-out days "
                          f"(from {moment_text(held, 'minute')}): downstream models would "
                          "have nothing to train on", where=config.where(key),
                          hint=f"an earlier export time, or fewer eval_days than "
                               f"{config.eval_days}")
    return Periods(t, held, last)


class Evaluation:
    """One ``dv365 eval`` run directory (see the module docstring)."""

    def __init__(self, config: EvalConfig, *, plugins=None):
        self.config = config
        self.plugins = plugins
        self.out = Path(config.out)
        ds = config.downstream
        use_threads(ds.threads)
        self.device = torch_device(ds.device, where=config.where("downstream.device"))
        for part in ("events", "examples"):
            if not (config.data / part).is_dir():
                raise ConfigError(f"{display_path(config.data)} holds no {part}/ dataset",
                                  where=config.where("data"),
                                  hint="a data folder of dv365 synth or an importer")
        self.store = TimelineStore.open(config.data / "events")
        examples_path = config.data / "examples"
        meta = DatasetReader(examples_path, "examples").meta
        self.item_rows = ds.item_tables.model_dump()
        self.all_examples, self.meta, _ = load_examples(
            examples_path, self.store, list(meta.tasks), self.item_rows, "request")
        self._check_vocabularies()
        self.periods = periods(config, self.all_examples.request_ts)
        ts = self.all_examples.request_ts
        p = self.periods
        self.train_set = self.all_examples.subset((ts >= p.export_ms) & (ts < p.held_out_ms))
        cap = ds.max_train_examples
        if cap is not None and len(self.train_set) > cap:
            # One sample for every model (in time order), so control and treatments pair.
            keep = np.sort(np.random.default_rng(0).choice(len(self.train_set), cap,
                                                           replace=False))
            self.train_set = self.train_set.subset(keep)
        self.eval_set = self.all_examples.subset(ts >= p.held_out_ms)
        self.eval_set = self.eval_set.subset(np.argsort(self.eval_set.request_ts,
                                                        kind="stable"))
        for name, part in (("downstream training", self.train_set),
                           ("held-out", self.eval_set)):
            if len(part) == 0:
                raise ConfigError(f"the {name} period holds no example",
                                  where=config.where("eval_days"))
        self.declared = dict(meta.tasks)
        self.catalogue: Catalogue | None = None
        # Snapshot records found in the store (or exported) by this process: every run of a
        # daily-served model asks for the whole series again.
        self._snapshots: dict[Path, dict[str, Any]] = {}
        self._series: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.experiments = build_experiments(config, plugins)
        self.setting = Setting(
            seeds=tuple(config.seeds), eval_days=config.eval_days, codec=config.codec,
            max_history=int((self.store.ends_before(np.arange(self.store.num_users),
                                                    self.periods.export_ms)
                             - np.asarray(self.store.offsets[:-1])).max(initial=0)),
            foundation=dict(config.foundation.train or {}))
        self.plan: Plan = plan_units(config, [(e, e.arms(self.setting))
                                              for e in self.experiments])

    # ------------------------------------------------------------------------ checks
    def _check_vocabularies(self) -> None:
        """The catalogue mixes media types of events and examples: one spelling for both."""
        if Vocabulary.of_store(self.store).values("media_type") != \
                Vocabulary(self.meta.vocab).values("media_type"):
            raise ConfigError("the events and examples spell media_type differently",
                              where=self.config.where("data"))

    def _check_settings(self) -> None:
        """A run directory made by another config is refused (keys that only add seeds or
        move the computation may change)."""
        path = self.out / SETTINGS
        current = _flat(json.loads(self.config.model_dump_json()))
        if path.exists():
            saved = _flat(json.loads(path.read_text()))
            changed = sorted(k for k in set(saved) | set(current)
                             if saved.get(k) != current.get(k)
                             and not k.startswith(RESUMABLE_KEYS))
            if changed:
                raise UsageError(f"{display_path(self.out)} holds an evaluation of a "
                                 f"different config (changed: {', '.join(changed[:6])})",
                                 where=self.config.where("out"),
                                 hint="choose another out: folder to start a new evaluation")
        self.out.mkdir(parents=True, exist_ok=True)
        write_text(path, self.config.model_dump_json(indent=2))

    # ------------------------------------------------------------------------ 1-2
    def foundation_checkpoint(self, unit: FoundationUnit | None = None) -> Path:
        """A foundation's checkpoint: the configured one (checked to have trained before
        T), or ``<out>/<unit folder>/checkpoints/best.pt``, trained here when missing
        (the base foundation by default)."""
        unit = unit or self.plan.foundations["foundation"]
        section = self.config.foundation
        if unit.train is None:
            return self._checked_checkpoint(Path(section.checkpoint))
        run = self.out / unit.folder
        best = checkpoint_dir(run) / BEST
        done = run / "done.json"
        if done.exists() and best.exists():
            return best
        t = self.periods.export_ms
        raw = {**unit.train, "out": str(run),
               "data": {"path": str(self.config.data),
                        "until": datetime.fromtimestamp(t / 1000, timezone.utc),
                        "validation_days": section.validation_days}}
        where = self.config.where("foundation.train" if unit.is_base else "experiments")
        config = parse_config(raw, file=where, plugins=self.plugins)
        stderr.print(f"{unit.folder}: training on the examples before "
                     f"{moment_text(t, 'minute')}", highlight=False, markup=False)
        result = train(config, plugins=self.plugins)
        model = load_foundation_model(best, plugins=self.plugins).model
        write_text(done, json.dumps({
            "step": result.step, "best_step": result.best_step,
            "examples_per_s": result.samples_per_s,
            "parameters": sum(p.numel() for p in model.parameters()),
            "encoder_parameters": sum(p.numel() for p in model.encoder.parameters())
            if model.encoder is not None else 0}))
        return best

    def _checked_checkpoint(self, path: Path) -> Path:
        """``path``, refused unless its config left out the examples from T on."""
        where = self.config.where("foundation.checkpoint")
        if not path.is_file():
            raise ConfigError("no such checkpoint file", where=where)
        saved = config_from_json(load_checkpoint(path).config_json, file=str(path))
        t = self.periods.export_ms
        until = saved.data.until
        if until is None or until.timestamp() * 1000 > t:
            raise ConfigError("the checkpoint trained on examples after the export time "
                              f"{moment_text(t, 'minute')}: its embedding would have seen "
                              "the downstream period", where=where,
                              hint="train it with data.until at or before T, or use "
                                   "foundation.train")
        return path

    def snapshot(self, foundation: FoundationUnit | None = None, *, codec: str | None = None,
                 history: int | None = None, at_ms: int | None = None,
                 since: dict[str, Any] | None = None) -> dict[str, Any]:
        """The record of a foundation's snapshot (``codec``, ``history`` limit, request
        time: by default the base foundation's at T in the config's codec), exported and
        published to the store when the run directory has none yet (incrementally from
        ``since``'s record when given)."""
        foundation = foundation or self.plan.foundations["foundation"]
        codec = codec or self.config.codec
        at_ms = self.periods.export_ms if at_ms is None else int(at_ms)
        base = (foundation.is_base and codec == self.config.codec and history is None
                and at_ms == self.periods.export_ms)
        path = self.out / (SNAPSHOT if base else
                           f"snapshots/{slug(foundation.folder.split('/')[-1])}-{codec}-"
                           f"{'all' if history is None else history}-"
                           f"{moment_text(at_ms, 'minute').replace(' ', 'T')}.json")
        if path in self._snapshots:
            return self._snapshots[path]
        uri = self.config.store_uri
        if path.exists():
            recorded = json.loads(path.read_text())
            with open_store(uri, where=self.config.where("store")) as store:
                if recorded["id"] in {v.manifest.id for v in store.versions()}:
                    self._snapshots[path] = recorded
                    return recorded
        checkpoint = self.foundation_checkpoint(foundation)
        with open_store(uri, where=self.config.where("store")) as sink:
            result = export_snapshot(checkpoint, self.store, at_ms, sink, codec=codec,
                                     device=self.device.type, plugins=self.plugins,
                                     progress=progress, history=history,
                                     since=None if since is None else since["id"])
            stderr.print(result.summary() + f" of {sink.display_uri}", highlight=False,
                         markup=False, soft_wrap=True)
        m = result.manifest
        recorded = {"id": m.id, "store": sink.display_uri, "at_ms": m.at_ms, "codec": m.codec,
                    "rows": m.rows, "dim": m.dim, "users": m.users, "bytes": m.bytes,
                    "history": m.history, "recomputed": m.recomputed,
                    "spec_hash": m.spec_hash,
                    "checkpoint": display_path(checkpoint),
                    "users_per_s": result.users_per_second}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(recorded, indent=2))
        self._snapshots[path] = recorded
        return recorded

    def daily_grid(self) -> list[int]:
        """The daily series' request times: T, then every day after it until the day of
        the last example, and one more day when the data can answer it (the frozen
        embedding's age on the last held-out day)."""
        t, last = self.periods.export_ms, self.periods.last_example_ms
        grid = [t + k * DAY_MS for k in range((last - t) // DAY_MS + 2)]
        return grid

    def daily_series(self, foundation: FoundationUnit, codec: str) -> list[dict[str, Any]]:
        """The records of a store refreshed every day from T (each an incremental export
        from the day before); the last, optional day is left out when the data cannot
        answer it."""
        key = (foundation.folder, codec)
        if key in self._series:  # the refusal of that last day costs a model load
            return self._series[key]
        records: list[dict[str, Any]] = []
        grid = self.daily_grid()
        for k, at in enumerate(grid):
            try:
                records.append(self.snapshot(foundation, codec=codec, at_ms=at,
                                             since=records[-1] if records else None))
            except DataError:
                if k < len(grid) - 1:
                    raise
        self._series[key] = records
        return records

    def held_out_start_index(self) -> int:
        """Which day of the daily series the frozen (held-out start) embedding is: the last
        one at or before the first held-out moment."""
        return (self.periods.held_out_ms - self.periods.export_ms) // DAY_MS

    def embedding_source(self, unit: RunUnit, serving: Serving):
        """Where ``unit``'s model reads its DV365 input from when served ``serving``."""
        where = self.config.where("store")
        if serving == "at_export":
            record = self.snapshot(unit.foundation, codec=unit.codec, history=unit.history)
            return StoreEmbeddings(self.config.store_uri, version=record["id"],
                                   device=self.device, where=where)
        series = self.daily_series(unit.foundation, unit.codec)
        if serving == "held_out_start":
            return StoreEmbeddings(self.config.store_uri,
                                   version=series[self.held_out_start_index()]["id"],
                                   device=self.device, where=where)
        return DailyEmbeddings(self.config.store_uri, [(r["at_ms"], r["id"]) for r in series],
                               device=self.device, where=where)

    # ------------------------------------------------------------------------ 3
    def tasks(self, family: Family) -> tuple[Task, ...]:
        """The family's tasks in output order."""
        if family == "ranking":
            names = self.config.ranking.tasks or tuple(self.declared)
            key = "ranking.tasks"
        else:
            names = self.config.retrieval.tasks or tuple(
                t for t, kind in self.declared.items() if kind == "binary" and t != "skip")
            key = "retrieval.tasks"
        unknown = [n for n in names if n not in self.declared]
        if unknown:
            raise ConfigError(f"the examples declare no task {unknown[0]!r}",
                              where=self.config.where(key),
                              hint=f"declared: {', '.join(self.declared)}")
        if family == "retrieval":
            regression = [n for n in names if self.declared[n] != "binary"]
            if regression:
                raise ConfigError(f"{regression[0]} is not a binary task: retrieval needs "
                                  "positives", where=self.config.where(key))
        return tuple(Task(n, self.declared[n], self.declared[n] == "regression")
                     for n in names)

    def _labels(self, examples: Examples, tasks: tuple[Task, ...]) -> Examples:
        index = [list(self.declared).index(t.name) for t in tasks]
        return replace(examples, labels=examples.labels[:, index])

    def _build(self, family: Family, tasks: tuple[Task, ...], adapter_section, seed: int,
               shape: tuple[int, int] | None):
        ds = self.config.downstream
        adapter = None
        if adapter_section is not None:
            # The adapter draws from its own generator, so the parts control and treatment
            # share are initialised by the same draws.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + 7919)
                adapter = build_adapter(adapter_section, num_vectors=shape[0], dim=shape[1],
                                        out_dim=ds.hstu.dim, plugins=self.plugins,
                                        key=f"{family}.adapters", file=self.config._file)
        torch.manual_seed(seed)
        common = dict(hstu=ds.hstu, recent=ds.recent, item_rows=self.item_rows,
                      num_actions=len(Vocabulary.of_store(self.store).values("action")),
                      num_media_types=len(self.meta.values("media_type")), adapter=adapter)
        if family == "ranking":
            features = tuple(f for f in item_features(self.meta, self.item_rows)
                             if f.name in ds.item_features)
            model = HstuRanker(dlrm=ds.dlrm, item_features=features,
                               num_dense=self.train_set.dense.shape[1], tasks=tasks, **common)
            dense = self.train_set.dense
            if dense.shape[1]:
                std = dense.std(0)
                model.dense_mean.copy_(torch.from_numpy(dense.mean(0)))
                model.dense_std.copy_(torch.from_numpy(np.where(std > 0, std, 1.0)))
            train = self._labels(self.train_set, tasks)
            model.task_bias.data.copy_(torch.from_numpy(initial_task_bias(train.labels,
                                                                          tasks)))
        else:
            model = TwoTower(num_tasks=len(tasks), hidden=self.config.retrieval.hidden,
                             **common)
        return model.to(self.device)

    def _evaluate(self, family: Family, model, tasks, builder, catalogue, embeddings
                  ) -> dict[str, np.ndarray]:
        """The held-out predictions (ranking) or hits per task and k (retrieval)."""
        ds = self.config.downstream
        if family == "ranking":
            return {"predictions": rank_predictions(
                model, tasks, builder, batch_size=ds.batch_size,
                embeddings=embeddings).astype(np.float32)}
        hits = retrieval_hits(model, catalogue, builder, num_tasks=len(tasks),
                              batch_size=ds.batch_size, ks=self.config.retrieval.ks,
                              embeddings=embeddings)
        return {f"hits/{task.name}/{k}": h for task, per_k in zip(tasks, hits)
                for k, h in per_k.items()}

    def run_unit(self, unit: RunUnit, seed: int) -> Path:
        """Train and evaluate one model for one seed; returns its run folder (kept as it
        is when already complete). The arrays of the first evaluation are the unit's own
        (``predictions``, ``hits/<task>/<k>``); another evaluation's are prefixed with its
        serving (``held_out_start/predictions``)."""
        folder = self.out / unit.folder / f"seed-{seed}"
        if (folder / RESULT).exists():
            return folder
        family = unit.family
        ds = self.config.downstream
        tasks = self.tasks(family)
        train_set = self._labels(self.train_set, tasks)
        eval_set = self._labels(self.eval_set, tasks)
        sources: dict[Serving, Any] = {}
        try:
            if unit.adapter is not None:
                for serving in unit.servings:
                    if serving not in sources:
                        sources[serving] = self.embedding_source(unit, serving)
            train_source = sources.get(unit.train_serving)
            shape = None if train_source is None else (train_source.rows, train_source.dim)
            model = self._build(family, tasks, unit.adapter, seed, shape)
            catalogue = None
            if family == "retrieval":
                if self.catalogue is None:
                    self.catalogue = Catalogue.of(self.store, self.all_examples,
                                                  self.item_rows)
                catalogue = self.catalogue
            train_builder = BatchBuilder(self.store, train_set, recent=ds.recent,
                                         item_rows=self.item_rows, device=self.device,
                                         catalogue=catalogue)
            eval_builder = BatchBuilder(self.store, eval_set, recent=ds.recent,
                                        item_rows=self.item_rows, device=self.device,
                                        catalogue=catalogue)
            if family == "ranking":
                loss = ranking_loss(model, tasks, ds.alpha)
            else:
                targets = train_builder.targets
                frequencies = [ItemFrequency(targets[train_set.labels[:, k] > 0.5]
                                             if (train_set.labels[:, k] > 0.5).any()
                                             else targets)
                               for k in range(len(tasks))]
                loss = retrieval_loss(model, catalogue, frequencies,
                                      temperature=self.config.retrieval.temperature)
            started = time.perf_counter()
            steps = steps_of(len(train_set), ds.batch_size, ds.epochs)
            with progress(f"{family} {unit.name} seed {seed}", total=steps) as advance:
                fitted = fit(model, loss, train_builder, batch_size=ds.batch_size,
                             epochs=ds.epochs, optimizer=ds.optimizer, seed=seed,
                             embeddings=train_source, advance=advance)
            arrays: dict[str, np.ndarray] = {}
            servings = unit.eval_serving if unit.adapter is not None else ("at_export",)
            for i, serving in enumerate(servings):
                prefix = "" if i == 0 else f"{serving}/"
                evaluated = self._evaluate(family, model, tasks, eval_builder, catalogue,
                                           sources.get(serving))
                arrays.update({prefix + k: v for k, v in evaluated.items()})
        finally:
            for source in sources.values():
                source.close()
        result = {"family": family, "variant": unit.name, "seed": seed,
                  "unit": unit.content(),
                  "adapter": None if unit.adapter is None
                  else {"type": unit.adapter.type, **unit.adapter.options},
                  "tasks": [t.name for t in tasks], "kinds": [t.kind for t in tasks],
                  "steps": fitted.steps,
                  "train_examples": len(train_set), "eval_examples": len(eval_set),
                  "final_loss": fitted.final_loss, "examples_per_s": fitted.examples_per_s,
                  "seconds": time.perf_counter() - started,
                  "snapshots": {s: src.versions if isinstance(src, DailyEmbeddings)
                                else src.version for s, src in sources.items()},
                  "parameters": sum(p.numel() for p in model.parameters())}
        with staged_directory(folder) as staging:
            np.savez(staging / PREDICTIONS, **arrays)
            (staging / RESULT).write_text(json.dumps(result, indent=2))
        stderr.print(f"{family} {unit.name} seed {seed}: {fitted.steps} steps at "
                     f"{fitted.examples_per_s:,.0f} examples/s", highlight=False,
                     markup=False)
        return folder

    def held_out(self) -> dict[str, np.ndarray]:
        """What the tables need of the held-out examples: labels (all declared tasks, in
        declaration order), users (the resampling clusters), the task names and request
        times (the staleness experiment's days)."""
        return {"labels": self.eval_set.labels, "users": self.eval_set.user_index,
                "tasks": np.array(list(self.declared)),
                "request_ts": self.eval_set.request_ts}

    def write_provenance(self, finished: bool = False) -> None:
        """``provenance.json``: what the run directory came from (see
        :mod:`dv365.experiments.run_summary`)."""
        base = json.loads((self.out / SNAPSHOT).read_text()) \
            if (self.out / SNAPSHOT).exists() else None
        snapshots = {"base": base["id"]} if base else {}
        for path in sorted((self.out / "snapshots").glob("*.json")):
            snapshots[path.stem] = json.loads(path.read_text())["id"]
        train = self.config.foundation.train
        done = self.out / "foundation" / "done.json"
        checkpoint = None
        if base is not None:
            checkpoint = {"path": base["checkpoint"],
                          "step": json.loads(done.read_text()).get("best_step")
                          if done.exists() else None}
        write_provenance(
            self.out, config=self.config._file, data=self.config.data,
            spec={"path": display_path(Path(train["spec"])) if train and "spec" in train
                  else None, "ir_hash": base.get("spec_hash") if base else None},
            checkpoint=checkpoint, snapshots=snapshots, started=self.started,
            finished=now_text() if finished else None)

    def run(self) -> Path:
        """Every step not yet in the run directory, then the tables; returns the directory."""
        self._check_settings()
        self.started = now_text()
        write_data_summary(self.out, data_summary(self.store, self.all_examples,
                                                  self.declared))
        self.snapshot()
        self.write_provenance()
        np.savez(self.out / "held_out.npz", **self.held_out())
        p = self.periods
        write_text(self.out / "periods.json", json.dumps({
            "export_ms": p.export_ms, "held_out_ms": p.held_out_ms,
            "last_example_ms": p.last_example_ms, "train_examples": len(self.train_set),
            "eval_examples": len(self.eval_set),
            "eval_users": int(len(np.unique(self.eval_set.user_index))),
            "held_out_start_ms": p.export_ms + self.held_out_start_index() * DAY_MS},
            indent=2))
        # Seed by seed, so that a run stopped early leaves whole paired sets behind.
        for seed in self.config.seeds:
            for unit in self.plan.runs.values():
                self.run_unit(unit, seed)
        return self.out


def build_experiments(config: EvalConfig, plugins=None) -> list[Experiment]:
    """The config's experiments, built by their registered kinds."""
    from dv365.plugins import get_plugins

    plugins = plugins or get_plugins()
    out = []
    for name, section, options in config.experiment_sections(plugins):
        out.append(plugins.experiments.get(section.type).factory(options, name=name))
    return out


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out

