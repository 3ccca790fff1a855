"""Run directories of the shape ``dv365 eval`` writes (docs/report.md), built in a test's
folder: a complete one with both families and each built-in experiment kind, and the parts
to break it with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TASKS = ["like", "comment", "share", "follow", "skip", "watch_time"]
KINDS = {t: "binary" for t in TASKS[:-1]} | {"watch_time": "regression"}
BINARY = TASKS[:-1]


def interval(estimate: float, half: float, **extra: Any) -> dict[str, Any]:
    return {"estimate": estimate, "low": estimate - half, "high": estimate + half, **extra}


def ranking_metrics(base: float, spread: float = 0.0012) -> dict[str, Any]:
    """Relative deltas for every ranking task, and their average over the binary ones."""
    out = {f"{t}/ne": interval(base * (1 + 0.3 * k), spread) for k, t in enumerate(BINARY)}
    out["watch_time/mse"] = interval(base * 0.5, spread * 2)
    out["average_binary_ne"] = {"estimate": sum(out[f"{t}/ne"]["estimate"] for t in BINARY)
                                / len(BINARY), "low": None, "high": None}
    return out


def ranking() -> dict[str, Any]:
    def variant(ne: float) -> dict[str, Any]:
        metrics = {f"{t}/ne": {"mean": ne + 0.01 * k, "sd": 0.0011} for k, t in
                   enumerate(BINARY)}
        metrics["watch_time/mse"] = {"mean": 1.84, "sd": 0.02}
        return {"seeds": 3, "metrics": metrics, "examples_per_s": {"mean": 5120.0, "sd": 80.0},
                "parameters": 123_456}

    deltas = {}
    for name, base in (("linear", -0.0031), ("gatenet", -0.0045)):
        row = {k: v for k, v in ranking_metrics(base).items() if k != "average_binary_ne"}
        row["average_binary_ne"] = ranking_metrics(base)["average_binary_ne"]["estimate"]
        deltas[name] = row
    return {"seeds": [0, 1, 2], "tasks": TASKS, "kinds": KINDS,
            "variants": {"control": variant(0.962), "linear": variant(0.959),
                         "gatenet": variant(0.957)},
            "deltas": deltas}


def retrieval() -> dict[str, Any]:
    tasks = ["like", "follow"]
    hr = {"control": 0.0, "linear": 0.004, "gatenet": 0.006}
    variants = {name: {"seeds": 3, "metrics": {
        f"{t}/hr@{k}": {"mean": (0.02 if k == 1 else 0.11) + up + 0.01 * j, "sd": 0.003}
        for j, t in enumerate(tasks) for k in (1, 10)},
        "examples_per_s": {"mean": 9000.0, "sd": 120.0}, "parameters": 64_000}
        for name, up in hr.items()}
    deltas = {name: {f"{t}/hr@{k}": interval(0.04 * (1 + j), 0.02,
                                             control_hits=4.0 if t == "follow" and k == 1
                                             else 160.0)
                     for j, t in enumerate(tasks) for k in (1, 10)}
              for name in ("linear", "gatenet")}
    return {"seeds": [0, 1, 2], "tasks": tasks, "variants": variants, "deltas": deltas,
            "queries": {"like": 812, "follow": 37}}


def experiment(name: str, kind: str, title: str, question: str, baseline: str,
               series: list[dict[str, Any]], *, axis: dict[str, Any] | None = None,
               columns: list[str] | None = None, table: list[dict[str, Any]] | None = None,
               bars: list[dict[str, Any]] | None = None, missing: list[str] | None = None,
               reading: str = "") -> dict[str, Any]:
    return {"name": name, "kind": kind, "title": title, "question": question,
            "baseline": baseline, "seeds": [0, 1, 2], "axis": axis, "series": series,
            "columns": columns or [], "table": table or [], "bars": bars or [],
            "reading": reading, "missing": missing or []}


def point(arm: str, x: Any, metrics: dict[str, Any], family: str = "ranking",
          label: str | None = None) -> dict[str, Any]:
    return {"arm": arm, "label": label or arm, "x": x, "family": family, "metrics": metrics}


def experiments() -> dict[str, dict[str, Any]]:
    """One experiment of each built-in kind; staleness and history_length have an axis."""
    days = list(range(1, 8))
    staleness = [point("frozen", d, {"like/ne": interval(-0.004 + 0.0004 * d, 0.001),
                                     "average_binary_ne": interval(-0.003 + 0.0003 * d, 0.0008),
                                     "cosine": interval(1 - 0.012 * d, 0.004)})
                 for d in days]
    staleness += [point("refreshed", d, {"like/ne": interval(-0.004, 0.001),
                                         "average_binary_ne": interval(-0.003, 0.0008)})
                  for d in days]
    lengths = [1000, 5000, 20000, "all"]
    history = [point("dv365", n, {"like/ne": interval(-0.001 * (k + 1), 0.0009),
                                  "average_binary_ne": interval(-0.0008 * (k + 1), 0.0007)})
               for k, n in enumerate(lengths)]
    return {
        "encoder_ablation": experiment(
            "encoder_ablation", "encoder_ablation", "What each encoder part buys",
            "Which parts of the foundation encoder carry the gain?", "control",
            [point("full", None, ranking_metrics(-0.0045)),
             point("no FSA", None, ranking_metrics(-0.0021), label="without FSA"),
             point("no slices", None, ranking_metrics(-0.0008), label="without slices")],
            bars=[{"text": "the full encoder beats the control", "passed": True,
                   "value": "-0.45%"}],
            reading="Removing FSA halves the gain; the slices carry the rest."),
        "backbone": experiment(
            "backbone", "backbone", "Backbone", "Does the gain hold in the retrieval towers?",
            "control",
            [point("hstu", None, {"like/hr@10": interval(0.05, 0.02),
                                  "follow/hr@10": interval(0.02, 0.03)}, family="retrieval"),
             point("mlp", None, {"like/hr@10": interval(0.01, 0.02),
                                 "follow/hr@10": interval(-0.01, 0.03)}, family="retrieval")],
            bars=[{"text": "hstu improves HR@10", "passed": None, "value": None}]),
        "quantization": experiment(
            "quantization", "quantization", "What 4 bits cost",
            "Does int4 storage cost downstream NE against fp32?", "fp32",
            [point("int4", None, ranking_metrics(0.0002, 0.0004)),
             point("fp16", None, ranking_metrics(0.00001, 0.0003))],
            columns=["bytes per user", "reconstruction error"],
            table=[{"arm": "fp32", "bytes per user": 832, "reconstruction error": 0.0},
                   {"arm": "fp16", "bytes per user": 416, "reconstruction error": 0.0004},
                   {"arm": "int4", "bytes per user": 136, "reconstruction error": 0.012}],
            bars=[{"text": "int4 costs < 0.05% NE against fp32", "passed": True,
                   "value": "+0.02%"},
                  {"text": "int4 is 6x smaller", "passed": False, "value": "6.1x"}],
            reading="int4 is free within the interval."),
        "staleness": experiment(
            "staleness", "staleness", "How fast an embedding goes stale",
            "How much of the gain is left days after the export?", "control", staleness,
            axis={"label": "days since export", "values": days},
            bars=[{"text": "a week-old embedding keeps half its gain", "passed": True,
                   "value": "-0.12%"}],
            reading="The frozen arm loses about 0.04% a day; refreshing keeps the gain."),
        "history_length": experiment(
            "history_length", "history_length", "Gain against history length",
            "Does a longer history help?", "control", history,
            axis={"label": "events the embedding saw", "values": lengths}),
        "gap": experiment(
            "gap", "gap", "The export gap", "Does a 24h delay before serving cost NE?",
            "gap 0h", [point("gap 24h", None, ranking_metrics(0.0004, 0.0005))],
            bars=[{"text": "a 24h gap costs < 0.1%", "passed": True, "value": "+0.04%"}]),
    }


def provenance() -> dict[str, Any]:
    return {"command": "dv365 eval configs/eval-demo.yaml", "config": "configs/eval-demo.yaml",
            "dv365": "0.1.0", "commit": "8ec99ff", "started": "2026-12-01T17:40:00Z",
            "finished": "2026-12-01T17:41:10Z", "data": "build/demo/data",
            "spec": {"path": "slices/downstream.slice", "ir_hash": "3f2a9c01"},
            "checkpoint": {"path": "build/demo/eval/foundation/best.pt", "step": 150},
            "snapshots": {"base": "20261201-174030-ab12", "refreshed": "20261201-174055-cd34"}}


def data_summary() -> dict[str, Any]:
    edges = [1000 * 2 ** (k / 2) for k in range(13)]
    counts = [2, 5, 11, 19, 28, 33, 31, 26, 18, 12, 9, 6]
    return {"users": 200, "events": 812_345, "examples": 51_200,
            "first_day": "2025-11-01", "last_day": "2025-12-31",
            "events_per_user": {"quantiles": {"min": 1000, "p10": 1900, "p50": 4100,
                                              "p90": 14000, "max": 62000},
                                "histogram": {"edges": edges, "counts": counts, "log": True}},
            "label_rates": {"like": 0.043, "comment": 0.002, "share": 0.004, "follow": 0.001,
                            "skip": 0.31, "watch_time": None},
            "tasks": KINDS}


def periods() -> dict[str, Any]:
    return {"export_ms": 1_764_547_200_000, "held_out_ms": 1_765_152_000_000,
            "last_example_ms": 1_765_756_799_000, "train_examples": 30_000,
            "eval_examples": 12_000, "eval_users": 180}


def snapshot() -> dict[str, Any]:
    return {"id": "20261201-174030-ab12", "store": "lmdb://build/demo/eval/store",
            "at_ms": 1_764_547_200_000, "codec": "int4", "rows": 13, "dim": 16, "users": 200}


def write_json(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))
    return path


def write_complete(root: Path) -> Path:
    """A finished run directory: every file, both families, six experiments."""
    exps = experiments()
    write_json(root / "eval.json", {"data": "build/demo/data", "out": str(root),
                                    "seeds": [0, 1, 2]})
    write_json(root / "provenance.json", provenance())
    write_json(root / "data_summary.json", data_summary())
    write_json(root / "periods.json", periods())
    write_json(root / "snapshot.json", snapshot())
    write_json(root / "results.json", {"ranking": ranking(), "retrieval": retrieval(),
                                       "snapshot": snapshot(), "periods": periods(),
                                       "experiments": exps})
    (root / "results.md").write_text("### Ranking\n")
    for name, doc in exps.items():
        write_json(root / "experiments" / name / "result.json", doc)
        (root / "experiments" / name / "result.md").write_text(f"### {name}\n")
    return root
