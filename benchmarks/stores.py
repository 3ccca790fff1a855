"""Stores: publish users/s, one-user get latency, batch-of-1,000 users/s, for any store.

Run: ``.venv/bin/python -m benchmarks.stores [--store lmdb|redis|redis-cluster] [--uri URI]
[--users N] [--repeats R] [--dims 64,256] [--codec int4] [--buckets B]``.

Where the store lives:

* ``--store lmdb`` (the default): a fresh ``lmdb://`` in a temporary folder per width;
* ``--store redis`` / ``--store redis-cluster``: a fresh ``redis-server`` (or a 3-node
  cluster) on loopback, started by :mod:`dv365.stores.redis_local`, one key prefix per
  width (``?buckets=B`` when given);
* ``--uri URI``: that store (any scheme); every version the benchmark publishes there but
  the last is dropped again.

The records are the issue's shapes in the ``int4`` codec by default: 58 rows of random
vectors, D/2 code bytes + fp16 scale and bias a row, plus the 4-byte checksum: D=64 ->
58 x 36 + 4 = 2,092 bytes a record, D=256 -> 58 x 132 + 4 = 7,660 bytes. They are encoded
and sealed (and the shard checksums computed: the export's work, not the store's) before
any clock starts.

Measured (medians of R repeats for publish):

* **publish**: stage, write N users in shards of 10,000, finish each shard, publish (counts
  checked, one pointer change);
* **get one user**: p50 and p99 of ``store.get([u])`` over 2,000 random users (resolve the
  current version, read, verify the checksum, decode to a ``[1, rows, dim]`` tensor), with
  the CPU time of the reading thread (``time.thread_time``) beside them;
* **batch of 1,000**: users/s of ``store.get(1,000 random users)`` decoded to a float32
  tensor, median of 40 batches (the baselines interleaved with them, so that load on the
  machine hits all alike).

Baselines in the same process: for every store, a Python dict of the same records (the floor
of any lookup in Python); for LMDB, a raw read loop of the same keys in one read transaction;
for any other store, its raw read ``_read_raw`` (for Redis the ``HMGET`` pipeline and reply
parsing); neither verifies nor decodes.

CPU accounting: publish and the batches also report CPU microseconds a user of this process
(``time.process_time``) and, where the store is a local Redis started here, of the server(s)
(``used_cpu_user + used_cpu_sys`` of ``INFO cpu``, summed over the cluster's nodes). On the
shared development machine wall-clock rates move with its load; ``1e6 / (client + server)``
is the rate the pair would reach on free cores if they never overlapped, a load-independent
figure.
"""

from __future__ import annotations

import argparse
import contextlib
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
from dv365.stores import open_store

ROWS = 58
SHARD = 10_000
BATCH = 1_000
SINGLES = 2_000
BATCHES = 40
STORES = ("lmdb", "redis", "redis-cluster")


def make_records(codec_name: str, rows: int, dim: int, users: np.ndarray, seed: int = 0
                 ) -> np.ndarray:
    """Sealed records ``uint8 [N, size]`` of random vectors for ``users``."""
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


class ServerCpu:
    """CPU seconds (user + system) the local Redis servers on ``ports`` have used so far."""

    def __init__(self, ports: list[int]):
        import redis

        self.clients = [redis.Redis(host="127.0.0.1", port=p) for p in ports]

    def __call__(self) -> float:
        total = 0.0
        for client in self.clients:
            info = client.info("cpu")
            total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        return total

    def close(self) -> None:
        for client in self.clients:
            client.close()


class CpuClock:
    """CPU seconds of this process and of the servers (``None`` without ``server``) over
    the ``with`` block."""

    def __init__(self, server: ServerCpu | None):
        self.server = server
        self.client_s = 0.0
        self.server_s: float | None = None

    def __enter__(self) -> "CpuClock":
        self._client = time.process_time()
        self._server = self.server() if self.server else None
        return self

    def __exit__(self, *exc: object) -> None:
        self.client_s = time.process_time() - self._client
        if self.server:
            self.server_s = self.server() - self._server


def _raw_lmdb_batch(store, version: str, keys: list[bytes]) -> list:
    with store._reading() as txn:
        db = store._version_db(version, txn)
        return [txn.get(k, db=db) for k in keys]


def _per_user_us(clock: CpuClock, users: int) -> tuple[float, float | None]:
    server = None if clock.server_s is None else 1e6 * clock.server_s / users
    return 1e6 * clock.client_s / users, server


