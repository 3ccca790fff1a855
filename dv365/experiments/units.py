"""The units of work an evaluation plans: foundations, snapshots and downstream runs.

Every unit is named by what it is made of, so that the run directory can be resumed, extended
with more experiments, and shared between arms:

* a **foundation** is the eval config's ``foundation.train`` with an arm's overrides merged
  in; the unchanged one is ``foundation/``, another ``foundations/<label>-<hash>/``;
* a **run** is one downstream model for every seed: family, foundation, codec, history
  limit, how it is served, adapter. The main comparison's runs are
  ``runs/<family>/<variant>/``; an arm's run that equals one of them (or an earlier arm's)
  is that run, another is ``runs/<family>/<experiment>-<arm>-<hash>/``.

The hash is of the unit's content, so a folder's name never comes to mean something else.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from pydantic import ValidationError

from dv365.errors import ConfigError, NotFoundError
from dv365.experiments.eval_config import CONTROL, EvalConfig
from dv365.experiments.experiment import Arm, Family, Serving
from dv365.model.config import PluginSection

BASE_FOUNDATION = "foundation"


def content_hash(value: Any) -> str:
    """Eight hex digits of a JSON value's BLAKE2b (keys sorted)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


def slug(text: str) -> str:
    """``lce/token`` -> ``lce-token``: a folder-name piece."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-") or "arm"


@dataclass(frozen=True)
class FoundationUnit:
    """One foundation model: its folder (relative to the run directory) and training
    config (``None``: the configured checkpoint)."""

    folder: str
    train: Mapping[str, Any] | None

    @property
    def is_base(self) -> bool:
        return self.folder == BASE_FOUNDATION


@dataclass(frozen=True)
class RunUnit:
    """One downstream model, trained and evaluated for every seed."""

    family: Family
    folder: str
    """``runs/<family>/<name>``, relative to the run directory."""
    foundation: FoundationUnit
    codec: str
    history: int | None = None
    train_serving: Serving = "at_export"
    eval_serving: tuple[Serving, ...] = ("at_export",)
    adapter: PluginSection | None = None
    """``None``: the control (no DV365 input)."""

    @property
    def name(self) -> str:
        return self.folder.rsplit("/", 1)[-1]

    @property
    def servings(self) -> tuple[Serving, ...]:
        return (self.train_serving, *self.eval_serving)

    def content(self) -> dict[str, Any]:
        """What decides the unit's models (the control: its family alone)."""
        if self.adapter is None:
            return {"family": self.family, "control": True}
        return {"family": self.family, "foundation": self.foundation.train
                if self.foundation.train is not None else "checkpoint",
                "codec": self.codec, "history": self.history,
                "train_serving": self.train_serving, "eval_serving": list(self.eval_serving),
                "adapter": {"type": self.adapter.type, **self.adapter.options}}


@dataclass
class Plan:
    """Every unit of an evaluation: the main comparison's runs, and each experiment's arms
    mapped to theirs."""

    foundations: dict[str, FoundationUnit] = field(default_factory=dict)
    runs: dict[str, RunUnit] = field(default_factory=dict)
    """folder -> run, in the order they run."""
    arms: dict[tuple[str, str, str], RunUnit] = field(default_factory=dict)
    """(experiment, arm, family) -> its run."""
    arm_foundations: dict[tuple[str, str], FoundationUnit] = field(default_factory=dict)

    def run_of(self, unit: RunUnit) -> RunUnit:
        """The planned run equal to ``unit`` (added when new)."""
        content = unit.content()
        for planned in self.runs.values():
            if planned.content() == content:
                return planned
        self.runs[unit.folder] = unit
        return unit


