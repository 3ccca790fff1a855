"""Export end to end at paper scale: timeline store on disk -> kernels -> encoder -> codec ->
published LMDB snapshot, with the kernel-only rate measured in the same run.

Data: ``--users`` x ``--events`` synthetic events (benchmarks/kernels.py's generator: a year,
15% explicit, Zipf ids) written as a timeline store cache entry (``.npy`` files, memory
mapped as ``dv365 export`` reads them); ``slices/reels.slice`` with the paper's table rows at
``--dim``; an untrained FSA model saved as a real checkpoint; an LMDB store in a temporary
folder. Request time: the data's end (every history is the year minus the last day).

Measured, each over the same batches:

* ``kernel_only``: the fused pooling kernel alone (``pool_fused``), the baseline;
* ``warm_up_s``: one batch through the export's path first (the store's input checks and
  the kernels' compilation for gathered batches, paid once a process);
* ``end_to_end``: :func:`dv365.export.job.export_snapshot`, from the checkpoint file to the
  published snapshot (model rebuild and checks included), with its own phase clock; on CUDA
  its loader thread gathers the next batch into pinned memory and copies it on a side stream
  while this one computes, and the writer thread writes the last shard;
* ``phases_s`` (a second, synchronized run on CUDA, so each phase is its own time): reading
  events (gathering the visible events of a batch), host-to-device copy, kernels, encoder,
  codec (encode + seal), writes.

    python benchmarks/export.py --device cpu --users 32 --events 40000 --dim 64
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.kernels import reels_ir, synthetic_store  # noqa: E402
from dv365.data.timeline import MANIFEST, STORE_VERSION, TimelineStore, file_digest  # noqa: E402
from dv365.export.encode import Phases, UserEncoder  # noqa: E402
from dv365.export.job import export_snapshot  # noqa: E402
from dv365.kernels.fused import pool_fused  # noqa: E402
from dv365.model.backbones.options import ItemFeature  # noqa: E402
from dv365.model.checkpoint import save_checkpoint  # noqa: E402
from dv365.model.config import parse_config  # noqa: E402
from dv365.model.foundation import ModelInputs, build_model  # noqa: E402
from dv365.model.tasks import Task  # noqa: E402
from dv365.plugins import get_plugins  # noqa: E402


GENERATED_USERS = 1024
"""Users generated; more are copies of them under new ids (generating 40k events a user
takes ~25 ms, which would dominate a run of many thousands)."""


def store_on_disk(users: int, events: int, folder: Path) -> TimelineStore:
    """The synthetic store written as a timeline cache entry, opened memory-mapped."""
    synthetic = synthetic_store(min(users, GENERATED_USERS), events)
    copies = -(-users // GENERATED_USERS)
    folder.mkdir(parents=True)
    offsets = np.arange(0, users * events + 1, events, dtype=np.int64)
    arrays = {"user_ids": np.arange(users, dtype=np.int64), "offsets": offsets}
    for name, column in synthetic.columns.items():
        arrays[name] = np.tile(column, copies)[:users * events]
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", np.ascontiguousarray(array))
    (folder / MANIFEST).write_text(json.dumps({
        "format": "dv365-timeline-store", "version": STORE_VERSION, "source": str(folder),
        "num_users": users, "num_events": users * events,
        "meta": json.loads(synthetic.meta.model_dump_json()),
        # a cache entry records its arrays' digests, checked when a file's stat changes
        "digests": {name: file_digest(folder / f"{name}.npy", folder.parent)
                    for name in arrays}}))
    return TimelineStore.load(folder)


def checkpoint(folder: Path, dim: int, paper_rows: bool):
    """An untrained FSA model over reels.slice at ``dim``, saved as ``dv365 train`` would;
    returns the path, the model and its IR."""
    ir = reels_ir(dim, paper_rows)
    plugins = get_plugins()
    config = parse_config({
        "data": {"path": str(folder)}, "spec": str(ROOT / "slices" / "reels.slice"),
        "out": str(folder / "run"), "encoder": {"type": "fsa"}, "steps": 1,
        "backbone": {"type": "dlrm", "embedding_dim": 8, "dense_layers": [8],
                     "over_layers": [8]}}, plugins=plugins)
    inputs = ModelInputs((Task("like", "binary", False),), (ItemFeature("media_id", 1024),), 1)
    model = build_model(config, ir, inputs, plugins)
    path = save_checkpoint(folder / "run", step=0, epoch=0, spec=ir,
                           config_json=config.to_json(), model_inputs_json=inputs.to_json(),
                           model=model, optimizers={})
    return path, model, ir


def kernel_only(model, ir, store: TimelineStore, at_ms: int, device: str,
                batch_size: int) -> float:
    """Seconds the fused kernel alone takes over the export's batches (after a warm-up
    batch that compiles it, for the export too)."""
    from dv365.export.codecs import codec_named

    enc = UserEncoder(model, ir, store, codec_named("fp32"), at_ms, device=device,
                      batch_size=batch_size)
    batches = [np.arange(lo, min(store.num_users, lo + batch_size))
               for lo in range(0, store.num_users, batch_size)]
    pool_fused(enc.ir, store, batches[0], at_ms, enc.tables, enc.backend)  # compile
    sync(device)
    t0 = time.perf_counter()
    for users in batches:
        pool_fused(enc.ir, store, users, at_ms, enc.tables, enc.backend)
    sync(device)
    return time.perf_counter() - t0


def warm_up(model, ir, store: TimelineStore, at_ms: int, args) -> float:
    """Seconds of one batch through the export's own path (the store's input checks and
    the kernels' compilation for gathered batches: once a process, not per user)."""
    from dv365.export.codecs import codec_named

    t0 = time.perf_counter()
    enc = UserEncoder(model, ir, store, codec_named(args.codec), at_ms, device=args.device,
                      batch_size=args.batch_size)
    for _ in enc.stream([np.arange(min(args.batch_size, store.num_users))]):
        pass
    sync(args.device)
    return time.perf_counter() - t0


