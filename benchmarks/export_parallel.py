"""Export across workers against the single-process export, in the same process: users/s of
``export_snapshot`` in this process (the baseline), on Ray with 1 and 2 workers (a local Ray
of ``--cpus`` CPUs started here), and on 2 worker processes. With ``--device cuda`` the
baseline runs on this process's GPU and ``gpus-N`` runs one worker process on each of the
first N GPUs (``dv365 export --devices cuda:0,...``).

Data and model as benchmarks/export.py (synthetic events written as a timeline store cache
entry, reels.slice with its own table rows, an untrained FSA checkpoint), an LMDB target
made fresh for every run. Every run is the whole job: the workers' start-up (a process or
an actor, the model rebuilt, kernels compiled) is part of what is measured, which is the
overhead this benchmark is about. Each configuration is run ``--repeats`` times,
alternating, and the medians are reported with their ratio to the baseline; every snapshot
is checked against the baseline's checksum.

    python -m benchmarks export_parallel --users 2048 --events 10000 --shard-size 512 --repeats 3
    python -m benchmarks export_parallel --device cuda --configs single,gpus-1 --users 8192
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._timing import emit  # noqa: E402
from benchmarks.export import checkpoint, store_on_disk  # noqa: E402
from dv365.export.job import export_snapshot  # noqa: E402
from dv365.export.process_executor import ProcessExecutor  # noqa: E402
from dv365.export.ray_executor import RayExecutor  # noqa: E402
from dv365.stores import open_store  # noqa: E402


def start_ray(cpus: int, temp: Path):
    """A local Ray of ``cpus`` CPUs whose workers import this checkout."""
    os.environ.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    import ray

    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             _temp_dir=str(temp),
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}})
    return ray


def records_agreement(reference: str, uri: str, users: int) -> dict:
    """How the records of snapshot ``uri`` compare with ``reference``'s: the share of users
    whose record bytes are equal, and the largest difference of a decoded value, also as a
    share of the largest value of that user's reference vectors (an int4 step is 1/7)."""
    ids = np.arange(users, dtype=np.int64)
    with open_store(reference) as a, open_store(uri) as b:
        raw_a, raw_b = a.read(ids).payloads, b.read(ids).payloads
        va, vb = a.get(ids).vectors.numpy(), b.get(ids).vectors.numpy()
    same = (raw_a == raw_b).reshape(users, -1).all(axis=1)
    diff = np.abs(va - vb).reshape(users, -1).max(axis=1)
    scale = np.abs(va).reshape(users, -1).max(axis=1)
    return {"users_equal_bytes": float(same.mean()), "max_abs_diff": float(diff.max()),
            "max_diff_of_user_scale": float((diff / np.maximum(scale, 1e-30)).max())}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=2048)
    ap.add_argument("--events", type=int, default=10_000, help="events a user")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--codec", default="int4", help="record codec")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--shard-size", type=int, default=512,
                    help="users a shard (below 256 the encoder's fixed calls are padded)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2,
                    help="CPUs of the local Ray (default: this machine's)")
    ap.add_argument("--device", default="cpu", help="the baseline's device (cpu or cuda)")
    ap.add_argument("--configs", default="single,ray-1,ray-2,processes-2",
                    help="single, ray-N, processes-N (N cpu workers), gpus-N (cuda:0..N-1)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    configs = args.configs.split(",")
    for name in configs:
        if name != "single" and not re.fullmatch(r"(ray|processes|gpus)-[1-9][0-9]*", name):
            ap.error(f"unknown configuration {name!r} in --configs (single, ray-N, "
                     "processes-N, gpus-N)")
    tmp = Path(tempfile.mkdtemp(prefix="dv365-xp-", dir="/tmp"))  # short: Ray's sockets
    ray = None
    try:
        store = store_on_disk(args.users, args.events, tmp / "timeline" / "bench-data")
        ckpt, _, _ = checkpoint(tmp / "model", args.dim, paper_rows=False)
        at = int(store.ts.max()) + 1
        if any(c.startswith("ray") for c in configs):
            ray = start_ray(args.cpus, tmp / "ray")

        def executor(name: str):
            if name == "single":
                return None
            kind, n = name.rsplit("-", 1)
            if kind == "ray":
                return RayExecutor(workers=int(n), timeout_s=600)
            if kind == "gpus":
                return ProcessExecutor([f"cuda:{i}" for i in range(int(n))], timeout_s=600)
            return ProcessExecutor(["cpu"] * int(n), timeout_s=600)

        def export(name: str, uri: str):
            with open_store(uri) as sink:
                t0 = time.perf_counter()
                result = export_snapshot(
                    ckpt, store, at, sink, device=args.device, codec=args.codec,
                    batch_size=args.batch_size, shard_size=args.shard_size,
                    executor=executor(name), open_sink=functools.partial(open_store, uri))
                return result, time.perf_counter() - t0

        # The baseline is a warm process (its kernels compiled by this untimed export);
        # each worker is a cold process, whose start-up is the overhead measured here.
        reference = f"lmdb://{tmp / 'lmdb-warm-up'}"
        warm_up = export("single", reference)[1]
        runs: dict[str, list[dict]] = {c: [] for c in configs}
        checksums = set()
        agreement: dict[str, list[dict]] = {c: [] for c in configs}
        for repeat in range(args.repeats):
            for name in configs:
                uri = f"lmdb://{tmp / f'lmdb-{name}-{repeat}'}"
                result, seconds = export(name, uri)
                checksums.add(result.manifest.checksum)
                agreement[name].append(records_agreement(reference, uri, args.users))
                runs[name].append({"seconds": seconds, "setup_s": result.setup_seconds,
                                   "shards_s": result.seconds - result.setup_seconds})
                print(f"{name} #{repeat}: {seconds:.2f} s", file=sys.stderr, flush=True)
        summary = {}
        for name, rs in runs.items():
            seconds = statistics.median(r["seconds"] for r in rs)
            shards = statistics.median(r["shards_s"] for r in rs)
            summary[name] = {"seconds": seconds, "users_per_s": args.users / seconds,
                             "shards_s": shards,
                             "shard_loop_users_per_s": args.users / shards,
                             "setup_s": statistics.median(r["setup_s"] for r in rs),
                             "runs_s": [r["seconds"] for r in rs],
                             "records_vs_warm_up": agreement[name]}
        base = summary.get("single")
        if base is not None:
            for entry in summary.values():
                entry["ratio_vs_single"] = base["seconds"] / entry["seconds"]
        out = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine_cpus": os.cpu_count(), "load_average": os.getloadavg(),
            "threads_single_process": torch.get_num_threads(), "torch": torch.__version__,
            "device": args.device,
            "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
            "ray": ray.__version__ if ray is not None else None,
            "users": args.users, "events_per_user": args.events, "dim": args.dim,
            "codec": args.codec, "batch_size": args.batch_size, "shard_size": args.shard_size,
            "repeats": args.repeats, "warm_up_s": warm_up,
            "same_checksum_everywhere": len(checksums) == 1,
            "configs": summary,
        }
    finally:
        if ray is not None:
            ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    emit(out, args.out)
    return out


if __name__ == "__main__":
    main()
