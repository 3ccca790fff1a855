"""``lmdb://PATH``: the embedded store, one LMDB environment in the folder PATH.

Layout (named databases of one environment)::

    dv365-meta          b"format"            b"dv365-lmdb-store 1"
                        b"state"             the state document (JSON)
                        b"manifest/<v>"      a published version's manifest (JSON)
                        b"draft/<v>"         a staged version's draft manifest (JSON)
                        b"shard/<v>/<i>"     a completed shard of a staged version (JSON)
    v/<v>               big-endian uint64 user id -> record (one database per version)

Big-endian keys sort like the ids, so a shard written in ascending order is appended
(``MDB_APPEND``: no page splits, no comparisons) and a scan returns users ascending.

Every read batch (:meth:`LmdbStore.get`, :meth:`LmdbStore.read`) runs in one read
transaction: the current pointer, the manifest and the records come from one LMDB
snapshot, so a batch is wholly one version even while another process publishes and
collects the version it started on. Writers in any process serialize on LMDB's writer lock.

The engine is pinned (:data:`LMDB_ENGINE`): the ``lmdb`` package bundles LMDB 0.9 and 1.0,
whose data files are incompatible, and would otherwise pick by environment variable.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Callable, Iterator

import lmdb
import numpy as np

from dv365.errors import UsageError
from dv365.export.manifest import Manifest
from dv365.export.records import OpenedRecords
from dv365.export.sink import ShardDone
from dv365.stores.base import State, StagedSnapshot, Store, empty_state
from dv365.stores.uri import StoreUri

LMDB_ENGINE = 0
"""The LMDB major version every environment is opened with (0: LMDB 0.9.x, data format 1)."""

FORMAT = b"dv365-lmdb-store 1"
META = b"dv365-meta"
DEFAULT_MAP_SIZE = 64 << 30
"""Initial map size (address space, not disk: the file grows as pages are used); doubled
whenever a write finds the map full, unless the URI fixes it with ``?map_size=``."""
MAX_DBS = 1024
MAX_READERS = 1024
WRITE_BATCH = 65536
"""Records per write transaction when a write is larger."""

_KEY = np.dtype(">u8")


def user_keys(user_ids: np.ndarray) -> list[bytes]:
    """The 8-byte big-endian keys of non-negative ``user_ids``."""
    packed = np.asarray(user_ids).astype(_KEY).tobytes()
    return [packed[i:i + 8] for i in range(0, len(packed), 8)]


def _size_option(text: str, store: StoreUri) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    raw = text.strip().lower().rstrip("b")
    try:
        if raw and raw[-1] in units:
            return int(float(raw[:-1]) * units[raw[-1]])
        return int(raw)
    except ValueError:
        raise UsageError(f"map_size={text!r} is not a size", where=store.display,
                         hint="bytes, or a number with k, m, g or t: map_size=64g") from None


class _SharedEnvironment:
    """One open environment, shared by every :class:`LmdbStore` of its folder in this
    process (LMDB allows one ``MDB_env`` per file and process)."""

    def __init__(self, env: lmdb.Environment):
        self.env = env
        self.users = 0


_OPEN: dict[tuple[int, str], _SharedEnvironment] = {}
_OPEN_LOCK = threading.Lock()


class LmdbStore(Store):
    """A versioned store in one LMDB environment (see the module docstring).

    URI options: ``map_size`` (fixed map size, e.g. ``?map_size=64m``; a write that does not
    fit is a :class:`StoreError` instead of growing the map)."""

    def __init__(self, uri: StoreUri):
        super().__init__(uri)
        self.path = uri.path
        options = uri.options
        self._fixed_map = "map_size" in options
        self._map_size = (_size_option(options["map_size"], uri) if self._fixed_map
                          else DEFAULT_MAP_SIZE)
        self._shared: _SharedEnvironment | None = None
        self._env: lmdb.Environment | None = None
        self._local = threading.local()
        self._local.txn, self._local.handles = None, {}
        self._state_cache: tuple[bytes, State] | None = None

    # ------------------------------------------------------------------ environment
    def _environment(self, *, create: bool) -> lmdb.Environment | None:
        """The open environment; ``None`` when PATH holds no store and ``create`` is False."""
        if self._env is not None:
            return self._env
        with _OPEN_LOCK:
            if self._env is not None:
                return self._env
            key = (os.getpid(), os.path.realpath(self.path))  # a forked child opens its own
            shared = _OPEN.get(key)
            if shared is None:
                shared = self._open(create=create)
                if shared is None:
                    return None
                _OPEN[key] = shared
            shared.users += 1
            self._shared = shared
            self._env = shared.env
            return self._env

    def _open(self, *, create: bool) -> "_SharedEnvironment | None":
        path = self.path
        if os.path.exists(path) and not os.path.isdir(path):
            raise self.error(f"{path} is a file, not an LMDB store folder")
        has_data = os.path.exists(os.path.join(path, "data.mdb"))
        if not has_data:
            # LMDB writes lock.mdb before data.mdb: a creation killed between the two left
            # no store, only its lock file.
            if os.path.isdir(path) and set(os.listdir(path)) - {"lock.mdb"}:
                raise self.error(f"{path} holds files but no LMDB environment",
                                 hint="point lmdb:// at a new folder or a dv365 store")
            if not create:
                return None
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise self.error(f"the folder {parent} does not exist")
        try:
            # metasync=False: one flush a commit instead of two; LMDB keeps its integrity
            # (a system crash can undo only the last commit), and the commits that change
            # what readers see are flushed in full (_update_state)
            env = lmdb.open(path, subdir=True, map_size=self._map_size, max_dbs=MAX_DBS,
                            max_readers=MAX_READERS, lock=True, readahead=False,
                            metasync=False, lib_version=LMDB_ENGINE)
        except (lmdb.Error, OSError) as exc:  # unreadable, read-only, not a directory...
            raise self.error(f"cannot open the LMDB environment: {_reason(exc)}") from None
        try:
            ready = self._check_format(env, create=create)
        except BaseException:
            env.close()
            raise
        if not ready:  # being created by another process: no store yet
            env.close()
            return None
        return _SharedEnvironment(env)

    def _check_format(self, env: lmdb.Environment, *, create: bool) -> bool:
        """Whether ``env`` is a dv365 store (made one when ``create``); False for an
        environment another process is creating right now (nothing in it yet)."""
        try:
            with env.begin(write=create) as txn:
                try:
                    meta = env.open_db(META, txn=txn, create=create)
                except lmdb.NotFoundError:
                    meta = None
                found = None if meta is None else txn.get(b"format", db=meta)
                if found is None and create:
                    txn.put(b"format", FORMAT, db=meta)
                    return True
                if found is None:
                    if txn.stat()["entries"] == 0:
                        return False
                    raise self.error(f"{self.path} is an LMDB environment but not a dv365 store")
                if found != FORMAT:
                    raise self.error(f"{self.path} has store format {found!r}, this dv365 "
                                     f"reads {FORMAT!r}")
                return True
        except lmdb.Error as exc:
            raise self.error(f"cannot read the LMDB environment: {_reason(exc)}") from None

    def close(self) -> None:
        with _OPEN_LOCK:
            shared, self._shared = self._shared, None
            self._env = None
            if shared is None:
                return
            shared.users -= 1
            if shared.users == 0:
                _OPEN.pop((os.getpid(), os.path.realpath(self.path)), None)
                shared.env.close()

    def _handle(self, name: bytes, txn, *, create: bool = False):
        """The handle of database ``name`` for ``txn`` (``None`` when there is none).

        Handles are opened in each transaction: the ``lmdb`` binding closes a handle
        opened in a read transaction when that transaction ends."""
        handles = self._local.handles
        db = handles.get(name)
        if db is None:
            with _OPEN_LOCK:  # mdb_dbi_open must not run in two transactions at once
                try:
                    db = self._env.open_db(name, txn=txn, create=create)
                except lmdb.NotFoundError:
                    return None
            handles[name] = db
        return db

    def _version_db(self, version: str, txn, *, create: bool = False):
        """The database of ``version`` (``None`` when it has none)."""
        return self._handle(f"v/{version}".encode(), txn, create=create)

    def _m(self, txn):
        """The meta database."""
        return self._handle(META, txn)

    # ------------------------------------------------------------------ transactions
    def _reading(self) -> "_Reading":
        """One read transaction for everything read inside (reused when nested); ``None``
        when there is no store yet."""
        return _Reading(self)

    def _write(self, work: Callable[[lmdb.Transaction], object]) -> object:
        """Run ``work(txn)`` in one write transaction, growing the map when it is full."""
        env = self._environment(create=True)
        while True:
            txn = _begin(env, write=True)
            self._local.txn, self._local.handles = txn, {}
            try:
                result = work(txn)
                txn.commit()
                return result
            except lmdb.MapFullError:
                txn.abort()
                if self._fixed_map:
                    raise self.error(f"the store is full (map_size={env.info()['map_size']:,} "
                                     "bytes); nothing was changed",
                                     hint="raise ?map_size= or leave it out to grow") from None
                env.set_mapsize(env.info()["map_size"] * 2)
            except (lmdb.Error, OSError) as exc:  # disk full, I/O error
                txn.abort()
                if _disk_full(self.path):
                    raise self.error("the disk is full; nothing was changed",
                                     hint="free space, or point lmdb:// at another disk") \
                        from None
                raise self.error(f"write failed: {_reason(exc)}") from None
            except BaseException:
                txn.abort()
                raise
            finally:
                self._local.txn, self._local.handles = None, {}

    def _meta_items(self, txn, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        with txn.cursor(db=self._m(txn)) as cur:
            if not cur.set_range(prefix):
                return
            for key, value in cur:
                if not key.startswith(prefix):
                    return
                yield key, value

    # ------------------------------------------------------------------ reads
    def get(self, user_ids, *, version=None):
        with self._reading():
            return super().get(user_ids, version=version)

    def read(self, user_ids, *, version=None) -> OpenedRecords:
        with self._reading():
            return super().read(user_ids, version=version)

    def _load_state(self) -> State:
        with self._reading() as txn:
            raw = None if txn is None else txn.get(b"state", db=self._m(txn))
        if raw is None:
            return empty_state()
        cached = self._state_cache
        if cached is None or cached[0] != raw:  # parsed once per change, not per read
            cached = self._state_cache = (raw, json.loads(raw))
        return cached[1]  # the base only reads it; _update_state parses its own

    def _load_manifest(self, version: str) -> Manifest | None:
        with self._reading() as txn:
            raw = None if txn is None else txn.get(b"manifest/" + version.encode(),
                                                   db=self._m(txn))
        return None if raw is None else Manifest.from_json(raw, where=self.display_uri)

    def _published(self) -> list[str]:
        with self._reading() as txn:
            if txn is None:
                return []
            return [k[len(b"manifest/"):].decode() for k, _ in
                    self._meta_items(txn, b"manifest/")]

    def _staged(self) -> list[Manifest]:
        with self._reading() as txn:
            if txn is None:
                return []
            return [Manifest.from_json(v, where=self.display_uri)
                    for _, v in self._meta_items(txn, b"draft/")]

    def _read_raw(self, version: str, user_ids: np.ndarray) -> list[bytes | None]:
        ids = np.asarray(user_ids, dtype=np.int64)
        with self._reading() as txn:
            db = None if txn is None else self._version_db(version, txn)
            if db is None:
                return [None] * len(ids)
            get = txn.get
            if len(ids) <= 4:  # a few users: Python ints beat the numpy calls
                return [None if u < 0 else get(u.to_bytes(8, "big"), db=db)
                        for u in ids.tolist()]
            if (ids >= 0).all():
                return [get(k, db=db) for k in user_keys(ids)]
            # a negative id can have no record
            return [None if u < 0 else get(k, db=db)
                    for u, k in zip(ids.tolist(), user_keys(np.maximum(ids, 0)))]

    def _scan_raw(self, version: str, batch_size: int
                  ) -> Iterator[tuple[np.ndarray, list[bytes]]]:
        with self._reading() as txn:
            db = None if txn is None else self._version_db(version, txn)
            if db is None:
                return
            keys: list[bytes] = []
            values: list[bytes] = []
            with txn.cursor(db=db) as cur:
                for key, value in cur:
                    keys.append(key)
                    values.append(value)
                    if len(keys) == batch_size:
                        yield _ids(keys), values
                        keys, values = [], []
            if keys:
                yield _ids(keys), values

    def _count(self, version: str) -> int:
        with self._reading() as txn:
            db = None if txn is None else self._version_db(version, txn)
            return 0 if db is None else txn.stat(db)["entries"]

    # ------------------------------------------------------------------ writes
    def _update_state(self, change: Callable[[State], State]) -> State:
        def work(txn):
            raw = txn.get(b"state", db=self._m(txn))
            state = change(empty_state() if raw is None else json.loads(raw))
            txn.put(b"state", json.dumps(state, sort_keys=True).encode(), db=self._m(txn))
            return state

        state = self._write(work)
        self._env.sync(True)  # a pointer change is durable when it returns
        return state

    def _stage(self, draft: Manifest) -> "LmdbStaged":
        key = b"draft/" + draft.id.encode()

        def work(txn):
            if txn.get(key, db=self._m(txn)) is None:
                txn.put(key, draft.to_json().encode(), db=self._m(txn))
            self._version_db(draft.id, txn, create=True)

        self._write(work)
        return LmdbStaged(self, draft)

    def _drop(self, version: str) -> None:
        v = version.encode()

        def work(txn):
            db = self._version_db(version, txn)
            if db is not None:
                txn.drop(db, delete=True)
            for prefix in (b"manifest/" + v, b"draft/" + v):
                txn.delete(prefix, db=self._m(txn))
            for key in [k for k, _ in self._meta_items(txn, b"shard/" + v + b"/")]:
                txn.delete(key, db=self._m(txn))

        self._write(work)


class LmdbStaged(StagedSnapshot):
    """A version being written to an :class:`LmdbStore`."""

    store: LmdbStore

    def completed_shards(self) -> dict[int, ShardDone]:
        prefix = b"shard/" + self.manifest.id.encode() + b"/"
        with self.store._reading() as txn:
            return {d.index: d for d in (ShardDone.from_json(v) for _, v in
                                         self.store._meta_items(txn, prefix))}

    def write(self, user_ids: np.ndarray, records: np.ndarray) -> None:
        ids = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        records = np.ascontiguousarray(records, dtype=np.uint8)
        size = self.manifest.record_size
        if records.shape != (len(ids), size):
            raise ValueError(f"expected records [{len(ids)}, {size}], got {records.shape}")
        if len(ids) and ids.min() < 0:
            raise self.store.error(f"user id {int(ids.min())} is negative; the LMDB store "
                                   "keys users by unsigned 64-bit ids")
        for start in range(0, len(ids), WRITE_BATCH):
            self._write_batch(ids[start:start + WRITE_BATCH], records[start:start + WRITE_BATCH])

    def _write_batch(self, ids: np.ndarray, records: np.ndarray) -> None:
        keys = user_keys(ids)
        data = memoryview(records.tobytes())  # slices of a view: no copy per record
        size = records.shape[1]
        items = [(k, data[i * size:(i + 1) * size]) for i, k in enumerate(keys)]
        ascending = bool(len(ids) < 2 or (np.diff(ids) > 0).all())
        store = self.store

        def work(txn):
            db = store._version_db(self.manifest.id, txn)
            if db is None:
                raise store.error(f"version {self.manifest.id} is not staged (dropped?)")
            with txn.cursor(db=db) as cur:
                append = ascending and (not cur.last() or cur.key() < keys[0])
                consumed, added = cur.putmulti(items, append=append)
            if consumed != len(items):
                raise store.error(f"version {self.manifest.id}: wrote {consumed:,} of "
                                  f"{len(items):,} records")

        store._write(work)

    def finish_shard(self, done: ShardDone) -> None:
        key = f"shard/{self.manifest.id}/{done.index:010d}".encode()
        value = done.to_json().encode()
        self.store._write(lambda txn: txn.put(key, value, db=self.store._m(txn)))

    def _store_manifest(self, manifest: Manifest) -> None:
        store = self.store
        v = manifest.id.encode()

        def work(txn):
            txn.put(b"manifest/" + v, manifest.to_json().encode(), db=store._m(txn))
            txn.delete(b"draft/" + v, db=store._m(txn))
            for key in [k for k, _ in store._meta_items(txn, b"shard/" + v + b"/")]:
                txn.delete(key, db=store._m(txn))

        store._write(work)


class _Reading:
    """The context of :meth:`LmdbStore._reading` (a class: a read nests four deep, and a
    generator-based context manager costs several microseconds each time)."""

    __slots__ = ("store", "txn", "owner")

    def __init__(self, store: LmdbStore):
        self.store = store

    def __enter__(self) -> lmdb.Transaction | None:
        local = self.store._local
        self.txn = getattr(local, "txn", None)
        self.owner = False
        if self.txn is None:
            env = self.store._environment(create=False)
            if env is not None:
                self.txn = _begin(env, write=False)
                self.owner = True
                local.txn, local.handles = self.txn, {}
        return self.txn

    def __exit__(self, *exc: object) -> None:
        if self.owner:
            self.store._local.txn, self.store._local.handles = None, {}
            # commit, not abort: database handles opened in a read transaction are closed
            # when it aborts
            self.txn.commit()


def _begin(env: lmdb.Environment, *, write: bool) -> lmdb.Transaction:
    try:
        return env.begin(write=write)
    except lmdb.MapResizedError:
        env.set_mapsize(0)  # another process grew the map: adopt its size
        return env.begin(write=write)


def _ids(keys: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(keys), dtype=_KEY).astype(np.int64)


def _disk_full(path: str) -> bool:
    """Whether the file system holding ``path`` has less room than a large write needs."""
    try:
        fs = os.statvfs(path)
    except OSError:
        return False
    return fs.f_bavail * fs.f_frsize < 64 << 20


def _reason(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
