"""A ``dv365 eval`` run directory read into typed values, every file optional.

The run directory's files (docs/report.md) are each read on their own: a file that is not
there, is not valid JSON or does not have the expected shape becomes a :class:`Missing` part
with a reason a reader understands, and the rest of the directory is read as usual. Only a
folder that does not exist or holds none of the files is an error
(:class:`~dv365.errors.UsageError`): there is nothing to report then.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dv365.errors import UsageError
from dv365.experiments.eval_tables import RESULTS_JSON
from dv365.paths import display_path

EXPERIMENTS = "experiments"
# The files of a run directory, in the order they are written, and what their absence means.
FILES = {
    "eval.json": "not written (the evaluation did not start)",
    "provenance.json": "not written (the evaluation did not start)",
    "data_summary.json": "not written yet (the data was not summarised)",
    "periods.json": "not written yet (the periods were not split)",
    "snapshot.json": "not written yet (nothing was exported)",
    RESULTS_JSON: "not written yet (the evaluation did not finish)",
}
FAMILIES = ("ranking", "retrieval")


@dataclass(frozen=True)
class Missing:
    """A part of the run that the report cannot show, and why."""

    part: str
    reason: str

    def __str__(self) -> str:
        return f"{self.part}: {self.reason}"


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval; any of them ``None`` where it is not finite."""

    estimate: float | None
    low: float | None = None
    high: float | None = None
    control_hits: float | None = None


@dataclass(frozen=True)
class Spread:
    """A mean and sample standard deviation over seeds."""

    mean: float | None
    sd: float | None = None


@dataclass(frozen=True)
class Variant:
    """One model of a family (the control or a treatment) over its seeds."""

    name: str
    seeds: int | None
    metrics: dict[str, Spread]
    examples_per_s: Spread | None
    parameters: int | None


@dataclass(frozen=True)
class Family:
    """The ranking or retrieval table: models, and treatments' deltas over the control."""

    name: str
    seeds: list[int]
    tasks: list[str]
    kinds: dict[str, str]
    variants: list[Variant]
    deltas: dict[str, dict[str, Interval]]
    average_binary_ne: dict[str, float | None]
    queries: dict[str, int]

    @property
    def empty(self) -> bool:
        return not self.variants


@dataclass(frozen=True)
class Axis:
    """What an experiment varies; values are numbers or words (``"all"``)."""

    label: str
    values: list[Any]


@dataclass(frozen=True)
class Point:
    """One arm of an experiment at one x (``None`` without an axis): its metrics."""

    arm: str
    label: str
    x: Any
    family: str | None
    metrics: dict[str, Interval]


@dataclass(frozen=True)
class Bar:
    """A pass/fail criterion of an experiment; ``passed`` is ``None`` when not decided."""

    text: str
    passed: bool | None
    value: str | None


@dataclass(frozen=True)
class Experiment:
    """One experiment document, whatever its kind (docs/report.md, "EXPERIMENT")."""

    name: str
    kind: str
    title: str
    question: str
    baseline: str | None
    seeds: list[int]
    axis: Axis | None
    series: list[Point]
    columns: list[str]
    table: list[dict[str, Any]]
    bars: list[Bar]
    reading: str
    missing: list[str]

    @property
    def arms(self) -> list[str]:
        """The arms in the order the series first names them."""
        return list(dict.fromkeys(p.arm for p in self.series))

    @property
    def metric_names(self) -> list[str]:
        """Every metric of the series, in the order they first appear."""
        return list(dict.fromkeys(m for p in self.series for m in p.metrics))


@dataclass(frozen=True)
class Provenance:
    """Where a run came from: command, inputs, code and times."""

    command: str | None
    config: str | None
    version: str | None
    commit: str | None
    started: str | None
    finished: str | None
    data: str | None
    spec_path: str | None
    spec_hash: str | None
    checkpoint_path: str | None
    checkpoint_step: int | None
    snapshots: dict[str, str]


@dataclass(frozen=True)
class Histogram:
    """Counts between consecutive edges; ``log`` when the edges grow geometrically."""

    edges: list[float]
    counts: list[float]
    log: bool


@dataclass(frozen=True)
class DataSummary:
    """What the evaluated data holds: sizes, days, history lengths and label rates."""

    users: int | None
    events: int | None
    examples: int | None
    first_day: str | None
    last_day: str | None
    quantiles: dict[str, float]
    histogram: Histogram | None
    label_rates: dict[str, float | None]
    tasks: dict[str, str]


