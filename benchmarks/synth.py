"""Generator throughput: ``dv365 synth`` end to end, against its parts and the I/O floor.

Run: ``python -m benchmarks synth [--users N] [--profile small|paper] [--repeats R]
[--codecs none,lz4,zstd]``.

Measured, each as the median of ``--repeats`` runs in this process:

* **start-up**: the fixed cost before the first block (catalogue, tables, the explicit-share
  pilot, ``truth/items.parquet``);
* **end to end**: ``synthesize`` into a temporary folder (start-up, generation, Parquet
  writing on the writer thread, truth files, the atomic rename), in events per second;
* **generate only**: the same blocks built as Arrow tables and dropped;
* **write only (I/O floor)**: the same, already generated, event tables written with the same
  Parquet settings (the cost that any generator producing these bytes must pay);
* each events codec in ``--codecs``: end to end and bytes per event.

The baseline ratio reported is end-to-end time / write-only time: 1.0 would mean generation
is entirely hidden behind Parquet encoding on the other core. CPU seconds (all threads) are
reported too: on a shared machine wall time depends on the load, while CPU per event gives
the bound for two idle cores (one generating, one writing): 1 / max(generate, write CPU).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from dv365.data.dataset import DatasetWriter
from dv365.data.synth import (
    EVENTS_COMPRESSION,
    EVENTS_PARQUET_OPTIONS,
    SynthConfig,
    World,
    _prepare,
    _write_items,
    iter_blocks,
    synthesize,
)


def _median(fn, repeats: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (all threads of this process)."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.parquet"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks synth", description=__doc__)
    parser.add_argument("--users", type=int, default=None,
                        help="default: ~20 M events (20,000 small users, 500 paper users)")
    parser.add_argument("--profile", default="small", choices=["small", "paper"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--codecs", default="none,lz4,zstd")
    args = parser.parse_args(argv)
    users = args.users or (20_000 if args.profile == "small" else 500)
    config = SynthConfig(users=users, seed=0, profile=args.profile).resolved()

    world = _prepare(World.build(config))  # also compiles the kernels (cached on disk)
    blocks = [b.events for b in iter_blocks(world)]
    events = sum(t.num_rows for t in blocks)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, python "
          f"{platform.python_version()}; profile {args.profile}, {users:,} users, "
          f"{events:,} events, {len(blocks)} blocks; median of {args.repeats}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def write_only() -> None:
            out = tmp / "write-only"
            shutil.rmtree(out, ignore_errors=True)
            with DatasetWriter(out, world.events_schema, compression=EVENTS_COMPRESSION,
                               parquet_options=EVENTS_PARQUET_OPTIONS) as w:
                for t in blocks:
                    w.write(t)

        def generate_only() -> None:
            for _ in iter_blocks(world):
                pass

        def end_to_end(codec: str = EVENTS_COMPRESSION) -> None:
            synthesize(tmp / f"e2e-{codec}", config, overwrite=True, compression=codec)

        def start_up() -> None:
            _write_items(_prepare(World.build(config)), tmp / "items.parquet")

        t_start, c_start = _median(start_up, args.repeats)
        t_write, c_write = _median(write_only, args.repeats)
        del blocks
        t_gen, c_gen = _median(generate_only, args.repeats)
        rows = [("start-up (catalogue, tables, items.parquet)", t_start, c_start, None),
                ("write only (I/O floor)", t_write, c_write, _folder_bytes(tmp / "write-only"))]
        rows.append(("generate only", t_gen, c_gen, None))
        results = {}
        for codec in args.codecs.split(","):
            t, c = _median(lambda: end_to_end(codec), args.repeats)
            results[codec] = t
            rows.append((f"end to end, events {codec}", t, c,
                         _folder_bytes(tmp / f"e2e-{codec}" / "events")))

    print("| step | seconds | M events/s | CPU ns/event | bytes/event |")
    print("|---|---|---|---|---|")
    for name, t, c, size in rows:
        per = f"{size / events:.1f}" if size else "-"
        print(f"| {name} | {t:.2f} | {events / t / 1e6:.1f} | {c / events * 1e9:.0f} | {per} |")
    t_e2e = results.get(EVENTS_COMPRESSION, min(results.values()))
    # One core generates while the writer thread encodes on the other: the slower stage bounds.
    bound = events / max(c_gen, c_write) / 1e6
    print(f"end to end ({EVENTS_COMPRESSION}) / write only: {t_e2e / t_write:.2f}x; "
          f"pipeline bound on two idle cores: {bound:.1f} M events/s; load average now "
          f"{os.getloadavg()[0]:.1f}; target 10 M events/s: "
          f"{'met' if events / t_e2e >= 10e6 else 'NOT met'} ({events / t_e2e / 1e6:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
