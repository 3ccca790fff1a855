"""``dv365 train CONFIG.yaml``: train (or resume) the foundation model a config describes."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from dv365.console import stdout


def train(
    config: Path = typer.Argument(..., help="Training config (YAML); see docs/model.md."),
) -> None:
    """Train the user encoder inside the backbone; evaluate, checkpoint, resume."""
    from dv365.model.config import load_config
    from dv365.model.train import METRICS_FILE, train as run_training

    result = run_training(load_config(config))
    shown = {k: v for k, v in result.metrics.items()
             if k.endswith(("/ne", "/mse")) or k == "eval/loss"}
    summary = ", ".join(f"{k}={v:.4f}" for k, v in shown.items())
    resumed = f" (resumed from step {result.resumed_from})" if result.resumed_from else ""
    stdout.print(f"trained {result.step} steps{resumed} at {result.samples_per_s:,.0f} "
                 f"examples/s; {summary}; metrics in {_shown(result.run_dir / METRICS_FILE)}",
                 highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def _shown(path: Path) -> str:
    """The path as the user would type it: relative to the working folder when inside it."""
    path = Path(os.path.normpath(path))
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
