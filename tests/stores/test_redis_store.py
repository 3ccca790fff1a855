"""The Redis store against real servers on loopback: plain, with a password, with TLS
(certificates made by openssl here), and a 3-node cluster; no mocks.

Servers are session-scoped (each test writes under its own ``?prefix=``); the tests that kill
a server or fill its memory start their own. The crash test SIGKILLs a forked publisher at
random points while forked readers read batches (tests/stores/redis_crash.py).
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
import uuid
import warnings

import numpy as np
import pytest
import redis
import torch

from dv365.errors import NotFoundError, UsageError
from dv365.export.codecs import codec_named
from dv365.stores import open_store
from dv365.stores.base import CorruptRecordWarning, StoreError
from dv365.stores.redis_local import LocalRedis, LocalRedisCluster, free_port, make_certificates
from dv365.stores.redis_store import RedisStore, buckets_of
from tests.stores.redis_crash import (draft, generation_of, publish, publish_generation,
                                      publisher, reader)

PASSWORD = "pw-Xq7-never-shown"


# ----------------------------------------------------------------------------- servers
@pytest.fixture(scope="session")
def plain_server():
    with LocalRedis() as server:
        yield server


@pytest.fixture(scope="session")
def password_server():
    with LocalRedis(password=PASSWORD) as server:
        yield server


@pytest.fixture(scope="session")
def tls_server():
    with LocalRedis(tls=True, tls_auth_clients=True) as server:
        yield server


@pytest.fixture(scope="session")
def cluster():
    with LocalRedisCluster(3) as servers:
        yield servers


def _prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture(params=["plain", "password", "tls", "cluster"])
def store(request):
    """A fresh store (own prefix) on each kind of server."""
    server = request.getfixturevalue({"plain": "plain_server", "password": "password_server",
                                      "tls": "tls_server", "cluster": "cluster"}[request.param])
    with open_store(server.uri(prefix=_prefix(), buckets="16")) as opened:
        yield opened


def _vectors(n: int, rows: int, dim: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, rows, dim, generator=torch.Generator().manual_seed(seed))


def _snapshot(store, ids, vectors, *, codec="fp32", at_ms=1, shard_size=100, **kw):
    """Encode ``vectors`` with ``codec`` and publish them in shards."""
    c = codec_named(codec)
    rows, dim = vectors.shape[1:]
    manifest = draft(at_ms=at_ms, codec=codec, rows=rows, dim=dim,
                     record_size=c.payload_size(rows, dim) + 4, shard_size=shard_size)
    return publish(store, manifest, ids, c.encode(vectors).numpy(), **kw)


IDS = np.arange(350, dtype=np.int64) * 7919 - 1000  # negative ids too


# ------------------------------------------------------------------------ the Store API
def test_publish_get_versions_promote_rollback_gc(store):
    assert store.current_version() is None
    empty = store.get([1, 2])
    assert empty.version is None and not empty.found.any()

    v1 = _snapshot(store, IDS, _vectors(350, 3, 8), codec="fp32", at_ms=1)
    vectors2 = _vectors(350, 3, 8, seed=1)
    v2 = _snapshot(store, IDS, vectors2, codec="fp16", at_ms=2)
    assert store.current_version() == v2.id

    got = store.get(np.concatenate([IDS[:5], [123456789]]))
    assert got.version == v2.id and got.found.tolist() == [True] * 5 + [False]
    assert torch.equal(got.vectors[:5], vectors2[:5].half().float())
    assert not got.vectors[5].any()
    old = store.get(IDS[:3], version=v1.id)
    assert torch.equal(old.vectors, _vectors(350, 3, 8)[:3])  # fp32 is exact

    listed = store.versions()
    assert [(i.manifest.id, i.current) for i in listed] == [(v1.id, False), (v2.id, True)]
    assert listed[0].retired_ms is not None and listed[1].manifest.users == 350

    assert store.rollback() == v1.id and store.current_version() == v1.id
    store.promote(v2.id)
    assert store.current_version() == v2.id
    assert store.gc(keep=1, grace_s=3600) == []  # v1 retired just now: within grace
    assert store.gc(keep=1, grace_s=0) == [v1.id]
    assert [i.manifest.id for i in store.versions()] == [v2.id]
    assert store._count(v1.id) == 0
    with pytest.raises(Exception, match="no version"):
        store.get(IDS[:1], version=v1.id)

    scanned = [ids for ids, _ in store.scan(batch_size=64)]
    assert np.array_equal(np.concatenate(scanned), np.sort(IDS))
    opened = [o for _, o in store.scan(batch_size=1000)][0]
    assert opened.found.all()


def test_a_staged_version_is_invisible_until_published_and_resumes(store):
    v1 = _snapshot(store, IDS, _vectors(350, 2, 4), at_ms=1)
    manifest = draft(at_ms=2, codec="fp32", rows=2, dim=4, record_size=36, shard_size=100)
    payloads = codec_named("fp32").encode(_vectors(350, 2, 4, seed=2)).numpy()
    publish(store, manifest, IDS, payloads, stop_after_shards=2)
    assert store.current_version() == v1.id
    assert [m.id for m in store.staged()] == [manifest.id]
    assert [i.manifest.id for i in store.versions()] == [v1.id]
    assert sorted(store.stage(manifest).completed_shards()) == [0, 1]

    final = publish(store, manifest, IDS, payloads)  # resumes: shards 2 and 3
    assert store.current_version() == final.id and store.staged() == []
    assert store.manifest().users == 350


def test_writing_a_user_twice_counts_once(plain_server):
    with open_store(plain_server.uri(prefix=_prefix())) as store:
        manifest = draft(at_ms=1, codec="fp32", rows=2, dim=4, record_size=36, shard_size=500)
        payloads = codec_named("fp32").encode(_vectors(350, 2, 4)).numpy()
        from dv365.export.records import seal

        staged = store.stage(manifest)
        staged.write(IDS[:200], seal(IDS[:200], payloads[:200]))  # a shard redone
        assert store._count(manifest.id) == 200
        final = publish(store, manifest, IDS, payloads)
        assert store._count(final.id) == 350 and store.manifest().users == 350


def test_publish_refuses_a_version_missing_records(plain_server):
    from dv365.export.records import records_checksum, seal
    from dv365.export.sink import ShardDone

    with open_store(plain_server.uri(prefix=_prefix())) as store:
        v1 = _snapshot(store, IDS, _vectors(350, 2, 4), at_ms=1)
        manifest = draft(at_ms=2, codec="fp32", rows=2, dim=4, record_size=36,
                         shard_size=500)
        records = seal(IDS, codec_named("fp32").encode(_vectors(350, 2, 4)).numpy())
        staged = store.stage(manifest)
        staged.write(IDS[:300], records[:300])
        staged.finish_shard(ShardDone(0, 350, records.nbytes, 0, 350))  # claims too many
        with pytest.raises(StoreError, match="holds 300 records where 350"):
            staged.publish(manifest.completed(users=350, bytes=records.nbytes,
                                              checksum=records_checksum(IDS, records),
                                              recomputed=350))
        assert store.current_version() == v1.id


def test_records_spread_over_the_cluster_and_metadata_shares_one_slot(cluster):
    store = open_store(cluster.uri(prefix=_prefix()))
    v = _snapshot(store, IDS, _vectors(350, 2, 4))
    nodes = [redis.Redis(port=node.port) for node in cluster.nodes]
    per_node = [sum(1 for _ in n.scan_iter(match=f"{store.prefix}:r:{v.id}:*")) for n in nodes]
    assert sum(per_node) == store.buckets and all(per_node), per_node
    slots = {store.client.keyslot(k) for k in (store.k_state, store.k_manifests,
                                               store.k_drafts, store.shards_key(v.id))}
    assert len(slots) == 1


def test_buckets_spread_users_evenly():
    ids = np.arange(64_000, dtype=np.int64) * 64  # ids sharing low bits still spread
    counts = np.bincount(buckets_of(ids, 64), minlength=64)
    assert counts.min() > 800 and counts.max() < 1200


# ---------------------------------------------------------------------------- integrity
def test_flipped_truncated_and_foreign_records_are_not_served(plain_server):
    with open_store(plain_server.uri(prefix=_prefix(), buckets="4")) as store:
        v = _snapshot(store, IDS, _vectors(350, 2, 4))
        raw = redis.Redis(port=plain_server.port)

        def key(user):
            return store.records_key(v.id, int(buckets_of(np.array([user]), 4)[0]))

        a, b, c, d = (int(u) for u in IDS[:4])
        flipped = bytearray(raw.hget(key(a), a))
        flipped[3] ^= 0x01
        raw.hset(key(a), a, bytes(flipped))
        raw.hset(key(b), b, raw.hget(key(b), b)[:-1])
        raw.hset(key(c), c, raw.hget(key(d), d))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = store.get([a, b, c, d])
        assert got.found.tolist() == [False, False, False, True]
        assert not got.vectors[:3].any()
        messages = [str(w.message) for w in caught if w.category is CorruptRecordWarning]
        assert len(messages) == 3 and f"user {a}" in messages[0] and v.id in messages[0]
        assert store.corrupt_records == 3


# ----------------------------------------------------------------------------- security
def _one_line_without_password(exc: BaseException, uri_shown: str) -> str:
    text = str(exc)
    assert "\n" not in text and PASSWORD not in text, text
    assert PASSWORD not in repr(exc.__dict__)
    assert exc.where == uri_shown
    return text


def test_wrong_or_missing_password_is_one_line_never_showing_it(password_server):
    wrong = password_server.uri(password=PASSWORD + "-wrong")
    with pytest.raises(StoreError) as caught:
        open_store(wrong).current_version()
    text = _one_line_without_password(caught.value, f"redis://:***@127.0.0.1:"
                                                    f"{password_server.port}/0")
    assert "authentication failed" in text and PASSWORD + "-wrong" not in text

    with pytest.raises(StoreError, match="authentication") as caught:
        open_store(password_server.uri(password="")).current_version()
    _one_line_without_password(caught.value, f"redis://127.0.0.1:{password_server.port}/0")


def test_the_password_never_shows_in_listings_or_errors(password_server):
    store = open_store(password_server.uri(prefix=_prefix()))
    v = _snapshot(store, IDS, _vectors(350, 2, 4))
    shown = [store.display_uri, repr(store.uri), str(store.uri),
             *(repr(i) for i in store.versions()), v.summary()]
    assert all(PASSWORD not in s for s in shown) and "***" in store.display_uri
    with pytest.raises(NotFoundError) as caught:
        store.promote("no-such-version")
    assert PASSWORD not in str(caught.value)


def test_the_password_and_tls_files_come_from_the_environment(password_server, tls_server,
                                                              monkeypatch):
    monkeypatch.setenv("DV365_REDIS_PASSWORD", PASSWORD)
    store = open_store(f"redis://127.0.0.1:{password_server.port}/0?prefix={_prefix()}")
    assert store.current_version() is None and "***" not in store.display_uri

    certs = tls_server.certificates
    monkeypatch.setenv("DV365_REDIS_CA", str(certs["ca"]))
    monkeypatch.setenv("DV365_REDIS_CERT", str(certs["client_cert"]))
    monkeypatch.setenv("DV365_REDIS_KEY", str(certs["client_key"]))
    monkeypatch.delenv("DV365_REDIS_PASSWORD")
    store = open_store(f"rediss://127.0.0.1:{tls_server.port}/0?prefix={_prefix()}")
    assert store.current_version() is None


def test_tls_failures_are_one_line(tls_server, tmp_path):
    other = make_certificates(tmp_path / "other")  # a CA that did not sign the server
    where = f"rediss://127.0.0.1:{tls_server.port}/0"
    bad_ca = tls_server.uri(ca=str(other["ca"]))
    with pytest.raises(StoreError, match="cannot reach") as caught:
        open_store(bad_ca).current_version()
    assert "\n" not in str(caught.value) and "TLS" in str(caught.value)

    no_client_cert = f"{where}?ca={tls_server.certificates['ca']}"
    with pytest.raises(StoreError, match="cannot reach"):
        open_store(no_client_cert).current_version()
    with pytest.raises(StoreError, match="cannot reach"):  # plain text to a TLS port
        open_store(f"redis://127.0.0.1:{tls_server.port}/0").current_version()
    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"{where}?ca={tmp_path}/missing.crt")


def test_an_unreachable_server_is_one_line_naming_the_store():
    port = free_port()
    with pytest.raises(StoreError) as caught:
        open_store(f"redis://:{PASSWORD}@127.0.0.1:{port}/0").current_version()
    _one_line_without_password(caught.value, f"redis://:***@127.0.0.1:{port}/0")
    assert "cannot reach" in str(caught.value)


def test_a_cluster_uri_naming_no_cluster_node_is_one_line(plain_server):
    with pytest.raises(StoreError, match="connecting: .*[Cc]luster") as caught:
        open_store(f"redis+cluster://127.0.0.1:{plain_server.port}")
    assert "\n" not in str(caught.value)


def test_bad_options_are_usage_errors(plain_server):
    for query in ("buckets=12", "buckets=x", "prefix={a}", "grace=soon"):
        with pytest.raises(UsageError):
            open_store(plain_server.uri(**dict([query.split("=")])))
    with pytest.raises(UsageError, match="database 0"):
        open_store(f"redis+cluster://127.0.0.1:{plain_server.port}/1")


# ------------------------------------------------------------------------ grace period
def test_gc_keeps_a_retired_version_for_the_grace_period(plain_server):
    store = open_store(plain_server.uri(prefix=_prefix(), grace="0.3"))
    assert isinstance(store, RedisStore) and store.default_grace_s == 0.3
    v1 = _snapshot(store, IDS, _vectors(350, 2, 4), at_ms=1)
    _snapshot(store, IDS, _vectors(350, 2, 4), at_ms=2)
    assert store.gc(keep=1) == []
    assert store.get(IDS[:10], version=v1.id).found.all()  # a late reader of v1
    time.sleep(0.35)
    assert store.gc(keep=1) == [v1.id]


def test_gc_finishes_a_drop_a_crash_interrupted(plain_server):
    store = open_store(plain_server.uri(prefix=_prefix(), buckets="8"))
    v1 = _snapshot(store, IDS, _vectors(350, 2, 4), at_ms=1)
    _snapshot(store, IDS, _vectors(350, 2, 4), at_ms=2)
    # the first step of a drop only, as if the process died before freeing the buckets
    store._drop_script(keys=[store.k_manifests, store.k_drafts, store.shards_key(v1.id)],
                       args=[v1.id])
    assert store._count(v1.id) == 350 and v1.id not in store._published()
    store.gc(keep=1)
    assert store._count(v1.id) == 0 and store.client.hkeys(store.k_layout) == [b"v0000000000002"]


# ------------------------------------------------------------------ server failures
def test_killing_the_server_mid_publish_then_restarting_completes_it():
    with LocalRedis(persist=True) as server:
        store = open_store(server.uri(prefix="kill"))
        v1 = _snapshot(store, IDS, _vectors(350, 2, 4), at_ms=1)
        manifest = draft(at_ms=2, codec="fp32", rows=2, dim=4, record_size=36, shard_size=100)
        payloads = codec_named("fp32").encode(_vectors(350, 2, 4, seed=2)).numpy()
        publish(store, manifest, IDS, payloads, stop_after_shards=2)

        server.kill()
        with pytest.raises(StoreError) as caught:
            publish(store, manifest, IDS, payloads)
        text = str(caught.value)
        assert "\n" not in text and caught.value.where == f"redis://127.0.0.1:{server.port}/0" \
            f"?prefix=kill" and "cannot reach" in text

        server.restart()
        assert store.current_version() == v1.id  # the incomplete version never became current
        assert sorted(store.stage(manifest).completed_shards()) == [0, 1]
        final = publish(store, manifest, IDS, payloads)
        assert store.current_version() == final.id
        assert [h[0] for h in store._load_state()["history"]] == [v1.id, final.id]
        assert store.get(IDS).found.all()


def test_killing_the_server_while_a_pipeline_is_in_flight_then_resuming():
    with LocalRedis(persist=True) as server:
        store = open_store(server.uri(prefix="flight"))
        v1 = _snapshot(store, IDS, _vectors(350, 2, 4), at_ms=1)
        ids = np.arange(60_000, dtype=np.int64)
        manifest = draft(at_ms=2, codec="fp32", rows=2, dim=4, record_size=36,
                         shard_size=1000)
        payloads = codec_named("fp32").encode(_vectors(60_000, 2, 4)).numpy()
        watcher = open_store(server.uri(prefix="flight"))

        def kill_once_writing():
            while watcher.staged() == [] or watcher._count(manifest.id) == 0:
                time.sleep(0.001)
            server.kill()

        killer = threading.Thread(target=kill_once_writing)
        killer.start()
        with pytest.raises(StoreError, match="cannot reach") as caught:
            publish(store, manifest, ids, payloads)
        killer.join()
        assert "\n" not in str(caught.value) and caught.value.where.endswith("?prefix=flight")

        server.restart()
        assert store.current_version() == v1.id
        done = store.stage(manifest).completed_shards()
        assert len(done) < 60  # it was stopped part way
        final = publish(store, manifest, ids, payloads)
        assert store.current_version() == final.id and store._count(final.id) == 60_000
        assert [h[0] for h in store._load_state()["history"]] == [v1.id, final.id]


def test_maxmemory_during_publish_is_one_line_and_changes_nothing():
    with LocalRedis(maxmemory=3 * 2**20) as server:
        store = open_store(server.uri(prefix="oom"))
        v1 = _snapshot(store, IDS[:50], _vectors(50, 2, 4), at_ms=1)
        ids = np.arange(4000, dtype=np.int64)
        with pytest.raises(StoreError, match="out of memory") as caught:
            _snapshot(store, ids, _vectors(4000, 16, 64), codec="fp16", at_ms=2,
                      shard_size=1000)
        assert "\n" not in str(caught.value) and caught.value.where.startswith("redis://")
        assert store.current_version() == v1.id
        assert store.get(IDS[:50]).found.all()
        for staged in store.staged():  # the failed draft can be dropped to free memory
            store.stage(staged).abort()
        assert store.staged() == [] and store._count("v0000000000002") == 0


# ------------------------------------------------------------------------------ crashes
@pytest.mark.slow
def test_sigkilled_publishers_never_tear_a_batch_or_lose_the_current_version(plain_server):
    uri = plain_server.uri(prefix=_prefix(), buckets="16", grace="2")
    ids = np.arange(3000, dtype=np.int64) * 31
    store = open_store(uri)
    start = time.perf_counter()
    publish_generation(store, ids, 1, shard_size=500)
    cycle = time.perf_counter() - start

    fork = multiprocessing.get_context("fork")
    stop, results = fork.Event(), fork.Queue()
    readers = [fork.Process(target=reader, args=(uri, ids, 200, stop, results, seed))
               for seed in range(2)]
    for p in readers:
        p.start()
    rng = random.Random(14)
    kills = published = interrupted = 0
    try:
        while kills < 24:
            before = set(store._published())
            child = fork.Process(target=publisher, args=(uri, ids, 500, kills))
            child.start()
            # alternate: kills inside the first publish, and later ones (after publishes)
            time.sleep(rng.uniform(0.0, cycle) if kills % 2 else rng.uniform(2, 10) * cycle)
            child.kill()
            child.join()
            kills += 1
            current = store.current_version()
            assert current is not None and store._count(current) == len(ids)
            assert generation_of(ids, store.read(ids)) == {store.manifest().at_ms}
            published += bool(set(store._published()) - before)
            interrupted += bool(store.staged())
        publisher_done = publish_generation(store, ids, 10_000, shard_size=500)
        assert store.current_version() == publisher_done.id
        assert generation_of(ids, store.read(ids)) == {10_000}
    finally:
        stop.set()
        reports = [results.get(timeout=30) for _ in readers]
        for p in readers:
            p.join(timeout=10)
    print(f"{kills} kills: {published} published a version, {interrupted} left one staged; "
          f"reader batches {[r[1] for r in reports]}")
    assert published >= 3 and interrupted >= 3  # the kills landed inside and after publishes
    assert all(batches > 0 for _, batches, _, _ in reports), reports
    assert [(torn, problem) for _, _, torn, problem in reports] == [(0, None)] * 2
