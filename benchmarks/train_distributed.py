"""Examples/s of ``dv365 train`` on one device and on several (torchrec DMP), and the scaling
efficiency.

Run: ``.venv/bin/python -m benchmarks train_distributed [--devices cpu dmp:cpu cpu,cpu]
[--users N] [--mean-events E] [--dim D] [--paper-rows] [--batch-size B] [--steps S]
[--threads T] [--out FILE]``.

Generates one data set, builds reels.slice (205 slices, 15 tables) at ``--dim`` (with
``--paper-rows`` the paper profile's table rows: media 2^21, author 2^19), and trains the
default FSA + DLRM model once per device list of ``--devices`` (comma-separated devices:
``cpu``, ``cpu,cpu``; on GPUs ``cuda:0 cuda:0,cuda:1``), each in its own run folder, through
``dv365.model.train.train`` as ``dv365 train`` does. ``dmp:cpu`` (``dmp:cuda:0``) trains one
device as a 1-rank DMP run, the path several devices take: its fused table optimizer and
data-parallel item tables cost differently per step from the single-device path, so the
scaling efficiency is taken against it.

Every run trains 2 warm-up steps (the slice kernels' JIT, DMP's first all-to-alls), then
resumes for ``--steps`` more: the resumed call's examples/s (global batch examples over rank
0's step time, no evaluation or checkpoint inside it) is the number. The global batch is the
same on every device count, so the efficiency is ``examples/s(n) / (n * examples/s(1))``,
against the 1-rank DMP run when there is one (else the first run). Every run uses the jagged
path (``pooling: ebc``), the one DMP shards, and the planner's plan.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

from benchmarks._timing import emit
from benchmarks.kernels import reels_ir
from dv365.data.synth import SynthConfig, synthesize
from dv365.model.config import parse_config
from dv365.model.ranks import run_on_ranks
from dv365.model.train import train, train_on_rank


def _train(raw: dict, under_dmp: bool):
    config = parse_config(raw)
    if not under_dmp:
        return train(config)
    return run_on_ranks(functools.partial(train_on_rank, config), config.devices,
                        threads=config.threads)


def _run(folder: Path, data: Path, spec: Path, devices: list[str], args) -> dict:
    under_dmp = devices[0].startswith("dmp:")
    devices = [d.removeprefix("dmp:") for d in devices]
    raw = {"data": {"path": str(data), "cache_dir": str(folder.parent / "cache"),
                    "max_eval_examples": args.batch_size},
           "spec": str(spec), "out": str(folder), "encoder": {"type": "fsa"},
           "backbone": {"type": "dlrm"}, "batch_size": args.batch_size, "steps": 2,
           "eval_every": 10**9, "checkpoint_every": 10**9, "pooling": "ebc",
           "threads": args.threads, "devices": devices}
    _train(raw, under_dmp)
    raw["steps"] = 2 + args.steps
    start = time.perf_counter()
    result = _train(raw, under_dmp)
    wall = time.perf_counter() - start
    return {"devices": devices, "dmp": under_dmp or len(devices) > 1,
            "examples_per_s": result.samples_per_s, "wall_s": wall, "steps": args.steps}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", nargs="+", default=["cpu", "dmp:cpu", "cpu,cpu"],
                        help="device lists to compare, each comma-separated")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--mean-events", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--paper-rows", action="store_true",
                        help="the paper profile's table rows (media 2^21, author 2^19)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per rank (default: the cores shared out)")
    parser.add_argument("--out", type=Path, help="write the numbers as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        synthesize(folder / "data", SynthConfig(users=args.users, mean_events=args.mean_events,
                                                max_events=max(5 * args.mean_events, 5000)))
        spec = folder / "spec.json"
        spec.write_text(reels_ir(args.dim, paper_rows=args.paper_rows).to_json())
        runs = [_run(folder / f"run-{i}", folder / "data", spec, devices.split(","), args)
                for i, devices in enumerate(args.devices)]
    # The efficiency against one rank of the same path (DMP's fused table optimizer costs
    # less per step than the single-device one), else against the first run.
    ones = [r for r in runs if len(r["devices"]) == 1]
    base = next((r for r in ones if r["dmp"]), runs[0])
    for run in runs:
        run["efficiency"] = run["examples_per_s"] / (len(run["devices"]) *
                                                     base["examples_per_s"])
        path = "DMP" if run["dmp"] else "single-device"
        print(f"  {','.join(run['devices'])} ({path}): {run['examples_per_s']:,.0f} "
              f"examples/s, scaling efficiency {run['efficiency']:.2f}")
    emit({"date": time.strftime("%Y-%m-%d"), "users": args.users,
          "mean_events": args.mean_events, "dim": args.dim, "paper_rows": args.paper_rows,
          "batch_size": args.batch_size, "runs": runs}, args.out)


if __name__ == "__main__":
    main()
