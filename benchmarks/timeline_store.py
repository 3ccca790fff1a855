"""Timeline store: cold build, cached open and cutoff-query throughput.

Run: ``.venv/bin/python -m benchmarks.timeline_store [--events N] [--repeats R] [--queries Q]``.

The input is written here with NumPy + pyarrow (not the generator): N events of skewed
history lengths (log-normal, one user capped at 70,000), a year of timestamps, canonical
schema with dictionary-encoded enums, zstd, files of 2M rows and row groups of 1M. Two copies:
*sorted* by (user, ts), as the generator and importers write, and *shuffled* (random row
order), which takes the stable-sort path.

Measured (medians of R runs, each a fresh cache folder):
* cold build, sorted and shuffled input; baseline in the same process: ``pq.read_table`` of
  the same files plus ``to_numpy`` of every column -- the plain decode, with no validation,
  code mapping or writing, which any build must at least do;
* content key with and without the stat memo (hashing the bytes vs reading the memo);
* open of a cached store (key + mapping the arrays);
* Q cutoff queries ``ends_before`` (random users, cutoff = a random request time minus 24h),
  against a Python loop over ``range_before`` (one ``np.searchsorted`` per query);
* a file of ``--append`` new events (existing users, times after the old ones, what
  ``dv365 pipeline`` collects) added to the sorted copy: the open that extends the cached
  store against a full build of the grown dataset in a fresh cache (the baseline: what
  every open after a collect did before), the arrays checked equal.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dv365.data.schema import DEFAULT_VOCAB, TS_TYPE, DatasetMeta, events_schema
from dv365.data.timeline import TimelineStore, content_key
from dv365.durations import DAY_MS

YEAR_MS = 365 * 86_400_000
T0 = 1_700_000_000_000
ROWS_PER_FILE = 2_000_000


def _median(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def history_lengths(n_events: int, rng) -> np.ndarray:
    """Log-normal lengths (mean ~4,000), one user of 70,000, summing to ``n_events``."""
    big = min(70_000, n_events)
    rest = n_events - big
    lengths = np.maximum(1, rng.lognormal(np.log(2_500), 1.0, max(1, rest // 4_000))).astype(int)
    lengths = np.minimum(lengths, 69_999)
    lengths = np.maximum(1, (lengths * rest / lengths.sum()).astype(np.int64))
    lengths[-1] += rest - lengths.sum()
    return np.r_[big, lengths[lengths > 0]] if rest else np.array([big])


def _enum(codes: np.ndarray, values: list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32),
                                                   mask=codes < 0), pa.array(values))


def _columns(user_ids: np.ndarray, lengths: np.ndarray, rng) -> dict[str, np.ndarray]:
    """Events of some users, sorted by (user, ts); ``user_ids`` ascending."""
    user = np.repeat(user_ids, lengths)
    n = user.size
    rank = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)
    # sort ts within each user: offset each user's times past the previous user's, sort, undo
    ts = np.sort(rng.integers(0, YEAR_MS, n) + rank * 2 * YEAR_MS) - rank * 2 * YEAR_MS + T0
    implicit = rng.random(n) < 0.75
    media_type = rng.choice(3, n, p=[0.85, 0.11, 0.04]).astype(np.int8)
    duration = rng.lognormal(np.log(60), 1.0, n).astype(np.float32)
    return {
        "user_id": user, "ts": ts, "timeline": implicit.astype(np.int8),
        "media_id": rng.integers(0, 2_000_000, n), "author_id": rng.integers(0, 500_000, n),
        "topic_id": rng.integers(0, 10_000, n), "media_type": media_type,
        "surface": rng.integers(0, 4, n).astype(np.int8),
        "action": np.where(implicit, -1, rng.integers(0, 8, n)).astype(np.int8),
        "video_duration": np.where(media_type == 0, duration, np.nan).astype(np.float32),
        "dwell_time": np.where(implicit, duration * rng.random(n, dtype=np.float32),
                               np.nan).astype(np.float32),
    }


def _write(path: Path, c: dict[str, np.ndarray], schema: pa.Schema) -> None:
    arrays = {
        "user_id": pa.array(c["user_id"]), "ts": pa.array(c["ts"]).view(TS_TYPE),
        "timeline": _enum(c["timeline"], ["explicit", "implicit"]),
        "media_id": pa.array(c["media_id"]), "author_id": pa.array(c["author_id"]),
        "topic_id": pa.array(c["topic_id"]),
        "media_type": _enum(c["media_type"], DEFAULT_VOCAB["media_type"]),
        "surface": _enum(c["surface"], DEFAULT_VOCAB["surface"]),
        "action": _enum(c["action"], DEFAULT_VOCAB["action"]),
        "video_duration": pa.array(c["video_duration"], mask=np.isnan(c["video_duration"])),
        "dwell_time": pa.array(c["dwell_time"], mask=np.isnan(c["dwell_time"])),
    }
    table = pa.Table.from_arrays([arrays[f.name] for f in schema], schema=schema)
    pq.write_table(table, path, compression="zstd", row_group_size=1_000_000)


def write_events(folder: Path, n: int, *, shuffle: bool | str, seed: int = 0) -> Path:
    """N events in files of about 2M rows: users in ascending id order (a user's events in
    one file); with ``shuffle=True`` all rows in random order (needs all of them in memory);
    with ``shuffle="files"`` the same sorted files named in reverse order (unsorted as a
    dataset, so the sort path runs, but cheap to write at any size)."""
    rng = np.random.default_rng(seed)
    lengths = history_lengths(n, rng)
    user_ids = np.sort(rng.choice(10 * lengths.size, lengths.size, replace=False)).astype(
        np.int64)
    lengths = rng.permutation(lengths)  # the 70,000-event user anywhere
    schema = events_schema(DatasetMeta(kind="events", vocab=DEFAULT_VOCAB, source="benchmark"))
    folder.mkdir(parents=True)
    ends = np.cumsum(lengths)
    groups = np.searchsorted(ends, np.arange(ROWS_PER_FILE, n + ROWS_PER_FILE, ROWS_PER_FILE))
    bounds = np.unique(np.r_[0, np.minimum(groups + 1, lengths.size)])
    chunks = (_columns(user_ids[a:b], lengths[a:b], rng) for a, b in zip(bounds, bounds[1:]))
    if shuffle == "files":
        parts = bounds.size - 1
        for k, c in enumerate(chunks):
            _write(folder / f"part-{parts - 1 - k:05d}.parquet", c, schema)
        return folder
    if shuffle:
        parts = list(chunks)
        cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        perm = rng.permutation(n)
        cols = {k: v[perm] for k, v in cols.items()}
        chunks = ({k: v[lo:lo + ROWS_PER_FILE] for k, v in cols.items()}
                  for lo in range(0, n, ROWS_PER_FILE))
    for k, c in enumerate(chunks):
        _write(folder / f"part-{k:05d}.parquet", c, schema)
    return folder


def _plain_decode(folder: Path) -> int:
    table = pq.read_table(folder)
    return sum(col.to_numpy().nbytes for col in table.columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--queries", type=int, default=1_000_000)
    parser.add_argument("--tmp", type=Path, default=None, help="where to write (default: /tmp)")
    parser.add_argument("--append", type=int, default=None,
                        help="events of the appended file (default: 1%% of --events)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the plain-decode baseline (it holds every column in memory)")
    parser.add_argument("--no-shuffled", action="store_true",
                        help="skip the shuffled copy (it needs all events in memory)")
    args = parser.parse_args()
    n, r = args.events, args.repeats
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        sorted_src = write_events(tmp / "sorted", n, shuffle=False)
        inputs = [("sorted", sorted_src)]
        if not args.no_shuffled:
            # above 2 x 10^7 a random shuffle needs too much memory to write: reverse the files
            how = True if n <= 20_000_000 else "files"
            name = "shuffled" if how is True else "files-reversed"
            inputs.append((name, write_events(tmp / name, n, shuffle=how)))
        mb = sum(f.stat().st_size for f in sorted_src.glob("*.parquet")) / 1e6
        print(f"wrote {len(inputs)} x {n:,} events ({mb:,.0f} MB of Parquet each) in "
              f"{time.perf_counter() - t:.1f} s")

        decode_s = float("nan")
        if not args.no_baseline:
            decode_s, _ = _median(lambda: _plain_decode(sorted_src), r)
            print(f"baseline plain decode (read_table + to_numpy): {decode_s:.2f} s "
                  f"({n / decode_s / 1e6:.1f} M events/s)")

        counter = iter(range(10**6))
        results = {}
        for name, src in inputs:
            def cold() -> TimelineStore:
                cache = tmp / f"cache-{next(counter)}"
                store = TimelineStore.open(src, cache_dir=cache)
                return store
            build_s, store = _median(cold, r)
            results[name] = store
            ratio = "" if args.no_baseline else f", {build_s / decode_s:.2f}x the plain decode"
            print(f"cold build, {name} input: {build_s:.2f} s ({n / build_s / 1e6:.2f} M "
                  f"events/s{ratio})")

        store = results["sorted"]
        for other in set(results) - {"sorted"}:  # same events; only tie order may differ
            assert np.array_equal(store.offsets, results[other].offsets)
            assert np.array_equal(store.ts, results[other].ts)
            del results[other]
        cache = store.path.parent
        shutil.rmtree(cache / "digests")
        hash_s, _ = _median(lambda: (shutil.rmtree(cache / "digests", ignore_errors=True),
                                     content_key(sorted_src, cache)), r)
        memo_s, _ = _median(lambda: content_key(sorted_src, cache), max(r, 5))
        open_s, opened = _median(lambda: TimelineStore.open(sorted_src, cache_dir=cache),
                                 max(r, 5))
        assert opened.path == store.path
        print(f"content key: hashing bytes {hash_s:.3f} s ({mb / hash_s:,.0f} MB/s), "
              f"with the stat memo {memo_s * 1e3:.2f} ms")
        print(f"open cached store: {open_s * 1e3:.1f} ms ({opened.num_users:,} users, "
              f"{opened.num_events:,} events, longest history "
              f"{int(opened.history_lengths().max()):,})")

        rng = np.random.default_rng(1)
        q = args.queries
        users = rng.integers(0, opened.num_users, q)
        cutoffs = T0 + rng.integers(0, YEAR_MS, q) - DAY_MS
        opened.ends_before(users[:10], cutoffs[:10])  # compile once
        q_s, ends = _median(lambda: opened.ends_before(users, cutoffs), max(r, 5))
        loop_n = min(q, 20_000)

        def loop() -> list[int]:
            return [opened.range_before(int(u), int(c))[1]
                    for u, c in zip(users[:loop_n], cutoffs[:loop_n])]
        loop_s, loop_ends = _median(loop, r)
        assert loop_ends == ends[:loop_n].tolist()
        print(f"ends_before: {q / q_s / 1e6:.1f} M queries/s ({q:,} queries in "
              f"{q_s * 1e3:.1f} ms); Python loop of range_before: "
              f"{loop_n / loop_s / 1e6:.3f} M queries/s; ratio {loop_s / loop_n / (q_s / q):.0f}x")

        added = args.append if args.append is not None else max(1, n // 100)
        append_day(sorted_src, opened, added, r, tmp)


def append_day(src: Path, parent: TimelineStore, added: int, repeats: int, tmp: Path) -> None:
    """Extend the cached store of ``src`` by one appended file vs a full build of both."""
    rng = np.random.default_rng(2)
    users = np.sort(rng.choice(parent.user_ids, min(parent.num_users, max(1, added // 4)),
                               replace=False))
    lengths = np.full(users.size, added // users.size)
    lengths[: added - lengths.sum()] += 1
    cols = _columns(users[lengths > 0], lengths[lengths > 0], rng)
    cols["ts"] = cols["ts"] + YEAR_MS  # after every old event: a later day
    schema = events_schema(DatasetMeta(kind="events", vocab=DEFAULT_VOCAB, source="benchmark"))
    _write(src / "part-ext-00000.parquet", cols, schema)  # sorts after the old files
    cache = parent.path.parent
    counter = iter(range(10**6))

    def extend() -> TimelineStore:
        for entry in cache.iterdir():  # the grown dataset's entry, from the previous repeat
            if entry.is_dir() and entry not in (parent.path, cache / "digests"):
                shutil.rmtree(entry)
        return TimelineStore.open(src, cache_dir=cache)

    def full() -> TimelineStore:
        return TimelineStore.open(src, cache_dir=tmp / f"cache-full-{next(counter)}")

    TimelineStore.open(src, cache_dir=cache).num_events  # hash the new file once
    times = {"extend": [], "full": []}
    stores = {}
    for _ in range(repeats):  # alternating
        for name, fn in (("extend", extend), ("full", full)):
            t = time.perf_counter()
            stores[name] = fn()
            times[name].append(time.perf_counter() - t)
    ext, whole = stores["extend"], stores["full"]
    assert ext.opened == "extended" and whole.opened == "built"
    for name in ("user_ids", "offsets", *ext.columns):
        assert np.array_equal(getattr(ext, name), getattr(whole, name), equal_nan=True), name
    ext_s, full_s = statistics.median(times["extend"]), statistics.median(times["full"])
    moved = sum(a.nbytes for a in ext.columns.values())
    print(f"appended file of {added:,} events ({users.size:,} users) to {parent.num_events:,}: "
          f"extend {ext_s:.2f} s ({[round(t, 2) for t in times['extend']]}), full build "
          f"{full_s:.2f} s ({[round(t, 2) for t in times['full']]}): {full_s / ext_s:.1f}x; "
          f"the extension writes {moved / 1e9:.2f} GB of columns ({moved / ext_s / 1e9:.2f} "
          "GB/s) and hashes them again")


if __name__ == "__main__":
    main()