def canonical(train: Mapping[str, Any], plugins=None) -> dict[str, Any]:
    """``train`` with its ``encoder`` and ``backbone`` sections spelled out with their
    options' defaults, so that two spellings of one model compare equal (``{type: fsa}``
    and ``{type: fsa, view: token}``); a section that does not validate stays as written
    (its own error comes when it trains)."""
    from dv365.plugins import get_plugins

    plugins = plugins or get_plugins()
    out = dict(train)
    for key, kind in (("encoder", "encoder"), ("backbone", "backbone")):
        section = out.get(key)
        if not isinstance(section, Mapping) or "type" not in section:
            continue
        try:
            registration = plugins.registry(kind).get(section["type"])
            options = {k: v for k, v in section.items() if k != "type"}
            spelled = registration.options(**options).model_dump(mode="json") \
                if registration.options is not None else options
        except (NotFoundError, ValidationError, TypeError):
            continue  # left for training to report at its key
        out[key] = {"type": section["type"], **spelled}
    return out


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override``'s keys replacing its own (a whole section at a time: an
    override of ``encoder`` is the whole encoder section)."""
    return {**base, **override}


def plan_units(config: EvalConfig, experiments: list[tuple[Any, list[Arm]]]) -> Plan:
    """The plan of ``config``'s main comparison and of ``experiments`` (each experiment with
    its arms, in config order)."""
    plan = Plan()
    base_train = config.foundation.train
    base = FoundationUnit(BASE_FOUNDATION, base_train)
    plan.foundations[base.folder] = base
    for family in ("ranking", "retrieval"):
        for variant, section in config.variants(family):
            unit = RunUnit(family, f"runs/{family}/{variant}", base, config.codec,
                           adapter=section)
            plan.runs[unit.folder] = unit
    for experiment, arms in experiments:
        for arm in arms:
            foundation = base
            if arm.foundation:
                if base_train is None:
                    raise ConfigError(
                        f"experiment {experiment.name!r} arm {arm.name!r} trains its own "
                        "foundation model, which needs foundation.train",
                        where=config.where("experiments"),
                        hint="give foundation.train instead of foundation.checkpoint")
                train = merged(base_train, arm.foundation)
                spelled = canonical(train)
                if spelled != canonical(base_train):
                    foundation = next(
                        (f for f in plan.foundations.values()
                         if f.train is not None and canonical(f.train) == spelled), None) \
                        or FoundationUnit(f"foundations/{slug(experiment.name)}-"
                                          f"{slug(arm.name)}-{content_hash(spelled)}", train)
                    plan.foundations[foundation.folder] = foundation
            plan.arm_foundations[(experiment.name, arm.name)] = foundation
            for family, adapter in arm.adapters.items():
                if family == "retrieval" and config.retrieval is None:
                    raise ConfigError(f"experiment {experiment.name!r} is judged on retrieval,"
                                      " which the config turns off",
                                      where=config.where("retrieval"),
                                      hint="give a retrieval: section")
                if family == "ranking" and config.ranking is None:
                    raise ConfigError(f"experiment {experiment.name!r} is judged on ranking,"
                                      " which the config turns off",
                                      where=config.where("ranking"),
                                      hint="give a ranking: section")
                candidate = RunUnit(family, "", foundation, arm.codec or config.codec,
                                    arm.history, arm.train_serving, tuple(arm.eval_serving),
                                    adapter)
                name = (f"{slug(experiment.name)}-{slug(arm.name)}-"
                        f"{content_hash(candidate.content())}")
                candidate = RunUnit(**{**candidate.__dict__,
                                       "folder": f"runs/{family}/{name}"})
                plan.arms[(experiment.name, arm.name, family)] = plan.run_of(candidate)
    for unit in plan.runs.values():
        if unit.history is not None and "at_export" not in unit.servings:
            raise ConfigError("a history-limited embedding is only served at T (a daily "
                              "refresh assumes the whole history)",
                              where=config.where("experiments"))
    return plan


def control_of(plan: Plan, family: Family) -> RunUnit:
    """The family's control run."""
    return plan.runs[f"runs/{family}/{CONTROL}"]
