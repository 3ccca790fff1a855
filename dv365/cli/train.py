"""``dv365 train CONFIG.yaml``: train (or resume) the foundation model a config describes."""

from __future__ import annotations

import math
import os
from pathlib import Path

import typer

from dv365.console import stdout
from dv365.paths import display_path


def train(
    config: Path = typer.Argument(..., help="Training config (YAML); see docs/model.md."),
    threads: int | None = typer.Option(
        None, "--threads", min=1,
        help="torch and CPU kernel threads (overrides the config's threads:); on a small "
             "shared machine 1 can train faster"),
) -> None:
    """Train the user encoder inside the backbone; evaluate, keep the best, checkpoint,
    resume."""
    from dv365.model.checkpoint import BEST, checkpoint_dir
    from dv365.model.config import load_config
    from dv365.model.train import METRICS_FILE, train as run_training

    loaded = load_config(config)
    if threads is not None:
        loaded = loaded.model_copy(update={"threads": threads})
    result = run_training(loaded)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun every rank trains; rank 0 speaks for them
    resumed = f" (resumed from step {result.resumed_from})" if result.resumed_from else ""
    stopped = " (stopped early)" if result.stopped_early else ""
    lines = [f"trained {result.step} steps{resumed}{stopped} at "
             f"{result.samples_per_s:,.0f} examples/s; last: {_summary(result.metrics)}"]
    best = display_path(checkpoint_dir(result.run_dir) / BEST)
    if result.best_step == result.step:
        lines.append(f"best: the last step (lowest eval/loss), kept as {best}")
    elif result.best_step is not None:
        lines.append(f"best at step {result.best_step} (lowest eval/loss, kept as {best}): "
                     f"{_summary(result.best_metrics)}")
    lines.append(_held_out_line(result))
    lines.append(f"metrics in {display_path(result.run_dir / METRICS_FILE)}")
    for line in lines:
        stdout.print(line, highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def _summary(metrics: dict[str, float]) -> str:
    shown = {k: v for k, v in metrics.items() if k.endswith(("/ne", "/mse")) or k == "eval/loss"}
    return ", ".join(f"{k}={v:.4f}" for k, v in shown.items())


def _held_out_line(result) -> str:
    """The held-out split's size and how far NE on it can be trusted (measured at the last
    evaluation)."""
    from dv365.model.metrics import NE_RESOLUTION

    data = result.data
    line = (f"held-out: {int(data.get('eval/users', 0)):,} users, "
            f"{data.get('eval/empty_history', math.nan):.1%} of examples without history")
    errors = {k[:-len("/ne_se")]: v for k, v in result.metrics.items()
              if k.endswith("/ne_se") and v is not None and math.isfinite(v)}
    if errors:
        line += (f"; NE standard error {min(errors.values()):.4f} to "
                 f"{max(errors.values()):.4f}")
        noisy = [task for task, v in errors.items() if v > NE_RESOLUTION]
        if noisy:
            line += (f", above {NE_RESOLUTION} for {', '.join(noisy)}: a "
                     f"{NE_RESOLUTION:.0%} NE difference is noise there")
    return line
