"""The online store: ``redis://``, ``rediss://`` (TLS) and ``redis+cluster://``.

Key layout under a prefix ``P`` (``?prefix=``, default ``dv365``); every small key shares
the hash tag ``{P}`` (one cluster slot, so each metadata update is one atomic script):

* ``{P}:state``: the state document (JSON; see :mod:`dv365.stores.base`), replaced by a
  compare-and-set script, so concurrent updates serialize;
* ``{P}:manifests`` / ``{P}:drafts``: hashes version -> manifest JSON (published / staged);
* ``{P}:layout``: hash version -> bucket count (an entry of a version neither published nor
  staged is a drop a crash interrupted: :meth:`RedisStore.gc` finishes it);
* ``{P}:shards:V``: hash shard index -> :class:`ShardDone` JSON of staged version V;
* ``P:r:V:B`` (no hash tag: buckets spread over the cluster): hash user id -> record, for
  bucket ``B`` of ``buckets`` (a power of two, ``?buckets=``, default 64), picked by a
  multiplicative hash of the user id.

Buckets rather than one string key a user: a batch of 1,000 users is a few dozen ``HMGET``
(one per bucket touched) instead of a thousand keys, faster to read and write through the
Python client and in a cluster (docs/redis.md has the numbers); ``HLEN`` counts a version's
records exactly (writing a user twice replaces its field), and freeing a version is one
``UNLINK`` a bucket. Published versions never change, so a batch read of a version is
consistent; :attr:`RedisStore.default_grace_s` (``?grace=``, default 60 s) keeps a version
that stopped being current readable for readers that resolved the old pointer.

Credentials: the password from the URI or ``DV365_REDIS_PASSWORD``; TLS files from
``?ca=&cert=&key=`` or ``DV365_REDIS_CA`` / ``DV365_REDIS_CERT`` / ``DV365_REDIS_KEY``.
Every error is a one-line :class:`StoreError` whose ``where`` is the URI, password masked.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from typing import Callable, Iterator

import numpy as np

from dv365.errors import UsageError
from dv365.export.manifest import Manifest
from dv365.export.sink import ShardDone
from dv365.stores.base import StagedSnapshot, State, Store, StoreError, empty_state
from dv365.stores.uri import StoreUri

DEFAULT_PREFIX = "dv365"
DEFAULT_BUCKETS = 64
DEFAULT_GRACE_S = 60.0
#: Records a pipeline carries before it is sent (bounds client memory and reply size).
WRITE_BATCH = 1000
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)

# Compare-and-set of the state document: readers and writers never see half an update.
_CAS = """
local old = redis.call('GET', KEYS[1]) or ''
if old ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""
# Publish a staged version: its manifest appears and its draft goes in one step.
_PUBLISH = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return 1
"""
# Stage a version: its bucket count and its draft appear together (both kept on resume).
# A resume writes nothing, so it (and the abort after it) works past maxmemory too.
_STAGE = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[3])
return 1
"""
# Start dropping a version: it leaves the listings at once (deletions only: allowed when the
# server is out of memory); its layout entry stays until its buckets are freed.
_DROP = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return 1
"""


def buckets_of(user_ids: np.ndarray, buckets: int) -> np.ndarray:
    """The bucket of each user id (Fibonacci hashing: top bits of id * 2**64/phi)."""
    shift = np.uint64(64 - (buckets.bit_length() - 1))
    with np.errstate(over="ignore"):
        mixed = user_ids.astype(np.int64).view(np.uint64) * _GOLDEN
    return (mixed >> shift).astype(np.int64) if buckets > 1 else np.zeros(len(user_ids),
                                                                          np.int64)


_PIPELINE_NOTE = re.compile(r"^Command # \d+ \(.*?\) of pipeline caused error: ")


def _one_line(exc: BaseException) -> str:
    """The server's message on one line, without the command the client quotes (its
    arguments are user ids and record bytes)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return _PIPELINE_NOTE.sub("", text)[:300]


