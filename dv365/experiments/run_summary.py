"""What a run directory records of where it came from and of its data, for the report.

``provenance.json``: the command, config, data, spec (its IR hash), foundation checkpoint,
snapshot ids, the dv365 version and commit, start and end times. ``data_summary.json``:
users, events, examples, days, the distribution of events per user (quantiles and a
log-spaced histogram) and each task's label rate.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import dv365
from dv365.atomic_write import write_text
from dv365.data.event_store import EventStore
from dv365.durations import DAY_MS, moment_text
from dv365.model.examples import Examples
from dv365.paths import display_path

PROVENANCE = "provenance.json"
DATA_SUMMARY = "data_summary.json"


def now_text() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def commit() -> str | None:
    """The git commit dv365 runs from, ``-dirty`` when its files differ from it (``None``
    outside a git checkout)."""
    try:
        done = subprocess.run(["git", "-C", str(Path(dv365.__file__).parent), "describe",
                               "--always", "--dirty", "--abbrev=7"], capture_output=True,
                              text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def data_summary(store: EventStore, examples: Examples, tasks: dict[str, str]
                 ) -> dict[str, Any]:
    """The data's shape: users, events, examples, days, events per user, label rates."""
    counts = np.diff(np.asarray(store.offsets)).astype(np.int64)
    positive = counts[counts > 0]
    edges = (np.unique(np.geomspace(1, positive.max() + 1, 25).astype(np.int64))
             if len(positive) else np.array([1, 2]))
    hist, _ = np.histogram(counts, bins=edges)
    ts = np.asarray(store.columns["ts"])
    rates = {}
    for k, (task, kind) in enumerate(tasks.items()):
        rates[task] = float((examples.labels[:, k] > 0.5).mean()) if kind == "binary" else None
    return {"users": int(len(counts)), "events": int(counts.sum()),
            "examples": int(len(examples)),
            "first_day": moment_text(int(ts.min()) // DAY_MS * DAY_MS, "day")
            if len(ts) else None,
            "last_day": moment_text(int(ts.max()) // DAY_MS * DAY_MS, "day")
            if len(ts) else None,
            "events_per_user": {
                "quantiles": {name: float(np.quantile(counts, q)) for name, q in (
                    ("min", 0), ("p10", .1), ("p50", .5), ("p90", .9), ("max", 1))},
                "histogram": {"edges": edges.tolist(), "counts": hist.tolist(), "log": True}},
            "label_rates": rates, "tasks": dict(tasks)}


def write_provenance(out: Path, *, config: str | None, data: Path, spec: dict | None,
                     checkpoint: dict | None, snapshots: dict[str, str], started: str,
                     finished: str | None = None) -> dict[str, Any]:
    """Write ``provenance.json``; returns it."""
    doc = {"command": " ".join(["dv365", *sys.argv[1:]]) if sys.argv else None,
           "config": config, "dv365": dv365.__version__, "commit": commit(),
           "started": started, "finished": finished, "data": display_path(data),
           "spec": spec, "checkpoint": checkpoint, "snapshots": snapshots}
    write_text(out / PROVENANCE, json.dumps(doc, indent=2))
    return doc


def write_data_summary(out: Path, summary: dict[str, Any]) -> None:
    write_text(out / DATA_SUMMARY, json.dumps(summary, indent=2))
