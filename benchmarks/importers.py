"""Import throughput: `dv365 import movielens` and `dv365 import kuairand` on synthetic logs.

Run: ``.venv/bin/python -m benchmarks.importers [--ratings N] [--impressions N] [--repeats R]``.

Inputs are made in a temporary folder in the real formats: a MovieLens 1M/10M-style
``ratings.dat`` of N random ratings grouped by user (as GroupLens ships them), and a KuaiRand ``log_standard_*.csv`` of N impressions
tiled from the test fixture (user ids shifted per tile) with its ``video_features_basic_pure.csv``.

Baseline, run in the same process on the same files: the straightforward Python way to read
them (split each line / ``csv.DictReader``, append to lists, ``np.array``), which only *reads*;
the dv365 import also maps, sorts and writes Parquet, so the ratio is conservative. Reference
ceiling: one NumPy pass over the file's bytes in memory (counting newlines), the least any
parser must do.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from dv365.data.importers.delimited import read_text_columns
from dv365.data.importers.kuairand import LOG_COLUMNS, import_kuairand
from dv365.data.importers.movielens import RELEASES, _RATING_TYPES, import_movielens
from benchmarks._timing import median_seconds

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "kuairand"


def _newline_scan_seconds(path: Path, repeats: int) -> float:
    data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    return median_seconds(lambda: int(np.count_nonzero(data == 10)), repeats)


def make_ratings_dat(folder: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    table = pa.table({  # grouped by user, random within a user, as GroupLens ships them
        "u": np.sort(rng.integers(1, 70_000, n)), "m": rng.integers(1, 10_000, n),
        "r": rng.integers(1, 6, n), "t": rng.integers(956_703_932, 1_230_000_000, n),
    })
    sink = pa.BufferOutputStream()
    pcsv.write_csv(table, sink, pcsv.WriteOptions(include_header=False, delimiter="\t"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ratings.dat"
    path.write_bytes(sink.getvalue().to_pybytes().replace(b"\t", b"::"))
    return path


def make_kuairand_log(folder: Path, n: int) -> Path:
    base = pcsv.read_csv(FIXTURES / "log_standard_sample_pure.csv")
    tiles = -(-n // base.num_rows)
    users = base["user_id"].to_numpy()
    span = int(users.max()) + 1
    parts = []
    for k in range(tiles):
        parts.append(base.set_column(0, "user_id", pa.array(users + k * span)))
    table = pa.concat_tables(parts).slice(0, n)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "log_standard_bench_pure.csv"
    pcsv.write_csv(table, path, pcsv.WriteOptions(quoting_style="none"))
    lines = path.read_bytes().split(b"\n", 1)
    path.write_bytes(lines[0].replace(b'"', b"") + b"\n" + lines[1])
    (folder / "video_features_basic_pure.csv").write_bytes(
        (FIXTURES / "video_features_basic_pure.csv").read_bytes())
    return path


def python_read_ratings_dat(path: Path):
    users, movies, ratings, stamps = [], [], [], []
    with path.open() as f:
        for line in f:
            u, m, r, t = line.rstrip("\n").split("::")
            users.append(int(u))
            movies.append(int(m))
            ratings.append(float(r))
            stamps.append(int(t))
    return np.array(users), np.array(movies), np.array(ratings), np.array(stamps)


def python_read_kuairand_csv(path: Path):
    columns = {name: [] for name in LOG_COLUMNS}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            for name, values in columns.items():
                values.append(int(row[name]))
    return {name: np.array(values) for name, values in columns.items()}


def _report(name: str, rows: int, path: Path, full: float, read: float, baseline: float,
            scan: float) -> None:
    mb = path.stat().st_size / 1e6
    print(f"{name}: {rows:,} rows, {mb:.0f} MB")
    print(f"  dv365 import (read+map+sort+write): {full:.2f} s = {rows / full / 1e6:.2f} M rows/s")
    print(f"  dv365 read stage only:              {read:.2f} s = {rows / read / 1e6:.2f} M rows/s"
          f" = {mb / read:.0f} MB/s")
    print(f"  baseline Python read:               {baseline:.2f} s = "
          f"{rows / baseline / 1e6:.2f} M rows/s  -> import {baseline / full:.1f}x, "
          f"read {baseline / read:.1f}x faster")
    print(f"  ceiling, one pass over bytes:       {scan:.3f} s = {mb / scan:.0f} MB/s "
          f"(read stage at {scan / read:.0%} of it)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=int, default=3_000_000)
    parser.add_argument("--impressions", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dat = make_ratings_dat(tmp / "ml", args.ratings)
        dat_format = next(r.ratings_format for r in RELEASES if r.ratings_name == "ratings.dat")
        full = median_seconds(
            lambda: import_movielens(tmp / "ml", tmp / "ml-out", overwrite=True), args.repeats)
        read = median_seconds(lambda: read_text_columns(dat, dat_format, _RATING_TYPES),
                               args.repeats)
        baseline = median_seconds(lambda: python_read_ratings_dat(dat), args.repeats)
        _report("movielens ratings.dat", args.ratings, dat, full, read, baseline,
                _newline_scan_seconds(dat, args.repeats))

        log = make_kuairand_log(tmp / "kr", args.impressions)
        full = median_seconds(
            lambda: import_kuairand(tmp / "kr", tmp / "kr-out", overwrite=True), args.repeats)
        from dv365.data.importers.delimited import TextFormat

        read = median_seconds(lambda: read_text_columns(log, TextFormat(), LOG_COLUMNS),
                               args.repeats)
        baseline = median_seconds(lambda: python_read_kuairand_csv(log), args.repeats)
        _report("kuairand log_standard csv", args.impressions, log, full, read, baseline,
                _newline_scan_seconds(log, args.repeats))


if __name__ == "__main__":
    main()