class RedisStore(Store):
    """A store on a Redis server or cluster (see the module docstring)."""

    default_grace_s = DEFAULT_GRACE_S

    def __init__(self, uri: StoreUri):
        super().__init__(uri)
        options = uri.options
        self.prefix = options.get("prefix", DEFAULT_PREFIX)
        if not self.prefix or any(c in self.prefix for c in "{}"):
            raise UsageError(f"prefix {self.prefix!r} must be non-empty without braces",
                             where=self.display_uri)
        self.buckets = self._number(options, "buckets", DEFAULT_BUCKETS, int)
        if self.buckets < 1 or self.buckets & (self.buckets - 1):
            raise UsageError(f"buckets must be a power of two, not {self.buckets}",
                             where=self.display_uri)
        self.default_grace_s = self._number(options, "grace", DEFAULT_GRACE_S, float)
        self.cluster = uri.scheme == "redis+cluster"
        tag = "{" + self.prefix + "}"
        self.k_state = f"{tag}:state"
        self.k_manifests = f"{tag}:manifests"
        self.k_drafts = f"{tag}:drafts"
        self.k_layout = f"{tag}:layout"
        self._layouts: dict[str, int] = {}
        self.client = self._connect(uri, options)
        self._cas = self.client.register_script(_CAS)
        self._publish_script = self.client.register_script(_PUBLISH)
        self._drop_script = self.client.register_script(_DROP)
        self._stage_script = self.client.register_script(_STAGE)

    def _number(self, options: dict[str, str], key: str, default, kind):
        if key not in options:
            return default
        try:
            return kind(options[key])
        except ValueError:
            raise UsageError(f"?{key}={options[key]} is not a number",
                             where=self.display_uri) from None

    def _connect(self, uri: StoreUri, options: dict[str, str]):
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        password = uri.password or os.environ.get("DV365_REDIS_PASSWORD") or None
        kwargs = dict(host=uri.host, port=uri.port or 6379, username=uri.username,
                      password=password, socket_connect_timeout=5, socket_timeout=30,
                      retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2))
        tls = uri.scheme == "rediss" or options.get("tls") in ("1", "yes", "true")
        if tls:
            files = {"ssl_ca_certs": options.get("ca") or os.environ.get("DV365_REDIS_CA"),
                     "ssl_certfile": options.get("cert") or os.environ.get("DV365_REDIS_CERT"),
                     "ssl_keyfile": options.get("key") or os.environ.get("DV365_REDIS_KEY")}
            for name, path in files.items():
                if path and not os.path.isfile(path):
                    raise StoreError(f"TLS file {path} does not exist", where=self.display_uri,
                                     hint="set ?ca=&cert=&key= or DV365_REDIS_CA/CERT/KEY")
            kwargs.update(ssl=True, ssl_cert_reqs="required", ssl_check_hostname=True,
                          **{k: v for k, v in files.items() if v})
        if self.cluster:
            db = uri.path.strip("/")
            if db not in ("", "0"):
                raise UsageError(f"a Redis Cluster has only database 0, not {db}",
                                 where=self.display_uri)
            from redis.cluster import RedisCluster

            with self._errors("connecting"):
                return RedisCluster(**kwargs)
        db = uri.path.strip("/") or "0"
        if not db.isdigit():
            raise UsageError(f"the database {db!r} is not a number", where=self.display_uri,
                             hint="write redis://HOST:PORT/DB, for example /0")
        return redis.Redis(db=int(db), **kwargs)

    @contextlib.contextmanager
    def _errors(self, doing: str):
        """Turn what the client raises into a one-line StoreError naming this store."""
        import redis
        from redis.exceptions import RedisClusterException

        try:
            yield
        except redis.AuthenticationError as exc:
            raise self.error(f"{doing}: authentication failed ({_one_line(exc)})",
                             hint="check the password (URI or DV365_REDIS_PASSWORD)") from None
        except redis.ResponseError as exc:
            text = _one_line(exc)
            if isinstance(exc, redis.OutOfMemoryError) or text.startswith("OOM"):
                raise self.error(f"{doing}: the server is out of memory ({text})",
                                 hint="raise maxmemory or gc old versions; nothing current "
                                      "changed") from None
            if text.startswith("NOAUTH") or text.startswith("WRONGPASS"):
                raise self.error(f"{doing}: authentication failed ({text})",
                                 hint="set the password in the URI or "
                                      "DV365_REDIS_PASSWORD") from None
            raise self.error(f"{doing}: the server refused: {text}") from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            text = _one_line(exc)
            hint = ("check the TLS files (?ca=&cert=&key=) and the server's certificate"
                    if "SSL" in text or "certificate" in text.lower()
                    else "is redis-server running there?")
            raise self.error(f"{doing}: cannot reach the server ({text})",
                             hint=hint) from None
        except (redis.RedisError, RedisClusterException) as exc:
            raise self.error(f"{doing}: {_one_line(exc)}",
                             hint="is it a cluster node (cluster-enabled yes)?"
                             if "cluster" in str(exc).lower() else None) from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()

    # ------------------------------------------------------------------------ layout
    def records_key(self, version: str, bucket: int) -> str:
        return f"{self.prefix}:r:{version}:{bucket}"

    def shards_key(self, version: str) -> str:
        return "{" + self.prefix + "}" + f":shards:{version}"

    def _buckets(self, version: str) -> int:
        known = self._layouts.get(version)
        if known is None:
            with self._errors(f"reading the layout of version {version}"):
                raw = self.client.hget(self.k_layout, version)
            known = int(raw) if raw is not None else self.buckets
            if raw is not None:
                self._layouts[version] = known
        return known

    def _pipeline(self):
        return self.client.pipeline(transaction=False)

    # -------------------------------------------------------------------- state, meta
    def _load_state(self) -> State:
        with self._errors("reading the state"):
            raw = self.client.get(self.k_state)
        return json.loads(raw) if raw else empty_state()

    def _update_state(self, change: Callable[[State], State]) -> State:
        for _ in range(1000):
            with self._errors("reading the state"):
                raw = self.client.get(self.k_state)
            old = raw.decode() if raw else ""
            new = change(json.loads(old) if old else empty_state())
            text = json.dumps(new, sort_keys=True)
            with self._errors("updating the state"):
                if self._cas(keys=[self.k_state], args=[old, text]):
                    return new
        raise self.error("the state kept changing under 1,000 attempts to update it")

    def _load_manifest(self, version: str) -> Manifest | None:
        with self._errors(f"reading the manifest of version {version}"):
            raw = self.client.hget(self.k_manifests, version)
        return None if raw is None else Manifest.from_json(raw, where=self.display_uri)

    def _published(self) -> list[str]:
        with self._errors("listing versions"):
            return sorted(v.decode() for v in self.client.hkeys(self.k_manifests))

    def _staged(self) -> list[Manifest]:
        with self._errors("listing staged versions"):
            raws = self.client.hvals(self.k_drafts)
        return sorted((Manifest.from_json(r, where=self.display_uri) for r in raws),
                      key=lambda m: m.id)

    # --------------------------------------------------------------------------- reads
    def _read_raw(self, version: str, user_ids: np.ndarray) -> list[bytes | None]:
        ids = np.asarray(user_ids, dtype=np.int64)
        buckets = self._buckets(version)
        where = buckets_of(ids, buckets)
        order = np.argsort(where, kind="stable")
        sorted_buckets = where[order]
        cuts = np.flatnonzero(np.diff(sorted_buckets)) + 1
        groups = [g for g in np.split(order, cuts) if len(g)]
        commands = [(self.records_key(version, int(where[g[0]])), ids[g].tolist())
                    for g in groups]
        with self._errors(f"reading version {version}"):
            if len(commands) == 1:  # one user, or a small batch: no pipeline machinery
                replies = [self.client.hmget(*commands[0])]
            else:
                pipe = self._pipeline()
                for key, fields in commands:
                    pipe.hmget(key, fields)
                replies = pipe.execute()
        out: list[bytes | None] = [None] * len(ids)
        for group, values in zip(groups, replies):
            for i, value in zip(group.tolist(), values):
                out[i] = value
        return out

    def _scan_raw(self, version: str, batch_size: int
                  ) -> Iterator[tuple[np.ndarray, list[bytes]]]:
        buckets = self._buckets(version)
        pipe = self._pipeline()
        for b in range(buckets):
            pipe.hkeys(self.records_key(version, b))
        with self._errors(f"scanning version {version}"):
            keys = pipe.execute()
        ids = np.sort(np.concatenate([np.array([int(k) for k in ks], dtype=np.int64)
                                      for ks in keys] or [np.zeros(0, np.int64)]))
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            raw = self._read_raw(version, chunk)
            present = np.array([r is not None for r in raw], dtype=bool)
            yield chunk[present], [r for r in raw if r is not None]

    def _count(self, version: str) -> int:
        pipe = self._pipeline()
        for b in range(self._buckets(version)):
            pipe.hlen(self.records_key(version, b))
        with self._errors(f"counting version {version}"):
            return int(sum(pipe.execute()))

    # ------------------------------------------------------------------------- writes
    def _stage(self, draft: Manifest) -> "RedisStaged":
        with self._errors(f"staging version {draft.id}"):
            self._stage_script(keys=[self.k_layout, self.k_drafts],
                               args=[draft.id, self.buckets, draft.to_json()])
        self._layouts.pop(draft.id, None)
        return RedisStaged(self, draft)

    def _drop(self, version: str) -> None:
        buckets = self._buckets(version)
        with self._errors(f"dropping version {version}"):
            self._drop_script(keys=[self.k_manifests, self.k_drafts, self.shards_key(version)],
                              args=[version])
            self._free(version, buckets)
        self._layouts.pop(version, None)

    def _free(self, version: str, buckets: int) -> None:
        pipe = self._pipeline()
        for b in range(buckets):  # one key a command: cluster buckets live in different slots
            pipe.unlink(self.records_key(version, b))
        pipe.execute()
        self.client.hdel(self.k_layout, version)

    def gc(self, *, keep: int = 3, grace_s: float | None = None) -> list[str]:
        """:meth:`Store.gc`, after finishing the drops a crash interrupted."""
        with self._errors("finishing interrupted drops"):
            pipe = self._pipeline()
            pipe.hgetall(self.k_layout)
            pipe.hkeys(self.k_manifests)
            pipe.hkeys(self.k_drafts)
            layout, published, drafts = pipe.execute()
            for version, buckets in layout.items():
                if version not in published and version not in drafts:
                    self._free(version.decode(), int(buckets))
        return super().gc(keep=keep, grace_s=grace_s)


