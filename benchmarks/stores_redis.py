"""Redis store on loopback: publish users/s, one-user get p50/p99, batches of 1,000 users/s.

Run: ``.venv/bin/python -m benchmarks.stores_redis [--users N] [--cluster] [--buckets B]``.

Each shape is a record of the int4 size (58 rows of D/2 code bytes + fp16 scale and bias,
plus the 4-byte checksum): D=64 -> 58*36+4 = 2,092 bytes, D=256 -> 58*132+4 = 7,660 bytes.
The records are written by the fp16 codec at a shape of the same payload size ([58, 18] and
[58, 66]), sealed by ``dv365.export.records.seal`` before the clock starts; reads decode
with fp16, so the decode share is fp16's, not int4's. A fresh ``redis-server`` (or a
3-node cluster) is started on loopback by :mod:`dv365.stores.redis_local`.

Measured:
* publish: stage, write every record (pipelines of 1,000) in shards of 10,000,
  finish_shard, publish (the count check and the pointer change), users/s;
* get one user: ``store.get([u])`` for random users (resolve the current version + HMGET +
  verify + decode), p50 and p99 over 2,000 calls;
* batch: ``store.get(1,000 random users)`` decoded to a float32 tensor, users/s (median of
  the batches), with the raw read alone (``_read_raw``) for comparison.

The development machine is shared, so wall-clock rates move with its load; each phase also
reports the CPU it took, client (this process) and server (``INFO cpu``; one server only),
in microseconds a user: ``1e6 / (client + server)`` is the rate the pair would reach on two
free cores if they never overlapped, a load-independent floor.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from dv365.export.codecs import codec_named
from dv365.export.manifest import Manifest
from dv365.export.records import records_checksum, seal
from dv365.export.sink import ShardDone
from dv365.stores import open_store
from dv365.stores.redis_local import LocalRedis, LocalRedisCluster

SHAPES = {64: (58, 18), 256: (58, 66)}  # fp16 shapes whose payload equals 58 int4 rows
SHARD = 10_000
BATCH = 1_000


def _records(users: int, rows: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.random.default_rng(0).choice(2**40, users, replace=False).astype(np.int64)
    vectors = torch.randn(users, rows, dim, generator=torch.Generator().manual_seed(0))
    return ids, seal(ids, codec_named("fp16").encode(vectors).numpy())


def _publish(store, ids: np.ndarray, records: np.ndarray, rows: int, dim: int,
             at_ms: int) -> float:
    draft = Manifest(id=f"bench{at_ms}", parent=None, checkpoint="bench", checkpoint_hash="b",
                     spec_hash="b", data_key="b", at_ms=at_ms, gap_ms=0, codec="fp16",
                     rows=rows, dim=dim, record_size=records.shape[1], shard_size=SHARD,
                     created_ms=at_ms)
    sums = [records_checksum(ids[i:i + SHARD], records[i:i + SHARD])
            for i in range(0, len(ids), SHARD)]
    start = time.perf_counter()
    staged = store.stage(draft)
    for index, begin in enumerate(range(0, len(ids), SHARD)):
        chunk = ids[begin:begin + SHARD]
        staged.write(chunk, records[begin:begin + SHARD])
        staged.finish_shard(ShardDone(index, len(chunk), len(chunk) * records.shape[1],
                                      sums[index], len(chunk)))
    staged.publish(draft.completed(users=len(ids), bytes=records.nbytes,
                                   checksum=sum(sums) % 2**64, recomputed=len(ids)))
    return time.perf_counter() - start


class CpuClock:
    """CPU seconds of this process and of the Redis server (0 for a cluster)."""

    def __init__(self, store):
        self.store = store

    def server(self) -> float:
        if getattr(self.store, "cluster", False):
            return 0.0
        info = self.store.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def __enter__(self) -> "CpuClock":
        self.client_s, self.server_s = time.process_time(), self.server()
        return self

    def __exit__(self, *exc: object) -> None:
        self.client_s = time.process_time() - self.client_s
        self.server_s = self.server() - self.server_s


def bench(uri: str, users: int, d: int) -> dict[str, float]:
    rows, dim = SHAPES[d]
    ids, records = _records(users, rows, dim)
    rng = np.random.default_rng(1)
    with open_store(uri) as store:
        with CpuClock(store) as publish_cpu:
            seconds = _publish(store, ids, records, rows, dim, at_ms=d)
        version = store.current_version()
        for _ in range(50):  # warm the connection and the manifest cache
            store.get(ids[:1])
        one = []
        for user in rng.choice(ids, 2000).tolist():
            t = time.perf_counter()
            store.get([user])
            one.append(time.perf_counter() - t)
        batches, raw = [], []
        chosen_batches = [rng.choice(ids, BATCH, replace=False) for _ in range(30)]
        with CpuClock(store) as batch_cpu:
            for chosen in chosen_batches:
                t = time.perf_counter()
                got = store.get(chosen)
                batches.append(time.perf_counter() - t)
        assert got.found.all() and got.vectors.shape == (BATCH, rows, dim)
        for chosen in chosen_batches:
            t = time.perf_counter()
            store._read_raw(version, chosen)
            raw.append(time.perf_counter() - t)
    us = np.array(one) * 1e6
    return {"record_bytes": records.shape[1], "publish_users_s": users / seconds,
            "get1_p50_us": float(np.percentile(us, 50)),
            "get1_p99_us": float(np.percentile(us, 99)),
            "batch_users_s": BATCH / statistics.median(batches),
            "raw_batch_users_s": BATCH / statistics.median(raw),
            "publish_cpu_us": (1e6 * publish_cpu.client_s / users, 1e6 * publish_cpu.server_s / users),
            "batch_cpu_us": (1e6 * batch_cpu.client_s / (30 * BATCH),
                             1e6 * batch_cpu.server_s / (30 * BATCH))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--cluster", action="store_true", help="a 3-node cluster")
    parser.add_argument("--buckets", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    server = LocalRedisCluster(3) if args.cluster else LocalRedis()
    with server:
        for d in args.dims:
            query = {"prefix": f"bench{d}"}
            if args.buckets:
                query["buckets"] = str(args.buckets)
            result = bench(server.uri(**query), args.users, d)
            kind = "cluster" if args.cluster else "single"
            print(f"D={d} ({kind}, {args.users:,} users, {result['record_bytes']:,} B/record): "
                  f"publish {result['publish_users_s']:,.0f} users/s; get one user p50 "
                  f"{result['get1_p50_us']:.0f} us p99 {result['get1_p99_us']:.0f} us; batch "
                  f"of {BATCH:,} {result['batch_users_s']:,.0f} users/s decoded "
                  f"(raw read {result['raw_batch_users_s']:,.0f} users/s); CPU us/user "
                  "client+server: publish {:.1f}+{:.1f}, batch {:.1f}+{:.1f}".format(
                      *result["publish_cpu_us"], *result["batch_cpu_us"]), flush=True)


if __name__ == "__main__":
    main()
