"""Each experiment's document, from the finished runs of its arms.

:class:`ArmOutcome` is the :class:`~dv365.experiments.experiment.Outcome` an experiment kind
reads: the paired deltas of an arm's model over the control (or over another arm), on all
held-out examples or one held-out day, seed-averaged with the same user-level bootstrap as
the main tables (:func:`~dv365.experiments.eval_tables.ranking_deltas`,
:func:`~dv365.experiments.eval_tables.retrieval_deltas`); its foundation's and snapshot's
facts; its snapshots' decoded vectors. :func:`write_experiments` writes every experiment's
``experiments/<name>/result.json`` and ``result.md``.
"""

from __future__ import annotations

import json
import math
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from dv365.atomic_write import write_text
from dv365.durations import DAY_MS
from dv365.experiments.eval_tables import _clean, ranking_deltas, retrieval_deltas
from dv365.experiments.experiment import Experiment, Family, Interval, document_markdown
from dv365.experiments.units import RunUnit, control_of
from dv365.stores import open_store

RESULT = "result.json"


def _finished(out: Path, unit: RunUnit) -> dict[int, Path]:
    """seed -> folder of ``unit``'s finished runs."""
    return {int(p.parent.name[len("seed-"):]): p.parent
            for p in (out / unit.folder).glob("seed-*/result.json")}


