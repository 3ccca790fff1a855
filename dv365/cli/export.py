"""``dv365 export``: every user's embedding at one request time, published to a store.

Opens the data's timeline store and the target store (by URI), runs
:func:`dv365.export.job.export_snapshot` with a progress bar, and prints one summary line.
``--at`` takes what ``dv365 explain --at`` takes (ISO-8601, UTC when no zone, or epoch ms) or
``end``: the data's last event + 1 ms. ``--ray ADDRESS``, ``--workers N`` and ``--devices
cuda:0,cuda:1`` compute the shards on workers (:mod:`dv365.export.parallel`); without them
the export runs in this process. See docs/export.md.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

import typer

from dv365.console import progress, stdout
from dv365.paths import display_path

END = "end"


def request_time(text: str, store) -> int:
    """``--at``: ``end`` (the data's last event + 1 ms) or a time ``parse_time`` reads."""
    from dv365.cli.explain import parse_time
    from dv365.export.request_time import DataSpan

    if text.strip().lower() == END:
        return DataSpan.of(store).end_ms
    return parse_time(text)


def export(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A checkpoint of dv365 train."),
    data: Path = typer.Option(..., "--data", help="Data folder (or events dataset folder)."),
    at: str = typer.Option(
        ..., "--at",
        help="Request time: ISO-8601 (UTC if no zone), epoch ms, or `end` (the data's last "
             "event + 1 ms). Each user's history before it minus the spec's gap is encoded."),
    to: str = typer.Option(..., "--to", help="Target store URI, e.g. lmdb://build/store."),
    since: Optional[str] = typer.Option(
        None, "--since",
        help="Refresh snapshot SINCE of the target store: compute only the users whose "
             "embedding can have changed, copy the others."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    codec: str = typer.Option(
        "int4", "--codec",
        help="Record codec: int4 (fbgemm's row-wise 4-bit rows), fp16 or fp32 (`dv365 plugins` "
             "lists them)."),
    batch_size: int = typer.Option(
        256, "--batch-size", min=1,
        help="Users per kernel batch (the encoder takes 256 at a time; records do not depend "
             "on it)."),
    shard_size: int = typer.Option(65_536, "--shard-size", min=1,
                                   help="Users per shard (the unit an interrupted export "
                                        "resumes from)."),
    history: Optional[int] = typer.Option(
        None, "--history", min=1,
        help="Encode at most the N most recent visible events of each user (what a shorter "
             "history would give; default: all of them)."),
    ray: Optional[str] = typer.Option(
        None, "--ray", metavar="ADDRESS",
        help="Compute the shards on Ray: `local` (start Ray on this machine), `auto` (the "
             "cluster this machine is part of) or a cluster address (ray://HEAD:10001). "
             "Needs pip install 'dv365[ray]'."),
    workers: int = typer.Option(
        1, "--workers", min=1,
        help="Workers computing shards: Ray actors with --ray, else processes on --device "
             "(cuda: cuda:0 .. cuda:N-1). 1 without --ray: this process."),
    devices: Optional[str] = typer.Option(
        None, "--devices",
        help="One worker process per device, comma-separated: cuda:0,cuda:1 or cpu,cpu."),
    gpus_per_worker: Optional[float] = typer.Option(
        None, "--gpus-per-worker", min=0,
        help="GPUs of each Ray worker (default 1 with --device cuda, else 0)."),
    cpus_per_worker: float = typer.Option(1.0, "--cpus-per-worker", min=0,
                                          help="CPUs of each Ray worker (may be fractional)."),
    retries: int = typer.Option(2, "--retries", min=0,
                                help="Times a shard whose worker failed is run again."),
) -> None:
    """Export every user's embedding of DATA at time AT from CHECKPOINT to a store."""
    from dv365.data.timeline import TimelineStore
    from dv365.errors import UsageError
    from dv365.export.job import export_snapshot
    from dv365.export.executor_options import executor_for
    from dv365.plugins import get_plugins
    from dv365.stores import open_store
    from dv365.stores.uri import parse_store_uri

    if device not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {device!r}", where="--device", hint="cpu or cuda")
    if not checkpoint.is_file():
        raise UsageError("no such checkpoint file", where=display_path(checkpoint))
    # An unknown scheme fails before the data is read (opening a store may create it).
    get_plugins().stores.get(parse_store_uri(to, where="--to").scheme, where="--to")
    executor = executor_for(ray=ray, workers=workers,
                            devices=None if devices is None else devices.split(","),
                            device=device, gpus_per_worker=gpus_per_worker,
                            cpus_per_worker=cpus_per_worker)
    store = TimelineStore.open(data)
    at_ms = request_time(at, store)
    with open_store(to, where="--to") as sink:
        result = export_snapshot(checkpoint, store, at_ms, sink, since=since, device=device,
                                 codec=codec, batch_size=batch_size, shard_size=shard_size,
                                 progress=progress, executor=executor,
                                 open_sink=functools.partial(open_store, to, where="--to"),
                                 retries=retries, history=history)
        stdout.print(result.summary() + f" of {sink.display_uri}", highlight=False,
                     markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
