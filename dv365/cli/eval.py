"""``dv365 eval CONFIG.yaml``: the downstream comparison of control and DV365 treatments
(:mod:`dv365.experiments.evaluation`), its tables printed and saved."""

from __future__ import annotations

from pathlib import Path

import typer

from dv365.console import stdout
from dv365.paths import display_path


def evaluate(
    config: Path = typer.Argument(..., help="Eval config (YAML); see docs/downstream.md."),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="torch and CPU kernel threads (overrides "
                                       "downstream.threads)"),
) -> None:
    """Train the foundation model before T, export at T, train control and treatments after
    it on every seed, and print the paired comparison (resumable)."""
    from dv365.experiments.eval_config import load_eval_config
    from dv365.experiments.eval_tables import RESULTS_JSON, RESULTS_MD, markdown, write_tables
    from dv365.experiments.evaluation import Evaluation

    loaded = load_eval_config(config)
    if threads is not None:
        downstream = loaded.downstream.model_copy(update={"threads": threads})
        loaded = loaded.model_copy(update={"downstream": downstream})  # keeps its file
    out = Evaluation(loaded).run()
    doc = write_tables(out, loaded.bootstrap_replicates)
    stdout.print(markdown(doc), highlight=False, markup=False, soft_wrap=True)
    stdout.print(f"tables in {display_path(out / RESULTS_MD)} and "
                 f"{display_path(out / RESULTS_JSON)}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
