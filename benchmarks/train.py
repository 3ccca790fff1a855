"""Training throughput of ``dv365 train`` and what user-level dedup buys.

Run: ``.venv/bin/python -m benchmarks train [--users N] [--steps S] [--batch-size B]``.

Generates a data set with the generator (``small`` profile: mean 1,000 events per user, 32
examples per user over 28 days), builds the 45-slice paper-shaped spec of
``scripts/model_comparison.py`` (D = 16) and the default FSA + DLRM model, then times S
training steps (after 3 warm-up steps, which include the kernel JIT), each batch once in
either way, interleaved, in the same process:

* **dedup** (what ``dv365 train`` does): one history per user-day group, encoder output
  shared by the group's examples;
* **baseline**: every example its own group (history at its own request time), as a naive
  loop over impressions would do.

Reports the median step time and examples/s of each, and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dv365.model.config import parse_config
from dv365.model.examples import Examples
from dv365.model.train import Trainer


def _spec(folder: Path, dim: int) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from model_comparison import paper_shaped_spec

    path = folder / "spec.json"
    path.write_text(paper_shaped_spec(dim).to_json())
    return path


def _without_dedup(ex: Examples) -> Examples:
    n = len(ex)
    return Examples(ex.user_index, ex.request_ts, ex.sparse, ex.dense, ex.labels,
                    np.arange(n, dtype=np.int64), ex.user_index.copy(), ex.request_ts.copy())


def _time_steps(trainer: Trainer, batches: list[np.ndarray]) -> list[float]:
    times = []
    for rows in batches:
        start = time.perf_counter()
        trainer.train_step(rows)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dim", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        subprocess.run([sys.executable, "-m", "dv365.cli.app", "synth", str(folder / "data"),
                        "--users", str(args.users)], check=True, capture_output=True)
        config = parse_config({
            "data": {"path": str(folder / "data"), "cache_dir": str(folder / "cache")},
            "spec": str(_spec(folder, args.dim)), "out": str(folder / "run"),
            "encoder": {"type": "fsa"}, "backbone": {"type": "dlrm"},
            "batch_size": args.batch_size, "steps": 1})
        trainer = Trainer(config)
        batches = trainer._batches_of_epoch(0)[: args.steps + 3]
        dedup_set, plain_set = trainer.train_set, _without_dedup(trainer.train_set)
        groups = [len(np.unique(dedup_set.group[b])) for b in batches[3:]]
        dedup, plain = [], []
        # Interleaved per batch, so that load from other jobs on the machine hits both alike.
        for i, rows in enumerate(batches):
            for train_set, times in ((dedup_set, dedup), (plain_set, plain)):
                trainer.train_set = train_set
                took = _time_steps(trainer, [rows])[0]
                if i >= 3:
                    times.append(took)
        examples = statistics.median(len(b) for b in batches[3:])
        print(f"{args.users} users, {trainer.store.num_events:,} events, "
              f"{len(trainer.ir.slices)} slices x D={trainer.ir.dim}, batch ~{examples:.0f} "
              f"examples = median {statistics.median(groups):.0f} user-day groups")
        for name, times in (("dedup (one history per user-day)", dedup),
                            ("baseline (one history per example)", plain)):
            med = statistics.median(times)
            print(f"  {name}: median step {med * 1e3:.0f} ms, {examples / med:,.0f} examples/s")
        print(f"  dedup speedup: {statistics.median(plain) / statistics.median(dedup):.2f}x")


if __name__ == "__main__":
    main()
