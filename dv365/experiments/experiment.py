"""What an experiment of ``dv365 eval`` is: arms to run, and a document of what they showed.

An experiment kind (built in, or registered by a plugin through
``dv365_register_experiments``) answers one question by comparing **arms** with the
downstream control. An :class:`Arm` is one way of producing and serving the DV365 input:

* a foundation model (the eval config's ``foundation.train`` with ``foundation`` overrides
  merged in: another encoder, backbone or gap),
* its snapshot (``codec``; ``history``: the embedding sees only each user's N most recent
  events),
* how the downstream model reads it while training and when evaluated (``serving``: the
  snapshot at T, a snapshot refreshed every day, or the one of the held-out start, frozen),
* the adapter and the families (ranking, retrieval) it is judged on.

:class:`~dv365.experiments.evaluation.Evaluation` runs every arm's units once (an arm equal
to another arm, or to a treatment of the main comparison, shares its runs), for every seed;
the experiment's :meth:`Experiment.document` then reads them through an :class:`Outcome`
and returns the generic document (:func:`document`) that ``results.json``, the Markdown
tables and ``dv365 report`` draw: series of paired deltas over the control, an optional
axis, a table of per-arm facts, the bars it checks, a reading and what is missing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Protocol, Sequence

import numpy as np

from dv365.model.config import PluginSection

Family = Literal["ranking", "retrieval"]
Serving = Literal["at_export", "daily", "held_out_start"]
"""How a downstream model reads the DV365 input: ``at_export`` the snapshot at T (stale as it
ages, the main comparison's way); ``daily`` the snapshot exported at the start of each
request's day (refreshed incrementally every day from T on); ``held_out_start`` the daily
series' snapshot at the first held-out day, frozen from then on."""

LINEAR = PluginSection(type="linear")


@dataclass(frozen=True)
class Arm:
    """One way of producing and serving the DV365 input (see the module docstring)."""

    name: str
    foundation: Mapping[str, Any] = field(default_factory=dict)
    """Keys merged into ``foundation.train`` (nested mappings merge key by key)."""
    codec: str | None = None
    """``None``: the eval config's codec."""
    history: int | None = None
    train_serving: Serving = "at_export"
    eval_serving: tuple[Serving, ...] = ("at_export",)
    """The evaluations of the trained model; the first is its main one."""
    adapters: Mapping[str, PluginSection] = field(
        default_factory=lambda: {"ranking": LINEAR})
    """Family -> the adapter judged on it."""


@dataclass(frozen=True)
class Setting:
    """What an experiment may read of the run before choosing its arms."""

    seeds: tuple[int, ...]
    eval_days: int
    codec: str
    max_history: int
    """The most events any user has before T."""
    foundation: Mapping[str, Any]
    """The eval config's ``foundation.train`` (to name what an override changes)."""


Interval = dict[str, float | None]
"""``{"estimate", "low", "high"}``, relative for deltas; ``None`` where not defined."""


class Outcome(Protocol):
    """The finished runs of one experiment's arms, as paired comparisons (implemented by
    :class:`dv365.experiments.experiment_tables.ArmOutcome`)."""

    seeds: tuple[int, ...]
    """Seeds on which the control and every arm finished (each delta pairs the seeds its
    two models finished: all of these, and more when only some arms are missing)."""
    missing: list[str]
    """Arms, seeds and units configured but not finished."""
    setting: Setting

    def deltas(self, arm: str, family: Family, *, serving: int = 0,
               day: int | None = None, against: str | None = None
               ) -> dict[str, Interval] | None:
        """Relative deltas of ``arm``'s model over the control (or over arm ``against``)
        per task metric, plus ``average_binary_ne``; ``serving`` indexes the arm's
        ``eval_serving``; ``day`` (1-based) keeps the held-out examples of that day only.
        ``None`` when the arm has no finished paired run."""

    def foundation(self, arm: str) -> dict[str, Any] | None:
        """The arm's foundation: ``examples_per_s``, ``parameters``, ``encoder_parameters``,
        ``best_step``."""

    def snapshot(self, arm: str) -> dict[str, Any] | None:
        """The arm's snapshot (at T, or the held-out start for a daily arm): id, codec,
        rows, dim, users, bytes, history."""

    def vectors(self, arm: str, day: int = 0) -> np.ndarray | None:
        """Every user's decoded vectors ``float32 [U, rows * dim]`` of the arm's snapshot,
        or, for a daily arm, of the one ``day`` days after the held-out start (None when it
        was not exported)."""

    def parameters(self, arm: str, family: Family) -> int | None:
        """Parameters of the arm's downstream model."""

    def examples_per_s(self, arm: str, family: Family) -> float | None:
        """Training examples/s of the arm's downstream model (mean over seeds)."""


class Experiment(ABC):
    """An experiment kind's instance (``name`` is unique in the eval config)."""

    kind: str = ""
    title: str = ""
    question: str = ""

    def __init__(self, options: Any, *, name: str):
        self.options, self.name = options, name

    @abstractmethod
    def arms(self, setting: Setting) -> list[Arm]:
        """The arms to run (names unique within the experiment)."""

    @abstractmethod
    def document(self, outcome: Outcome) -> dict[str, Any]:
        """The experiment's document (built with :func:`document`)."""


def series(arm: str, metrics: Mapping[str, Interval] | None, *, family: Family = "ranking",
           x: float | None = None, label: str | None = None) -> dict[str, Any] | None:
    """One point (or bar group) of a document's ``series``; ``None`` without metrics."""
    if metrics is None:
        return None
    return {"arm": arm, "label": label or arm, "x": x, "family": family,
            "metrics": dict(metrics)}


def bar(text: str, passed: bool | None, value: str) -> dict[str, Any]:
    """A check an experiment makes (``passed`` None: it could not be decided)."""
    return {"text": text, "passed": passed, "value": value}


def document(experiment: Experiment, outcome: Outcome, *, series: Sequence[dict | None],
             axis: dict[str, Any] | None = None, columns: Sequence[str] = (),
             table: Sequence[dict[str, Any]] = (), bars: Sequence[dict[str, Any]] = (),
             reading: str = "", baseline: str = "control") -> dict[str, Any]:
    """The generic experiment document (docs/experiments.md, "The experiment document")."""
    return {"name": experiment.name, "kind": experiment.kind, "title": experiment.title,
            "question": experiment.question, "baseline": baseline,
            "seeds": list(outcome.seeds), "axis": axis,
            "series": [s for s in series if s is not None], "columns": list(columns),
            "table": list(table), "bars": list(bars), "reading": reading,
            "missing": list(outcome.missing)}


def estimate(metrics: Mapping[str, Interval] | None, key: str = "average_binary_ne"
             ) -> float | None:
    """One metric's estimate (``None`` when absent or not finite)."""
    if metrics is None or key not in metrics:
        return None
    value = metrics[key].get("estimate")
    return None if value is None or not np.isfinite(value) else float(value)


def percent(value: float | None) -> str:
    """``-0.13%`` (``-`` for None)."""
    return "-" if value is None else f"{100 * value:+.2f}%"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _interval_text(i: Interval | None, better: str) -> str:
    if not i or i.get("estimate") is None:
        return "-"
    text = f"{100 * i['estimate']:+.2f}%"
    if i.get("low") is not None and i.get("high") is not None:
        text += f" [{100 * i['low']:+.2f}, {100 * i['high']:+.2f}]"
        good = i["high"] < 0 if better == "lower" else i["low"] > 0
        return f"**{text}**" if good else text
    return text


def document_markdown(doc: dict[str, Any]) -> str:
    """An experiment document as Markdown: its series' deltas, its table, bars, reading and
    what is missing."""
    lines = [f"### {doc['title']} ({doc['kind']}, {len(doc['seeds'])} seeds)", "",
             doc["question"], ""]
    for family, better in (("ranking", "lower"), ("retrieval", "higher")):
        points = [p for p in doc["series"] if p["family"] == family]
        if not points:
            continue
        metrics = [m for m in dict.fromkeys(k for p in points for k in p["metrics"])
                   if m != "cosine"]
        head = "| arm |" + (f" {doc['axis']['label']} |" if doc["axis"] else "")
        lines += [f"Relative delta over the {doc['baseline']} ({family}; "
                  f"{'negative' if better == 'lower' else 'positive'} is better, 95% paired "
                  "bootstrap over users):", "",
                  head + "".join(f" {m} |" for m in metrics),
                  "|---|" + ("---|" if doc["axis"] else "") + "---|" * len(metrics)]
        for p in points:
            lines.append(f"| {p['label']} |" + (f" {_cell(p['x'])} |" if doc["axis"] else "")
                         + "".join(f" {_interval_text(p['metrics'].get(m), better)} |"
                                   for m in metrics))
        lines.append("")
    if doc["table"]:
        columns = doc["columns"]
        lines += ["| arm |" + "".join(f" {c} |" for c in columns),
                  "|---|" + "---|" * len(columns)]
        lines += [f"| {row['arm']} |" + "".join(f" {_cell(row.get(c))} |" for c in columns)
                  for row in doc["table"]]
        lines.append("")
    for check in doc["bars"]:
        mark = {True: "passed", False: "missed", None: "not decided"}[check["passed"]]
        lines.append(f"- Bar: {check['text']}: **{mark}** ({check['value']})")
    if doc["bars"]:
        lines.append("")
    if doc["reading"]:
        lines += [doc["reading"], ""]
    if doc["missing"]:
        lines += [f"Missing: {', '.join(doc['missing'])}.", ""]
    return "\n".join(lines)
