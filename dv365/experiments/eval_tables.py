"""The tables of ``dv365 eval``, in the paper's format, from its run directory.

**Ranking**: per model, NE of every binary task and MSE of every regression task (mean and
sample sd over seeds); per treatment, the relative NE delta of control + DV365 over the
control, per task, with a 95% paired bootstrap interval over held-out users
(:func:`~dv365.experiments.bootstrap.paired_ne_difference`, seed-averaged predictions), their
average over the binary tasks, and the relative MSE delta
(:func:`~dv365.experiments.bootstrap.paired_mean_difference` on squared errors).

**Retrieval**: per model, HR@k per task; per treatment, the relative HR@k delta over the
control with the same paired interval over users.

Only seeds that every model of a family finished are compared, so every delta is paired.
Both tables are written as JSON (``results.json``) and Markdown (``results.md``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from dv365.atomic_write import write_text
from dv365.experiments.bootstrap import Interval, paired_mean_difference, paired_ne_difference
from dv365.experiments.eval_config import CONTROL
from dv365.experiments.experiment import document_markdown
from dv365.model.metrics import normalized_entropy

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
# Fewer control hits per seed than this and a relative Hit Rate delta is not shown.
MIN_HITS = 20


def _runs(out: Path, family: str, variants: list[str] | None = None
          ) -> dict[str, dict[int, Path]]:
    """variant -> seed -> run folder, finished runs only (of ``variants`` when given, in
    that order)."""
    found: dict[str, dict[int, Path]] = {}
    root = out / "runs" / family
    for result in sorted(root.glob("*/seed-*/result.json")):
        folder = result.parent
        found.setdefault(folder.parent.name, {})[int(folder.name[len("seed-"):])] = folder
    if variants is None:
        return found
    return {v: found[v] for v in variants if v in found}


def _paired_seeds(runs: dict[str, dict[int, Path]]) -> list[int]:
    if CONTROL not in runs:
        return []
    common = set(runs[CONTROL])
    for seeds in runs.values():
        common &= set(seeds)
    return sorted(common)


def _interval(i: Interval) -> dict[str, float]:
    return {"estimate": i.estimate, "low": i.low, "high": i.high}


def _spread(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if a.size > 1 else math.nan}


def ranking_tables(out: Path, held: dict[str, np.ndarray], replicates: int,
                   variants: list[str] | None = None) -> dict[str, Any]:
    runs = _runs(out, "ranking", variants)
    seeds = _paired_seeds(runs)
    if not seeds:
        return {"seeds": [], "variants": {}, "deltas": {}}
    declared = [str(t) for t in held["tasks"]]
    users = held["users"]
    info = json.loads((runs[CONTROL][seeds[0]] / "result.json").read_text())
    tasks = info["tasks"]
    kinds = dict(zip(tasks, info["kinds"]))
    preds: dict[str, np.ndarray] = {}
    variants: dict[str, Any] = {}
    labels = held["labels"][:, [declared.index(t) for t in tasks]].astype(np.float64)
    for variant, by_seed in runs.items():
        stack = np.stack([np.load(by_seed[s] / "predictions.npz")["predictions"]
                          for s in seeds]).astype(np.float64)  # [seeds, n, T]
        preds[variant] = stack
        results = [json.loads((by_seed[s] / "result.json").read_text()) for s in seeds]
        metrics: dict[str, Any] = {}
        for k, task in enumerate(tasks):
            y = labels[:, k]
            if kinds[task] == "binary":
                metrics[f"{task}/ne"] = _spread([normalized_entropy(y, p[:, k]) for p in stack])
            else:
                target = np.log1p(np.maximum(y, 0))
                metrics[f"{task}/mse"] = _spread([float(np.mean((p[:, k] - target) ** 2))
                                                  for p in stack])
        variants[variant] = {"seeds": len(seeds), "metrics": metrics,
                             "examples_per_s": _spread([r["examples_per_s"] for r in results]),
                             "parameters": results[0]["parameters"]}
    deltas = {variant: ranking_deltas(stack, preds[CONTROL], labels, users, tasks, kinds,
                                      replicates)
              for variant, stack in preds.items() if variant != CONTROL}
    return {"seeds": seeds, "tasks": tasks, "kinds": kinds, "variants": variants,
            "deltas": deltas}


def ranking_deltas(treatment: np.ndarray, control: np.ndarray, labels: np.ndarray,
                   users: np.ndarray, tasks: list[str], kinds: dict[str, str],
                   replicates: int) -> dict[str, Any]:
    """Relative deltas of a treatment's predictions ``[seeds, n, T]`` over the control's
    (paired over ``users``): NE per binary task, MSE of log1p per regression task, and the
    average over the binary tasks whose NE is defined."""
    row: dict[str, Any] = {}
    binary_estimates = []
    for k, task in enumerate(tasks):
        y = labels[:, k]
        if kinds[task] == "binary":
            i = paired_ne_difference(y, treatment[:, :, k], control[:, :, k], users,
                                     replicates=replicates, relative=True)
            row[f"{task}/ne"] = _interval(i)
            binary_estimates.append(i.estimate)
        else:
            target = np.log1p(np.maximum(y, 0))
            i = paired_mean_difference((treatment[:, :, k] - target) ** 2,
                                       (control[:, :, k] - target) ** 2, users,
                                       replicates=replicates, relative=True)
            row[f"{task}/mse"] = _interval(i)
    # A task without a held-out positive has no NE: the average is over the others.
    finite = [e for e in binary_estimates if math.isfinite(e)]
    row["average_binary_ne"] = float(np.mean(finite)) if finite else math.nan
    return row


def retrieval_tables(out: Path, held: dict[str, np.ndarray], replicates: int,
                     variants: list[str] | None = None) -> dict[str, Any]:
    runs = _runs(out, "retrieval", variants)
    seeds = _paired_seeds(runs)
    if not seeds:
        return {"seeds": [], "variants": {}, "deltas": {}}
    declared = [str(t) for t in held["tasks"]]
    info = json.loads((runs[CONTROL][seeds[0]] / "result.json").read_text())
    tasks = info["tasks"]
    hits: dict[str, dict[str, np.ndarray]] = {}
    variants: dict[str, Any] = {}
    keys: list[str] = []
    for variant, by_seed in runs.items():
        loaded = [np.load(by_seed[s] / "predictions.npz") for s in seeds]
        keys = [k for k in loaded[0].files if k.startswith("hits/")]
        hits[variant] = {k: np.stack([z[k] for z in loaded]).astype(np.float64) for k in keys}
        results = [json.loads((by_seed[s] / "result.json").read_text()) for s in seeds]
        variants[variant] = {
            "seeds": len(seeds),
            "metrics": {_hr_name(k): _spread(list(v.mean(axis=1)))
                        for k, v in hits[variant].items()},
            "examples_per_s": _spread([r["examples_per_s"] for r in results]),
            "parameters": results[0]["parameters"]}
    deltas = {variant: retrieval_deltas(by_key, hits[CONTROL], held, declared, replicates)
              for variant, by_key in hits.items() if variant != CONTROL}
    return {"seeds": seeds, "tasks": tasks, "variants": variants, "deltas": deltas,
            "queries": {t: int((held["labels"][:, declared.index(t)] > 0.5).sum())
                        for t in tasks}}


def retrieval_deltas(treatment: dict[str, np.ndarray], control: dict[str, np.ndarray],
                     held: dict[str, np.ndarray], declared: list[str], replicates: int,
                     mask: np.ndarray | None = None) -> dict[str, Any]:
    """Relative HR@k deltas of a treatment's hits (``hits/<task>/<k>`` -> ``[seeds,
    queries]``) over the control's, paired over the queries' users, with the control's hit
    count; ``mask`` keeps some held-out examples only."""
    row = {}
    for key, values in treatment.items():
        task = key.split("/")[1]
        positive = held["labels"][:, declared.index(task)] > 0.5
        users = held["users"][positive]
        keep = np.ones(len(users), bool) if mask is None else mask[positive]
        i = paired_mean_difference(values[:, keep], control[key][:, keep], users[keep],
                                   replicates=replicates, relative=True)
        row[_hr_name(key)] = {**_interval(i),
                              "control_hits": float(control[key][:, keep].sum(axis=1).mean())}
    return row


def _hr_name(key: str) -> str:
    _, task, k = key.split("/")
    return f"{task}/hr@{k}"


def write_tables(out: Path, replicates: int = 1000,
                 variants: dict[str, list[str]] | None = None,
                 experiments: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compute both families' tables from ``out`` and write ``results.json`` and
    ``results.md`` there; returns the JSON document. ``variants`` (family -> the main
    comparison's models) leaves the experiments' runs out of the main tables;
    ``experiments`` are their documents
    (:func:`dv365.experiments.experiment_tables.write_experiments`), added as they are."""
    held = dict(np.load(out / "held_out.npz"))
    variants = variants or {}
    doc = {"ranking": ranking_tables(out, held, replicates, variants.get("ranking")),
           "retrieval": retrieval_tables(out, held, replicates, variants.get("retrieval"))}
    for name in ("snapshot.json", "periods.json"):
        if (out / name).exists():
            doc[name[:-len(".json")]] = json.loads((out / name).read_text())
    if experiments:
        doc["experiments"] = experiments
    write_text(out / RESULTS_JSON, json.dumps(_clean(doc), indent=2))
    write_text(out / RESULTS_MD, markdown(doc))
    return doc


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _pct(i: dict[str, float], better: str) -> str:
    """``-0.52% [-0.80, -0.25]``, bold when the interval excludes zero on the better side."""
    if i["estimate"] is None or not math.isfinite(i["estimate"]):
        return "-"
    text = f"{100 * i['estimate']:+.2f}% [{100 * i['low']:+.2f}, {100 * i['high']:+.2f}]"
    good = i["high"] < 0 if better == "lower" else i["low"] > 0
    return f"**{text}**" if good else text