class RedisStaged(StagedSnapshot):
    """A version being written to Redis: bucket hashes filled by pipelined ``HSET``."""

    store: RedisStore

    def __init__(self, store: RedisStore, manifest: Manifest):
        super().__init__(store, manifest)
        self.buckets = store._buckets(manifest.id)

    def completed_shards(self) -> dict[int, ShardDone]:
        with self.store._errors(f"reading the shards of version {self.manifest.id}"):
            raw = self.store.client.hgetall(self.store.shards_key(self.manifest.id))
        return {int(k): ShardDone.from_json(v) for k, v in raw.items()}

    def write(self, user_ids: np.ndarray, records: np.ndarray) -> None:
        ids = np.asarray(user_ids, dtype=np.int64)
        records = np.ascontiguousarray(records, dtype=np.uint8)
        if records.ndim != 2 or len(records) != len(ids) \
                or records.shape[1] != self.manifest.record_size:
            raise ValueError(f"expected [{len(ids)}, {self.manifest.record_size}] records, "
                             f"got {records.shape}")
        version = self.manifest.id
        for start in range(0, len(ids), WRITE_BATCH):
            chunk = ids[start:start + WRITE_BATCH]
            rows = records[start:start + WRITE_BATCH]
            where = buckets_of(chunk, self.buckets)
            order = np.argsort(where, kind="stable")
            cuts = np.flatnonzero(np.diff(where[order])) + 1
            pipe = self.store._pipeline()
            for group in np.split(order, cuts):
                if not len(group):
                    continue
                args: list = []
                for user, i in zip(chunk[group].tolist(), group.tolist()):
                    args.append(user)
                    args.append(rows[i].tobytes())
                pipe.execute_command("HSET", self.store.records_key(version,
                                                                   int(where[group[0]])),
                                     *args)
            with self.store._errors(f"writing version {version}"):
                pipe.execute()

    def finish_shard(self, done: ShardDone) -> None:
        text = done.to_json()
        with self.store._errors(f"finishing shard {done.index} of {self.manifest.id}"):
            self.store.client.hset(self.store.shards_key(self.manifest.id), str(done.index),
                                   text)

    def _store_manifest(self, manifest: Manifest) -> None:
        store = self.store
        with store._errors(f"publishing version {manifest.id}"):
            store._publish_script(keys=[store.k_manifests, store.k_drafts,
                                        store.shards_key(manifest.id)],
                                  args=[manifest.id, manifest.to_json()])