def reconstruction(model, ir, store: TimelineStore, at_ms: int, sink, args) -> dict:
    """The published records of the first users decoded against their fp32 vectors:
    relative L2, max abs, and the record size against fp32 pooled slices and fp32 outputs."""
    from dv365.export.codecs import codec_named

    users = np.arange(min(store.num_users, 256))
    enc = UserEncoder(model, ir, store, codec_named("fp32"), at_ms, device=args.device,
                      batch_size=len(users))
    exact = enc.vectors(users).float().cpu()
    stored = sink.get(store.user_ids[users]).vectors
    m = sink.manifest()
    return {"users": len(users), "relative_l2": float((stored - exact).norm() / exact.norm()),
            "max_abs": float((stored - exact).abs().max()),
            "ratio_vs_fp32_outputs": m.rows * m.dim * 4 / m.record_size,
            "ratio_vs_fp32_pooled_slices": len(ir.slices) * ir.dim * 4 / m.record_size}


def sync(device: str) -> None:
    if device == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--users", type=int, default=32)
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--codec", default="fp32")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--shard-size", type=int, default=4096)
    ap.add_argument("--spec-rows", action="store_true",
                    help="keep reels.slice's own table rows instead of the paper's (a 3.4 GB "
                         "checkpoint at D=64 takes half a minute to save and to load here)")
    ap.add_argument("--tmp", type=Path, default=None, help="where the store, checkpoint and "
                                                           "LMDB folder go (default: a temp dir)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    from dv365.stores import open_store

    tmp = Path(tempfile.mkdtemp(prefix="dv365-export-bench-", dir=args.tmp))
    try:
        t0 = time.perf_counter()
        store = store_on_disk(args.users, args.events, tmp / "timeline" / "bench-data")
        ckpt, model, ir = checkpoint(tmp / "model", args.dim, not args.spec_rows)
        setup_s = time.perf_counter() - t0
        at = int(store.ts.max()) + 1
        t_kernel = kernel_only(model, ir, store, at, args.device, args.batch_size)
        t_warm = warm_up(model, ir, store, at, args)
        runs = {}
        for name, phases in (("end_to_end", Phases()),
                             *((("phases", Phases(sync=True)),) if args.device == "cuda"
                               else ())):
            with open_store(f"lmdb://{tmp / ('lmdb-' + name)}") as sink:
                result = export_snapshot(ckpt, store, at, sink, device=args.device,
                                         codec=args.codec, batch_size=args.batch_size,
                                         shard_size=args.shard_size, phases=phases)
                runs[name] = result
                if name == "end_to_end":
                    error = reconstruction(model, ir, store, at, sink, args)
        e2e = runs["end_to_end"]
        phases = runs.get("phases", e2e).phases
        m = e2e.manifest
        out = {
            "date": time.strftime("%Y-%m-%d"),
            "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "spec": "slices/reels.slice", "users": args.users, "events_per_user": args.events,
            "dim": args.dim, "codec": m.codec, "shape": [m.rows, m.dim],
            "record_bytes": m.record_size, "batch_size": args.batch_size,
            "shard_size": args.shard_size, "paper_rows": not args.spec_rows,
            "setup_s": setup_s,
            "warm_up_s": t_warm,
            "kernel_only": {"seconds": t_kernel, "users_per_s": args.users / t_kernel},
            # the rate of the shard loop (the part that scales with users) and of the whole
            # command (the checkpoint load and checks included, a constant)
            "end_to_end": {"seconds": e2e.seconds, "setup_s": e2e.setup_seconds,
                           "users_per_s": args.users / (e2e.seconds - e2e.setup_seconds),
                           "users_per_s_with_setup": e2e.users_per_second,
                           "share_of_kernel_rate": t_kernel / (e2e.seconds
                                                               - e2e.setup_seconds)},
            "phases_s": dict(phases),
            # the synchronized run is the same job one step at a time (no loader thread)
            "synchronized_users_per_s": (args.users / (runs["phases"].seconds
                                                       - runs["phases"].setup_seconds)
                                         if "phases" in runs else None),
            "reconstruction": error,
            "phases_synchronized": bool(phases.sync),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return out


if __name__ == "__main__":
    main()