def run_width(uri: str, dim: int, codec: str, n: int, repeats: int, seed: int,
              server: ServerCpu | None = None, drop_last: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    users = np.sort(rng.choice(10 * n, n, replace=False)).astype(np.int64)
    records = make_records(codec, ROWS, dim, users, seed)
    checksums = shard_checksums(users, records)
    result = {"dim": dim, "codec": codec, "shape": f"{ROWS}x{dim}",
              "record_bytes": records.shape[1], "users": n}
    with open_store(uri) as store:
        times, last = [], None
        with CpuClock(server) as publish_cpu:
            for _ in range(repeats):
                start = time.perf_counter()
                version = publish(store, codec, ROWS, dim, users, records, checksums).id
                times.append(time.perf_counter() - start)
                if last is not None:
                    store._drop(last)  # one version's pages (or memory) at a time
                last = version
        result["publish_users_s"] = n / statistics.median(times)
        # the drops are in the clock too: at most a few percent of a publish
        result["publish_cpu_us"] = _per_user_us(publish_cpu, n * repeats)

        store.get(users[:10])  # warm: the manifest cache, the codec, the connection
        for u in users[:50].tolist():
            store.get([u])
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
        times = {"store": [], "dict": [], "raw": []}
        store_cpu = CpuClock(server)
        chosen = [rng.choice(users, BATCH, replace=False) for _ in range(BATCHES)]
        for ids in chosen:
            with CpuClock(server) as clock:
                start = time.perf_counter()
                got = store.get(ids)
                times["store"].append(time.perf_counter() - start)
            store_cpu.client_s += clock.client_s
            if server:
                store_cpu.server_s = (store_cpu.server_s or 0.0) + clock.server_s
            assert got.found.all() and got.vectors.shape == (BATCH, ROWS, dim)
            start = time.perf_counter()
            [index.get(u) for u in ids.tolist()]
            times["dict"].append(time.perf_counter() - start)
            if raw_lmdb:
                keys = user_keys(ids)
                start = time.perf_counter()
                _raw_lmdb_batch(store, last, keys)
            else:
                start = time.perf_counter()
                store._read_raw(last, ids)
            times["raw"].append(time.perf_counter() - start)
        result["batch_users_s"] = BATCH / statistics.median(times["store"])
        result["batch_cpu_us"] = _per_user_us(store_cpu, BATCH * BATCHES)
        result["baseline_dict_users_s"] = BATCH / statistics.median(times["dict"])
        result["baseline_raw"] = ("raw lmdb" if raw_lmdb else "raw read",
                                  BATCH / statistics.median(times["raw"]))
        if drop_last:
            store._drop(last)
    return result


@contextlib.contextmanager
def store_uris(kind: str, uri: str | None, buckets: int | None):
    """Yields ``(uri_for(dim), server CPU clock or None, drop the last version?)``."""
    if uri is not None:
        yield (lambda dim: uri), None, False
        return
    if kind == "lmdb":
        with tempfile.TemporaryDirectory(prefix="dv365-bench-") as tmp:
            yield (lambda dim: f"lmdb://{tmp}/store{dim}"), None, True
        return
    from dv365.stores.redis_local import LocalRedis, LocalRedisCluster

    local = LocalRedisCluster(3) if kind == "redis-cluster" else LocalRedis()
    with local:
        nodes = local.nodes if kind == "redis-cluster" else [local]
        server = ServerCpu([node.port for node in nodes])
        query = {} if buckets is None else {"buckets": str(buckets)}
        try:
            yield (lambda dim: local.uri(prefix=f"bench{dim}", **query)), server, True
        finally:
            server.close()


def _cpu_text(cpu: tuple[float, float | None]) -> str:
    client, server = cpu
    if server is None:
        return f"CPU {client:.1f} us a user (client)"
    return (f"CPU {client:.1f} + {server:.1f} us a user (client + server: "
            f"{1e6 / (client + server):,.0f} users/s on free cores)")


def report(kind: str, r: dict) -> None:
    print(f"D={r['dim']} ({kind}, {r['shape']} {r['codec']}, {r['record_bytes']:,} B a record, "
          f"{r['users']:,} users)")
    print(f"  publish            {r['publish_users_s']:>12,.0f} users/s   "
          f"{_cpu_text(r['publish_cpu_us'])}")
    print(f"  get one user       p50 {r['get1_p50_us']:.1f} us   p99 "
          f"{r['get1_p99_us']:.1f} us   (CPU time: p50 {r['get1_cpu_p50_us']:.1f} us, "
          f"p99 {r['get1_cpu_p99_us']:.1f} us)")
    print(f"  batch of {BATCH:,}     {r['batch_users_s']:>12,.0f} users/s (decoded)   "
          f"{_cpu_text(r['batch_cpu_us'])}")
    name, rate = r["baseline_raw"]
    print(f"  baseline {name:<9} {rate:>12,.0f} users/s (same users, no verify or decode): "
          f"store = {r['batch_users_s'] / rate:.2f}x")
    print(f"  baseline dict      {r['baseline_dict_users_s']:>12,.0f} users/s "
          f"(Python dict of the records)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=STORES, default="lmdb",
                        help="where to start a fresh store (ignored with --uri)")
    parser.add_argument("--uri", default=None, help="an existing store of any kind")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dims", default="64,256")
    parser.add_argument("--codec", default="int4")
    parser.add_argument("--buckets", type=int, default=None,
                        help="?buckets= of a local Redis (default: the store's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (a reader serving requests decodes on one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kind = "uri" if args.uri else args.store
    print(f"store {args.uri or args.store}; codec {args.codec}; "
          f"torch threads {torch.get_num_threads()}", flush=True)
    warnings.simplefilter("error")
    with store_uris(args.store, args.uri, args.buckets) as (uri_for, server, drop_last):
        for dim in (int(d) for d in args.dims.split(",")):
            report(kind, run_width(uri_for(dim), dim, args.codec, args.users, args.repeats,
                                   args.seed, server, drop_last))


if __name__ == "__main__":
    main()
