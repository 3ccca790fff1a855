"""Stores: publish users/s, one-user get latency, batch-of-1,000 users/s, for any store URI.

Run: ``.venv/bin/python -m benchmarks.stores [--uri URI] [--users N] [--repeats R]
[--dims 64,256] [--codec int4|fp16]``. Without ``--uri`` each width gets a fresh
``lmdb://`` store in a temporary folder; with one, every version it publishes but the
last is dropped again.

The records have the byte size of the issue's shapes: 58 outputs at D=64 in int4 (58 rows
of 32 code bytes + fp16 scale and bias = 2,088 payload bytes, 2,092 a record) and at D=256
(7,656 + 4 bytes). When the ``int4`` codec is registered they are int4 records of random
vectors; otherwise fp16 records of the same byte size (58 x 18 and 58 x 66 values), which
decodes with one ``view`` instead of the int4 kernel (the output says which).

Measured (medians of R repeats):

* **publish**: stage, write N users in shards of 10,000 (records sealed and shard
  checksums computed beforehand: the export's work, not the store's), finish each shard,
  publish (counts checked, one pointer change);
* **get one user**: p50 and p99 of ``store.get([u])`` over 2,000 random users (resolve the
  current version, read, verify the checksum, decode to a ``[1, rows, dim]`` tensor);
* **batch of 1,000**: users/s of ``store.get(1,000 random users)`` decoded to a tensor,
  median of 40 batches (the baselines interleaved with them).

Wall-clock numbers include the time the process waits for a core: on a shared machine the
CPU time of the reading thread (``time.thread_time``) is printed beside them.

Baselines in the same process: for LMDB, a raw read loop of the same keys in one read
transaction (no verification, no decode); for every store, a Python dict of the same
records (the floor of any lookup in Python).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

import numpy as np
import torch

from dv365.export.codecs import codec_named
from dv365.export.manifest import Manifest, new_snapshot_id
from dv365.export.records import records_checksum, seal
from dv365.export.sink import ShardDone
from dv365.plugins import get_plugins
from dv365.stores import open_store

ROWS = 58
SHARD = 10_000
BATCH = 1_000
SINGLES = 2_000
BATCHES = 40


def shape_for(dim: int, codec: str) -> tuple[int, int]:
    """The (rows, dim) to store: the int4 shape, or fp16 of the same payload bytes."""
    if codec == "int4":
        return ROWS, dim
    int4_bytes = dim // 2 + 4
    return ROWS, int4_bytes // 2


def make_records(codec_name: str, rows: int, dim: int, users: np.ndarray, seed: int = 0
                 ) -> np.ndarray:
    codec = codec_named(codec_name)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, len(users), SHARD):
        ids = users[start:start + SHARD]
        vectors = torch.randn(len(ids), rows, dim, generator=gen)
        out.append(seal(ids, codec.encode(vectors).numpy()))
    return np.concatenate(out)


def shard_checksums(users: np.ndarray, records: np.ndarray) -> list[int]:
    """Each shard's checksum: the export computes it as it encodes, not the store."""
    return [records_checksum(users[start:start + SHARD], records[start:start + SHARD])
            for start in range(0, len(users), SHARD)]


def publish(store, codec: str, rows: int, dim: int, users: np.ndarray,
            records: np.ndarray, checksums: list[int]) -> Manifest:
    draft = Manifest(id=new_snapshot_id(int(time.time() * 1000)), parent=None,
                     checkpoint="benchmark", checkpoint_hash="-", spec_hash="-", data_key="-",
                     at_ms=0, gap_ms=0, codec=codec, rows=rows, dim=dim,
                     record_size=records.shape[1], shard_size=SHARD,
                     created_ms=int(time.time() * 1000))
    staged = store.stage(draft)
    checksum = 0
    for index, start in enumerate(range(0, len(users), SHARD)):
        ids, recs = users[start:start + SHARD], records[start:start + SHARD]
        staged.write(ids, recs)
        part = checksums[index]
        checksum += part
        staged.finish_shard(ShardDone(index, len(ids), recs.nbytes, part, len(ids)))
    done = draft.completed(users=len(users), bytes=records.nbytes,
                           checksum=checksum % (1 << 64), recomputed=len(users))
    staged.publish(done)
    return done


def _lmdb_raw_batch(store, version: str, keys: list[bytes]):
    with store._reading() as txn:
        db = store._version_db(version, txn)
        return [txn.get(k, db=db) for k in keys]