def _hit_delta(i: dict[str, float]) -> str:
    hits = i.get("control_hits")
    if hits is not None and hits < MIN_HITS:
        return f"({hits:.0f} hits)"
    return _pct(i, "higher")


def _mean_sd(m: dict[str, float], digits: int = 4) -> str:
    sd = m["sd"]
    return f"{m['mean']:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None
                                        and math.isfinite(sd) else "")


def markdown(doc: dict[str, Any]) -> str:
    """The tables as Markdown (the text ``dv365 eval`` prints)."""
    lines: list[str] = []
    r = doc["ranking"]
    if r["variants"]:
        tasks = r["tasks"]
        names = [f"{t}/ne" if r["kinds"][t] == "binary" else f"{t}/mse" for t in tasks]
        lines += [f"### Ranking: HSTU + DLRM, {len(r['seeds'])} seeds", "",
                  "| model | examples/s | " + " | ".join(n.replace("/", " ").replace(
                      "ne", "NE").replace("mse", "MSE") for n in names) + " |",
                  "|---|---|" + "---|" * len(names)]
        for variant, v in r["variants"].items():
            lines.append(f"| {variant} | {v['examples_per_s']['mean']:,.0f} | "
                         + " | ".join(_mean_sd(v["metrics"][n]) for n in names) + " |")
        if r["deltas"]:
            lines += ["", "Relative delta over the control (negative is better), 95% paired "
                          "bootstrap over users:", "",
                      "| treatment | average NE | " + " | ".join(names) + " |",
                      "|---|---|" + "---|" * len(names)]
            for variant, row in r["deltas"].items():
                avg = row["average_binary_ne"]
                lines.append(f"| {variant} | {100 * avg:+.2f}% | "
                             + " | ".join(_pct(row[n], "lower") for n in names) + " |")
        lines.append("")
    q = doc["retrieval"]
    if q["variants"]:
        names = sorted(next(iter(q["variants"].values()))["metrics"],
                       key=lambda n: (q["tasks"].index(n.split("/")[0]), n))
        lines += [f"### Retrieval: two towers, {len(q['seeds'])} seeds "
                  "(HR against the full catalogue)", "",
                  "| model | examples/s | " + " | ".join(names) + " |",
                  "|---|---|" + "---|" * len(names)]
        for variant, v in q["variants"].items():
            lines.append(f"| {variant} | {v['examples_per_s']['mean']:,.0f} | "
                         + " | ".join(_mean_sd(v["metrics"][n]) for n in names) + " |")
        if q["deltas"]:
            lines += ["", "Relative delta over the control (positive is better):", "",
                      "| treatment | " + " | ".join(names) + " |",
                      "|---|" + "---|" * len(names)]
            for variant, row in q["deltas"].items():
                lines.append(f"| {variant} | "
                             + " | ".join(_hit_delta(row[n]) for n in names) + " |")
            lines += ["", f"(A relative delta needs at least {MIN_HITS} control hits per "
                          "seed: with fewer, its bootstrap resamples a handful of users and "
                          "the interval means nothing; the count is shown instead.)"]
        lines.append("")
    for experiment in (doc.get("experiments") or {}).values():
        lines.append(document_markdown(experiment))
    return "\n".join(lines)
