"""The last K events before the request (:func:`dv365.kernels.recent.recent_events`) against
a per-query NumPy loop, in one process.

Run: ``python -m benchmarks recent [--users U] [--events E] [--queries Q] [--k K]
[--repeats R] [--out FILE]``.

Data: the synthetic store of ``benchmarks/kernels.py`` (``--users`` x ``--events`` events,
a year of history, Zipf-skewed ids); ``--queries`` random users (repeats allowed) with a
request time uniform in the last week of the year, so nearly every query finds K events;
the default columns (``ts``, three ids, ``action``, ``dwell_time``: 37 bytes an event).

Baseline (what one writes first): a Python loop over the queries, ``np.searchsorted`` on the
user's ``ts`` slice, one slice per column, then one ``np.concatenate`` per column. Its result
is checked equal to the kernel's before any timing.

Measured: medians of ``--repeats`` calls after one warm-up (which compiles): time, queries/s,
events gathered/s; bytes moved (each gathered event's column bytes read once and written
once, plus the offsets and the binary searches' reads, one cache line a probe) against the
achieved rate, and, for scale, the rate of one ``np.copyto`` of as many bytes as the
output (counted the same way, read plus written; one thread, into memory already touched),
and the time to allocate and first touch fresh output memory of that size (page faults: the
kernel and the baseline both return new arrays, so both pay it). Prints one JSON document (and writes it with ``--out``).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import numba

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._timing import emit, median_seconds  # noqa: E402
from benchmarks.kernels import synthetic_store  # noqa: E402
from dv365.durations import DAY_MS  # noqa: E402
from dv365.kernels.recent import DEFAULT_COLUMNS, RecentEvents, recent_events  # noqa: E402

CACHE_LINE = 64


def numpy_loop(store, users: np.ndarray, cutoffs: np.ndarray, k: int,
               columns=DEFAULT_COLUMNS) -> RecentEvents:
    """The baseline: one ``np.searchsorted`` and one slice per column for each query."""
    offsets, ts = store.offsets, store.columns["ts"]
    cols = {name: store.columns[name] for name in columns}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in columns}
    lengths = np.zeros(len(users), dtype=np.int64)
    for b, (u, cutoff) in enumerate(zip(users.tolist(), cutoffs.tolist())):
        s = offsets[u]
        end = s + np.searchsorted(ts[s:offsets[u + 1]], cutoff)
        start = max(s, end - k)
        lengths[b] = end - start
        for name, col in cols.items():
            parts[name].append(col[start:end])
    out_offsets = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_offsets[1:])
    return RecentEvents(out_offsets, {name: np.concatenate(p) for name, p in parts.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=4_000)
    ap.add_argument("--events", type=int, default=2_500, help="events per user")
    ap.add_argument("--queries", type=int, default=20_000)
    ap.add_argument("--k", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--baseline-repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    store = synthetic_store(args.users, args.events, seed=0)
    rng = np.random.default_rng(1)
    users = rng.integers(0, args.users, args.queries).astype(np.int64)
    end = int(store.columns["ts"].max()) + 1
    cutoffs = (end - rng.integers(0, 7 * DAY_MS, args.queries)).astype(np.int64)

    got = recent_events(store, users, cutoffs, args.k)  # compiles, checks the store
    want = numpy_loop(store, users, cutoffs, args.k)
    assert np.array_equal(got.offsets, want.offsets)
    for name, values in want.columns.items():
        assert np.array_equal(got.columns[name], values, equal_nan=values.dtype.kind == "f")

    kernel_s = median_seconds(lambda: recent_events(store, users, cutoffs, args.k),
                              args.repeats)
    loop_s = median_seconds(lambda: numpy_loop(store, users, cutoffs, args.k),
                            args.baseline_repeats)

    gathered = int(got.offsets[-1])
    event_bytes = sum(store.columns[c].dtype.itemsize for c in DEFAULT_COLUMNS)
    probes = math.ceil(math.log2(args.events + 1))
    moved = (2 * gathered * event_bytes              # columns read and written
             + args.queries * probes * CACHE_LINE    # binary searches over ts
             + args.queries * 8 * 5)                 # users, cutoffs, ends, starts, offsets
    out_bytes = gathered * event_bytes
    src = np.ones(out_bytes, dtype=np.uint8)
    dst = np.empty_like(src)
    copy_s = median_seconds(lambda: np.copyto(dst, src), args.repeats)
    touch_s = median_seconds(lambda: np.empty(out_bytes, dtype=np.uint8).fill(0), args.repeats)

    results = {
        "benchmark": "recent",
        "store": {"users": args.users, "events_per_user": args.events,
                  "events": int(store.offsets[-1])},
        "queries": args.queries, "k": args.k, "columns": list(DEFAULT_COLUMNS),
        "threads": numba.get_num_threads(),
        "events_gathered": gathered,
        "mean_length": round(gathered / args.queries, 1),
        "kernel_ms": round(kernel_s * 1e3, 2),
        "kernel_queries_per_s": round(args.queries / kernel_s),
        "kernel_events_per_s": round(gathered / kernel_s),
        "bytes_moved": moved,
        "kernel_gb_per_s": round(moved / kernel_s / 1e9, 2),
        "np_copyto_gb_per_s": round(2 * out_bytes / copy_s / 1e9, 2),
        "output_first_touch_ms": round(touch_s * 1e3, 2),
        "numpy_loop_ms": round(loop_s * 1e3, 1),
        "numpy_loop_queries_per_s": round(args.queries / loop_s),
        "speedup_over_numpy_loop": round(loop_s / kernel_s, 1),
    }
    emit(results, args.out)


if __name__ == "__main__":
    main()