@dataclass
class RunDir:
    """Everything the report shows of one run directory, and what it could not read."""

    path: Path
    eval_config: dict[str, Any] | None = None
    provenance: Provenance | None = None
    data_summary: DataSummary | None = None
    periods: dict[str, Any] | None = None
    snapshot: dict[str, Any] | None = None
    families: dict[str, Family] = field(default_factory=dict)
    experiments: list[Experiment] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)


class _Shape(Exception):
    """A document does not have the contract's shape at ``where``."""

    def __init__(self, where: str, expected: str):
        super().__init__(f"{where}: expected {expected}" if where else f"expected {expected}")


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Shape(where, "an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Shape(where, "a list")
    return value


def _text(value: Any, where: str, default: str | None = None) -> str | None:
    if value is None:
        return default
    if isinstance(value, (dict, list)):
        raise _Shape(where, "a string")
    return str(value)


def _number(value: Any, where: str) -> float | None:
    """A finite number or ``None`` (JSON writes non-finite numbers as null)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Shape(where, "a number")
    return float(value) if math.isfinite(value) else None


def _integer(value: Any, where: str) -> int | None:
    number = _number(value, where)
    return None if number is None else int(number)


def _interval(value: Any, where: str) -> Interval:
    if isinstance(value, (int, float)) or value is None:  # a bare estimate
        return Interval(_number(value, where))
    doc = _obj(value, where)
    return Interval(*(_number(doc.get(k), f"{where}.{k}")
                      for k in ("estimate", "low", "high", "control_hits")))


def _spread(value: Any, where: str) -> Spread:
    doc = _obj(value, where)
    return Spread(_number(doc.get("mean"), f"{where}.mean"), _number(doc.get("sd"), f"{where}.sd"))


def _family(name: str, value: Any) -> Family:
    doc = _obj(value, name)
    variants = []
    for variant, v in _obj(doc.get("variants", {}), f"{name}.variants").items():
        where = f"{name}.variants.{variant}"
        v = _obj(v, where)
        metrics = {m: _spread(s, f"{where}.metrics.{m}")
                   for m, s in _obj(v.get("metrics", {}), f"{where}.metrics").items()}
        eps = v.get("examples_per_s")
        variants.append(Variant(
            str(variant), _integer(v.get("seeds"), f"{where}.seeds"), metrics,
            None if eps is None else _spread(eps, f"{where}.examples_per_s"),
            _integer(v.get("parameters"), f"{where}.parameters")))
    deltas: dict[str, dict[str, Interval]] = {}
    averages: dict[str, float | None] = {}
    for variant, row in _obj(doc.get("deltas", {}), f"{name}.deltas").items():
        where = f"{name}.deltas.{variant}"
        row = _obj(row, where)
        if "average_binary_ne" in row:
            averages[variant] = _interval(row["average_binary_ne"],
                                          f"{where}.average_binary_ne").estimate
        deltas[variant] = {m: _interval(i, f"{where}.{m}") for m, i in row.items()
                           if m != "average_binary_ne"}
    return Family(
        name=name,
        seeds=[int(s) for s in _list(doc.get("seeds", []), f"{name}.seeds")],
        tasks=[str(t) for t in _list(doc.get("tasks", []), f"{name}.tasks")],
        kinds={str(k): str(v) for k, v in _obj(doc.get("kinds", {}), f"{name}.kinds").items()},
        variants=variants, deltas=deltas, average_binary_ne=averages,
        queries={str(t): int(n) for t, n in _obj(doc.get("queries", {}),
                                                 f"{name}.queries").items()})


def _experiment(value: Any, default_name: str) -> Experiment:
    doc = _obj(value, "")
    name = _text(doc.get("name"), "name", default_name) or default_name
    axis = doc.get("axis")
    if axis is not None:
        a = _obj(axis, "axis")
        values = _list(a.get("values", []), "axis.values")
        if any(isinstance(v, (dict, list)) for v in values):
            raise _Shape("axis.values", "numbers or words")
        axis = Axis(_text(a.get("label"), "axis.label", "") or "", list(values))
    series = []
    for k, p in enumerate(_list(doc.get("series", []), "series")):
        where = f"series[{k}]"
        p = _obj(p, where)
        arm = _text(p.get("arm"), f"{where}.arm", "?") or "?"
        x = p.get("x")
        if isinstance(x, (dict, list)):
            raise _Shape(f"{where}.x", "a number or a word")
        series.append(Point(
            arm=arm, label=_text(p.get("label"), f"{where}.label", arm) or arm, x=x,
            family=_text(p.get("family"), f"{where}.family"),
            metrics={str(m): _interval(i, f"{where}.metrics.{m}")
                     for m, i in _obj(p.get("metrics", {}), f"{where}.metrics").items()}))
    bars = []
    for k, b in enumerate(_list(doc.get("bars", []), "bars")):
        b = _obj(b, f"bars[{k}]")
        passed = b.get("passed")
        if passed is not None and not isinstance(passed, bool):
            raise _Shape(f"bars[{k}].passed", "true, false or null")
        bars.append(Bar(_text(b.get("text"), f"bars[{k}].text", "") or "", passed,
                        _text(b.get("value"), f"bars[{k}].value")))
    return Experiment(
        name=name,
        kind=_text(doc.get("kind"), "kind", "?") or "?",
        title=_text(doc.get("title"), "title", name) or name,
        question=_text(doc.get("question"), "question", "") or "",
        baseline=_text(doc.get("baseline"), "baseline"),
        seeds=[int(s) for s in _list(doc.get("seeds", []), "seeds")],
        axis=axis, series=series,
        columns=[str(c) for c in _list(doc.get("columns", []), "columns")],
        table=[_obj(r, f"table[{k}]") for k, r in enumerate(_list(doc.get("table", []),
                                                                    "table"))],
        bars=bars,
        reading=_text(doc.get("reading"), "reading", "") or "",
        missing=[str(m) for m in _list(doc.get("missing", []), "missing")])


def _provenance(value: Any) -> Provenance:
    doc = _obj(value, "")
    spec = _obj(doc.get("spec") or {}, "spec")
    checkpoint = _obj(doc.get("checkpoint") or {}, "checkpoint")
    return Provenance(
        command=_text(doc.get("command"), "command"), config=_text(doc.get("config"), "config"),
        version=_text(doc.get("dv365"), "dv365"), commit=_text(doc.get("commit"), "commit"),
        started=_text(doc.get("started"), "started"),
        finished=_text(doc.get("finished"), "finished"), data=_text(doc.get("data"), "data"),
        spec_path=_text(spec.get("path"), "spec.path"),
        spec_hash=_text(spec.get("ir_hash"), "spec.ir_hash"),
        checkpoint_path=_text(checkpoint.get("path"), "checkpoint.path"),
        checkpoint_step=_integer(checkpoint.get("step"), "checkpoint.step"),
        snapshots={str(k): str(v) for k, v in _obj(doc.get("snapshots") or {},
                                                   "snapshots").items()})


def _data_summary(value: Any) -> DataSummary:
    doc = _obj(value, "")
    per_user = _obj(doc.get("events_per_user") or {}, "events_per_user")
    quantiles = {str(q): v for q, v in ((q, _number(v, f"events_per_user.quantiles.{q}"))
                                        for q, v in _obj(per_user.get("quantiles") or {},
                                                         "events_per_user.quantiles").items())
                 if v is not None}
    histogram = None
    if per_user.get("histogram") is not None:
        h = _obj(per_user["histogram"], "events_per_user.histogram")
        edges = [_number(e, "events_per_user.histogram.edges")
                 for e in _list(h.get("edges", []), "events_per_user.histogram.edges")]
        counts = [_number(c, "events_per_user.histogram.counts") or 0.0
                  for c in _list(h.get("counts", []), "events_per_user.histogram.counts")]
        if None in edges or len(edges) != len(counts) + 1:
            raise _Shape("events_per_user.histogram", "one more finite edge than counts")
        histogram = Histogram(edges, counts, bool(h.get("log", False)))
    return DataSummary(
        users=_integer(doc.get("users"), "users"), events=_integer(doc.get("events"), "events"),
        examples=_integer(doc.get("examples"), "examples"),
        first_day=_text(doc.get("first_day"), "first_day"),
        last_day=_text(doc.get("last_day"), "last_day"),
        quantiles=quantiles, histogram=histogram,
        label_rates={str(t): _number(r, f"label_rates.{t}")
                     for t, r in _obj(doc.get("label_rates") or {}, "label_rates").items()},
        tasks={str(t): str(k) for t, k in _obj(doc.get("tasks") or {}, "tasks").items()})


def _load(root: Path, name: str, absent: str, missing: list[Missing]) -> Any:
    """The JSON document at ``root/name``, or ``None`` with the reason added to ``missing``."""
    path = root / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        missing.append(Missing(name, absent))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else \
            f"cannot be read ({exc.strerror or exc})"
        missing.append(Missing(name, reason))
        return None
    if not text.strip():
        missing.append(Missing(name, "empty (its writer was stopped)"))
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        missing.append(Missing(name, f"not valid JSON at line {exc.lineno} ({exc.msg})"))
        return None


def _parsed(name: str, doc: Any, parse, missing: list[Missing]):
    """``parse(doc)``, or ``None`` with the shape error added to ``missing``."""
    if doc is None:
        return None
    try:
        return parse(doc)
    except (_Shape, ValueError, TypeError) as exc:
        missing.append(Missing(name, f"not in the expected shape ({exc})"))
        return None


def _experiments(root: Path, results: Any, missing: list[Missing]) -> list[Experiment]:
    """Each experiment from its own folder, else from the copy in results.json."""
    copies = results.get(EXPERIMENTS) if isinstance(results, dict) else None
    copies = copies if isinstance(copies, dict) else {}
    folder = root / EXPERIMENTS
    names = list(copies)
    if folder.is_dir():
        names += sorted(p.name for p in folder.iterdir()
                        if p.is_dir() and p.name not in copies)
    found = []
    for name in names:
        name = str(name)
        part = f"{EXPERIMENTS}/{name}/result.json"
        own: list[Missing] = []
        doc = None
        if (folder / name).is_dir():
            doc = _load(root, part, "not written yet (the experiment did not finish)", own)
        if doc is None and name in copies:
            doc, part = copies[name], f"{RESULTS_JSON}: {EXPERIMENTS}.{name}"
            missing += [Missing(m.part, f"{m.reason}; the copy in {RESULTS_JSON} is shown")
                        for m in own]
        else:
            missing += own
        experiment = _parsed(part, doc, lambda d: _experiment(d, name), missing)
        if experiment is None:
            continue
        found.append(experiment)
        missing += [Missing(f"experiment {experiment.name}", f"{m} not finished")
                    for m in experiment.missing]
    return found


def read_run_dir(path: str | Path) -> RunDir:
    """Read the run directory at ``path``; what is absent or damaged is named in ``missing``.

    Raises :class:`~dv365.errors.UsageError` when ``path`` is not a folder or holds none of
    the run directory's files.
    """
    root = Path(path)
    where = display_path(root)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise UsageError(f"the run directory {what}", where=where,
                         hint="pass the out: folder of a dv365 eval config")
    if not any((root / name).exists() for name in (*FILES, EXPERIMENTS)):
        raise UsageError("holds no file of a dv365 eval run (results.json, provenance.json, "
                         "...)", where=where, hint="pass the out: folder of a dv365 eval config")
    run = RunDir(root)
    m = run.missing
    docs = {name: _load(root, name, absent, m) for name, absent in FILES.items()}
    run.eval_config = _parsed("eval.json", docs["eval.json"], lambda d: _obj(d, ""), m)
    run.provenance = _parsed("provenance.json", docs["provenance.json"], _provenance, m)
    run.data_summary = _parsed("data_summary.json", docs["data_summary.json"], _data_summary, m)
    results = _parsed(RESULTS_JSON, docs[RESULTS_JSON], lambda d: _obj(d, ""), m)
    # periods and snapshot are copied into results.json; the own file wins.
    for name in ("periods", "snapshot"):
        doc = docs[f"{name}.json"]
        if doc is None and results is not None:
            doc = results.get(name)
        setattr(run, name, _parsed(f"{name}.json", doc, lambda d: _obj(d, ""), m))
    if results is not None:
        for family in FAMILIES:
            if family not in results:
                m.append(Missing(f"{RESULTS_JSON}: {family}", "not in the results"))
                continue
            parsed = _parsed(f"{RESULTS_JSON}: {family}", results[family],
                             lambda d, f=family: _family(f, d), m)
            if parsed is not None:
                run.families[family] = parsed
    run.experiments = _experiments(root, results, m)
    return run