class ArmOutcome:
    """The finished runs of one experiment's arms (see the module docstring)."""

    def __init__(self, evaluation, experiment: Experiment, held: dict[str, np.ndarray],
                 replicates: int):
        self.evaluation, self.experiment = evaluation, experiment
        self.out: Path = evaluation.out
        self.held, self.replicates = held, replicates
        self.setting = evaluation.setting
        self.declared = [str(t) for t in held["tasks"]]
        plan = evaluation.plan
        self.units = {(arm, family): unit for (name, arm, family), unit in plan.arms.items()
                      if name == experiment.name}
        families = sorted({family for _, family in self.units})
        self.controls = {f: control_of(plan, f) for f in families}
        configured = set(self.setting.seeds)
        finished = [set(_finished(self.out, u)) for u in
                    [*self.units.values(), *self.controls.values()]]
        self.seeds = tuple(sorted(configured.intersection(*finished)))
        self.missing = [f"{arm} ({family}) seed {s}" for (arm, family), unit in
                        self.units.items() for s in sorted(configured -
                                                           set(_finished(self.out, unit)))]
        self.missing += [f"control ({f}) seed {s}" for f, u in self.controls.items()
                         for s in sorted(configured - set(_finished(self.out, u)))]
        # Each run's files are read once: a staleness document asks for 14 day deltas.
        self._records: dict[str, dict[int, dict[str, Any]]] = {}
        self._predictions: dict[Path, dict[str, np.ndarray]] = {}

    def _records_of(self, unit: RunUnit | None) -> dict[int, dict[str, Any]]:
        """seed -> ``result.json`` of ``unit``'s finished runs."""
        if unit is None:
            return {}
        if unit.folder not in self._records:
            self._records[unit.folder] = {
                s: json.loads((f / RESULT).read_text())
                for s, f in sorted(_finished(self.out, unit).items())}
        return self._records[unit.folder]

    def _loaded(self, folder: Path) -> dict[str, np.ndarray]:
        if folder not in self._predictions:
            with np.load(folder / "predictions.npz") as z:
                self._predictions[folder] = {k: z[k] for k in z.files}
        return self._predictions[folder]

    # ----------------------------------------------------------------- deltas
    def _arrays(self, unit: RunUnit, serving: int, family: Family, seeds: list[int]):
        prefix = "" if serving == 0 else f"{unit.eval_serving[serving]}/"
        folders = _finished(self.out, unit)
        loaded = [self._loaded(folders[s]) for s in seeds]
        if family == "ranking":
            return np.stack([z[prefix + "predictions"] for z in loaded]).astype(np.float64)
        keys = [k[len(prefix):] for k in loaded[0] if k.startswith(prefix + "hits/")]
        return {k: np.stack([z[prefix + k] for z in loaded]).astype(np.float64) for k in keys}

    def _day_mask(self, day: int) -> np.ndarray:
        start = self.evaluation.periods.export_ms + \
            self.evaluation.held_out_start_index() * DAY_MS + (day - 1) * DAY_MS
        ts = self.held["request_ts"]
        return (ts >= start) & (ts < start + DAY_MS)

    def deltas(self, arm: str, family: Family, *, serving: int = 0, day: int | None = None,
               against: str | None = None) -> dict[str, Interval] | None:
        unit = self.units.get((arm, family))
        if unit is None or serving >= len(unit.eval_serving):
            return None
        reference = self.controls[family] if against is None else self.units.get(
            (against, family))
        if reference is None:
            return None
        # The seeds both finished (an interrupted run still compares what it has).
        seeds = sorted(set(self._records_of(unit)) & set(self._records_of(reference))
                       & set(self.setting.seeds))
        if not seeds:
            return None
        treatment = self._arrays(unit, serving, family, seeds)
        control = self._arrays(reference, 0, family, seeds)
        mask = np.ones(len(self.held["users"]), bool) if day is None else self._day_mask(day)
        if not mask.any():
            return None
        if family == "ranking":
            info = self._records_of(unit)[seeds[0]]
            tasks, kinds = info["tasks"], dict(zip(info["tasks"], info["kinds"]))
            labels = self.held["labels"][:, [self.declared.index(t) for t in tasks]]
            row = ranking_deltas(treatment[:, mask], control[:, mask],
                                 labels[mask].astype(np.float64), self.held["users"][mask],
                                 tasks, kinds, self.replicates)
            average = row.pop("average_binary_ne")
            row["average_binary_ne"] = {"estimate": None if math.isnan(average) else average,
                                        "low": None, "high": None}
            return row
        return retrieval_deltas(treatment, control, self.held, self.declared,
                                self.replicates, mask=None if day is None else mask)

    # ----------------------------------------------------------------- facts
    def _unit(self, arm: str) -> RunUnit | None:
        return next((u for (a, _), u in self.units.items() if a == arm), None)

    def foundation(self, arm: str) -> dict[str, Any] | None:
        unit = self._unit(arm)
        done = None if unit is None else self.out / unit.foundation.folder / "done.json"
        return json.loads(done.read_text()) if done is not None and done.exists() else None

    def _result(self, arm: str) -> dict[str, Any] | None:
        return next(iter(self._records_of(self._unit(arm)).values()), None)

    @cached_property
    def _snapshots(self) -> dict[str, dict[str, Any]]:
        """id -> record of every snapshot the run directory holds."""
        paths = [self.out / "snapshot.json", *sorted((self.out / "snapshots").glob("*.json"))]
        records = [json.loads(p.read_text()) for p in paths if p.exists()]
        return {r["id"]: r for r in records}

    def _version(self, arm: str, day: int = 0) -> str | None:
        result = self._result(arm)
        if result is None:
            return None
        snapshots = result.get("snapshots") or {}
        if "daily" in snapshots:  # the series, the day after the last example included
            ids = snapshots["daily"]
            index = self.evaluation.held_out_start_index() + day
            return ids[index] if index < len(ids) else None
        return snapshots.get("at_export") if day == 0 else None

    def snapshot(self, arm: str) -> dict[str, Any] | None:
        version = self._version(arm)
        return None if version is None else self._snapshots.get(version)

    def vectors(self, arm: str, day: int = 0) -> np.ndarray | None:
        version = self._version(arm, day)
        if version is None:
            return None
        with open_store(self.evaluation.config.store_uri) as store:
            ids = np.concatenate([np.asarray(i, np.int64) for i, _ in store.scan(version)])
            ids.sort()
            got = store.get(ids, version=version)
        return got.vectors.flatten(1).numpy().astype(np.float64)

    def parameters(self, arm: str, family: Family) -> int | None:
        records = self._records_of(self.units.get((arm, family)))
        return next(iter(records.values()))["parameters"] if records else None

    def examples_per_s(self, arm: str, family: Family) -> float | None:
        records = self._records_of(self.units.get((arm, family)))
        values = [r["examples_per_s"] for r in records.values()]
        return float(np.mean(values)) if values else None


def write_experiments(evaluation, held: dict[str, np.ndarray], replicates: int
                      ) -> dict[str, Any]:
    """Every experiment's document, written to ``experiments/<name>/result.json`` and
    ``result.md``; returns name -> document."""
    docs = {}
    for experiment in evaluation.experiments:
        doc = _clean(experiment.document(ArmOutcome(evaluation, experiment, held,
                                                    replicates)))
        folder = evaluation.out / "experiments" / experiment.name
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / RESULT, json.dumps(doc, indent=2))
        write_text(folder / "result.md", document_markdown(doc))
        docs[experiment.name] = doc
    return docs