def run_width(uri: str, dim: int, codec: str, n: int, repeats: int, seed: int) -> dict:
    rows, stored_dim = shape_for(dim, codec)
    rng = np.random.default_rng(seed)
    users = np.sort(rng.choice(10 * n, n, replace=False)).astype(np.int64)
    records = make_records(codec, rows, stored_dim, users, seed)
    checksums = shard_checksums(users, records)
    result = {"dim": dim, "codec": codec, "shape": f"{rows}x{stored_dim}",
              "record_bytes": records.shape[1], "users": n}
    with open_store(uri) as store:
        times, last = [], None
        for _ in range(repeats):
            start = time.perf_counter()
            version = publish(store, codec, rows, stored_dim, users, records, checksums).id
            times.append(time.perf_counter() - start)
            if last is not None:
                store._drop(last)  # one version's pages in the cache at a time
            last = version
        result["publish_users_s"] = n / statistics.median(times)

        store.get(users[:10])  # warm: the manifest cache, the codec
        lat, cpu = [], []
        for u in rng.choice(users, SINGLES):
            start, start_cpu = time.perf_counter(), time.thread_time()
            got = store.get([u])
            lat.append(time.perf_counter() - start)
            cpu.append(time.thread_time() - start_cpu)
            assert got.found[0]
        result["get1_p50_us"] = 1e6 * float(np.percentile(lat, 50))
        result["get1_p99_us"] = 1e6 * float(np.percentile(lat, 99))
        result["get1_cpu_p50_us"] = 1e6 * float(np.percentile(cpu, 50))
        result["get1_cpu_p99_us"] = 1e6 * float(np.percentile(cpu, 99))

        index = {int(u): bytes(r) for u, r in zip(users.tolist(), records)}
        raw_lmdb = uri.startswith("lmdb://")
        if raw_lmdb:
            from dv365.stores.lmdb_store import user_keys
        times = {"store": [], "dict": [], "raw": [], "store_cpu": []}
        for _ in range(BATCHES):  # interleaved, so that load on the machine hits all alike
            ids = rng.choice(users, BATCH, replace=False)
            start, start_cpu = time.perf_counter(), time.thread_time()
            got = store.get(ids)
            times["store"].append(time.perf_counter() - start)
            times["store_cpu"].append(time.thread_time() - start_cpu)
            assert got.found.all() and got.vectors.shape == (BATCH, rows, stored_dim)
            start = time.perf_counter()
            [index.get(u) for u in ids.tolist()]
            times["dict"].append(time.perf_counter() - start)
            if raw_lmdb:
                keys = user_keys(ids)
                start = time.perf_counter()
                _lmdb_raw_batch(store, last, keys)
                times["raw"].append(time.perf_counter() - start)
        result["batch_users_s"] = BATCH / statistics.median(times["store"])
        result["batch_users_cpu_s"] = BATCH / statistics.median(times["store_cpu"])
        result["baseline_dict_users_s"] = BATCH / statistics.median(times["dict"])
        if raw_lmdb:
            result["baseline_raw_lmdb_users_s"] = BATCH / statistics.median(times["raw"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default=None, help="default: a fresh lmdb:// per width")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dims", default="64,256")
    parser.add_argument("--codec", default=None, help="default: int4 if registered, else fp16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (a reader serving requests decodes on one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    codec = args.codec or ("int4" if "int4" in get_plugins().codecs else "fp16")
    print(f"codec {codec}" + ("" if codec == "int4" else
                              " (int4 not registered: fp16 records of the int4 byte size)")
          + f"; torch threads {torch.get_num_threads()}")
    warnings.simplefilter("error")
    for dim in (int(d) for d in args.dims.split(",")):
        with tempfile.TemporaryDirectory(prefix="dv365-bench-") as tmp:
            uri = args.uri or f"lmdb://{tmp}/store"
            r = run_width(uri, dim, codec, args.users, args.repeats, args.seed)
        print(f"D={r['dim']} ({r['shape']} {r['codec']}, {r['record_bytes']:,} B a record, "
              f"{r['users']:,} users)")
        print(f"  publish            {r['publish_users_s']:>12,.0f} users/s")
        print(f"  get one user       p50 {r['get1_p50_us']:.1f} us   p99 "
              f"{r['get1_p99_us']:.1f} us   (CPU time: p50 {r['get1_cpu_p50_us']:.1f} us, "
              f"p99 {r['get1_cpu_p99_us']:.1f} us)")
        print(f"  batch of {BATCH:,}     {r['batch_users_s']:>12,.0f} users/s (decoded)   "
              f"({r['batch_users_cpu_s']:,.0f} users per CPU second)")
        if "baseline_raw_lmdb_users_s" in r:
            print(f"  baseline raw lmdb  {r['baseline_raw_lmdb_users_s']:>12,.0f} users/s "
                  f"(same keys, one txn, no verify or decode): store = "
                  f"{r['batch_users_s'] / r['baseline_raw_lmdb_users_s']:.2f}x")
        print(f"  baseline dict      {r['baseline_dict_users_s']:>12,.0f} users/s "
              f"(Python dict of the records)")


if __name__ == "__main__":
    main()
