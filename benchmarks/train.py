"""Training throughput of ``dv365 train`` and what user-level dedup buys.

Run: ``.venv/bin/python -m benchmarks train [--users N] [--steps S] [--batch-size B]
[--device cpu|cuda] [--spec paper-shaped|PATH] [--dim D] [--mean-events E] [--out FILE]``.

Generates a data set with the generator (``small`` profile: mean 1,000 events per user, 32
examples per user over 28 days), builds the 45-slice paper-shaped spec of
``scripts/model_comparison.py`` (D = 16) and the default FSA + DLRM model, then times S
training steps (after 3 warm-up steps, which include the kernel JIT), each batch once in
either way, interleaved, in the same process:

* **dedup** (what ``dv365 train`` does): one history per user-day group, encoder output
  shared by the group's examples;
* **baseline**: every example its own group (history at its own request time), as a naive
  loop over impressions would do.

Reports the median step time and examples/s of each, and the ratio, plus the median time of
building a batch's inputs alone (the jagged slice kernel and the copies to the device), timed
once more per batch. ``--device cuda`` trains on the GPU with the CUDA slice kernels (the
config's default there; ``--kernel`` picks another); a step ends by reading the loss, which
waits for the GPU. ``--spec PATH`` trains on another spec (a ``.slice`` file or an IR
``.json``) with its tables set to ``--dim``; ``--mean-events`` sets the generator's mean
history length (the ``small`` profile's 1,000 by default); ``--no-baseline`` times dedup only.
``--pooling ebc fused`` times both slice-table pooling paths (same model, interleaved).
``--out`` writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dv365.data.synth import SynthConfig, synthesize
from dv365.model.config import parse_config
from dv365.model.examples import Examples
from dv365.model.train import Trainer


def _spec(folder: Path, dim: int, spec: str = "paper-shaped") -> Path:
    if spec == "paper-shaped":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
        from model_comparison import paper_shaped_spec

        ir = paper_shaped_spec(dim)
    else:
        from benchmarks.kernels import resized
        from dv365.model.foundation import load_spec

        ir = resized(load_spec(Path(spec)), dim)
    path = folder / "spec.json"
    path.write_text(ir.to_json())
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


def _time_inputs(trainer: Trainer, rows: np.ndarray) -> float:
    start = time.perf_counter()
    trainer._inputs(trainer.train_set, rows)
    if trainer.device.type == "cuda":
        import torch

        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--kernel", choices=["cpu", "cuda", "reference"],
                        help="slice kernel backend (default: the config's for the device)")
    parser.add_argument("--pooling", nargs="+", choices=["ebc", "fused"], default=["ebc"],
                        help="slice-table pooling path(s); several are timed interleaved")
    parser.add_argument("--spec", default="paper-shaped",
                        help="paper-shaped (45 slices, scripts/model_comparison.py) or a "
                             ".slice / IR .json path")
    parser.add_argument("--mean-events", type=int, help="generator's mean events per user")
    parser.add_argument("--no-baseline", action="store_true",
                        help="time dedup only (no one-history-per-example baseline)")
    parser.add_argument("--out", type=Path, help="write the numbers as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # The generator's API rather than `dv365 synth`: the same data without the CLI stack.
        synthesize(folder / "data", SynthConfig(
            users=args.users, mean_events=args.mean_events,
            max_events=max(5 * args.mean_events, 5000) if args.mean_events else None))
        raw = {
            "data": {"path": str(folder / "data"), "cache_dir": str(folder / "cache")},
            "spec": str(_spec(folder, args.dim, args.spec)), "out": str(folder / "run"),
            "encoder": {"type": "fsa"}, "backbone": {"type": "dlrm"},
            "batch_size": args.batch_size, "steps": 1, "device": args.device,
            "pooling": args.pooling[0]}
        if args.kernel:
            raw["kernel"] = args.kernel
        config = parse_config(raw)
        trainer = Trainer(config)
        batches = trainer._batches_of_epoch(0)[: args.steps + 3]
        dedup_set, plain_set = trainer.train_set, _without_dedup(trainer.train_set)
        groups = [len(np.unique(dedup_set.group[b])) for b in batches[3:]]
        sets = [("dedup", dedup_set)] + ([] if args.no_baseline else [("baseline", plain_set)])
        # One entry per (history set, pooling path), each timed on every batch.
        ways = [(f"{name}/{pooling}", train_set, config.model_copy(update={"pooling": pooling}),
                 []) for pooling in args.pooling for name, train_set in sets]
        inputs = []
        # Interleaved per batch, so that load from other jobs on the machine hits all alike.
        for i, rows in enumerate(batches):
            for _, train_set, way_config, times in ways:
                trainer.train_set, trainer.config = train_set, way_config
                took = _time_steps(trainer, [rows])[0]
                if i >= 3:
                    times.append(took)
            trainer.train_set, trainer.config = dedup_set, config
            if i >= 3:
                inputs.append(_time_inputs(trainer, rows))
        examples = statistics.median(len(b) for b in batches[3:])
        events = trainer.store.num_events
        print(f"{args.users} users, {events:,} events, {len(trainer.ir.slices)} slices x "
              f"D={trainer.ir.dim}, batch ~{examples:.0f} examples = median "
              f"{statistics.median(groups):.0f} user-day groups, device {config.device}, "
              f"kernel {config.kernel}")
        result = {"date": time.strftime("%Y-%m-%d"), "device": config.device,
                  "kernel": config.kernel, "users": args.users, "events": events,
                  "slices": len(trainer.ir.slices), "dim": trainer.ir.dim,
                  "spec": args.spec, "batch_examples": examples,
                  "batch_groups": statistics.median(groups), "steps": len(batches) - 3,
                  "inputs_median_s": statistics.median(inputs)}
        if trainer.device.type == "cuda":
            import torch

            result["device_name"] = torch.cuda.get_device_name(trainer.device)
        described = {"dedup": "one history per user-day", "baseline": "one history per example"}
        for key, _, way_config, times in ways:
            med = statistics.median(times)
            result[key] = {"median_step_s": med, "examples_per_s": examples / med}
            name, pooling = key.split("/")
            print(f"  {name} ({described[name]}), pooling {pooling}: median step "
                  f"{med * 1e3:.0f} ms, {examples / med:,.0f} examples/s")
        print(f"  inputs alone ({config.pooling} inputs, dedup): median "
              f"{result['inputs_median_s'] * 1e3:.0f} ms")
        for pooling in args.pooling:
            if not args.no_baseline:
                ratio = (result[f"baseline/{pooling}"]["median_step_s"]
                         / result[f"dedup/{pooling}"]["median_step_s"])
                result[f"dedup_speedup/{pooling}"] = ratio
                print(f"  dedup speedup ({pooling}): {ratio:.2f}x")
        if len(args.pooling) > 1:
            ratio = (result[f"dedup/{args.pooling[0]}"]["median_step_s"]
                     / result[f"dedup/{args.pooling[1]}"]["median_step_s"])
            result[f"{args.pooling[1]}_vs_{args.pooling[0]}"] = ratio
            print(f"  {args.pooling[1]} over {args.pooling[0]} (dedup steps): {ratio:.2f}x")
        if args.out:
            args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
