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
    tables_only: bool = typer.Option(
        False, "--tables-only",
        help="Train and export nothing: write the tables of what the run directory holds "
             "(an interrupted evaluation's finished runs; the rest is named missing)."),
) -> None:
    """Train the foundation model before T, export at T, train control and treatments after
    it on every seed, run the configured experiments, and print the paired comparison and
    each experiment's tables (resumable)."""
    from dv365.experiments.eval_config import load_eval_config
    from dv365.experiments.eval_tables import RESULTS_JSON, RESULTS_MD, markdown, write_tables
    from dv365.experiments.evaluation import Evaluation
    from dv365.errors import UsageError
    from dv365.experiments.experiment_tables import write_experiments

    loaded = load_eval_config(config)
    if threads is not None:
        downstream = loaded.downstream.model_copy(update={"threads": threads})
        loaded = loaded.model_copy(update={"downstream": downstream})  # keeps its file
    evaluation = Evaluation(loaded)
    if tables_only:
        out = evaluation.out
        if not (out / "held_out.npz").exists():
            raise UsageError(f"{display_path(out)} holds no evaluation yet",
                             where=loaded.where("out"), hint="run it without --tables-only")
    else:
        out = evaluation.run()
    replicates = loaded.bootstrap_replicates
    experiments = write_experiments(evaluation, evaluation.held_out(), replicates)
    doc = write_tables(out, replicates,
                       {f: [v for v, _ in loaded.variants(f)] for f in ("ranking", "retrieval")},
                       experiments)
    if not tables_only:
        evaluation.write_provenance(finished=True)
    stdout.print(markdown(doc), highlight=False, markup=False, soft_wrap=True)
    stdout.print(f"tables in {display_path(out / RESULTS_MD)} and "
                 f"{display_path(out / RESULTS_JSON)}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
