"""The store interface: versioned snapshots of user records, published by one pointer change.

Every store (LMDB, Redis, Parquet, or a plugin's) is a :class:`Store`. A backend implements
a few primitives (the abstract ``_`` methods: read and scan raw values, keep one small
*state* document, keep manifests, stage and drop versions); everything users call is written
once here on top of them:

* **Versions.** A snapshot is written completely under its own version
  (:meth:`Store.stage`), then :meth:`StagedSnapshot.publish` stores its manifest and, by
  default, makes it current by one atomic update of the state document. Readers resolve the
  current version once at the start of each batch read, so a batch comes from the old or the
  new snapshot, never a mix.
* **State document.** ``{"current": v, "history": [[v, since_ms], ...], "retired":
  {v: ms}, "pins": {v: note}}``: the current version, the versions that were current before
  it (for :meth:`rollback`), when each stopped being current (the grace period of
  :meth:`gc`) and the pinned versions :meth:`gc` never removes.
* **Reads.** :meth:`get` returns float vectors decoded by the snapshot's codec and a found
  mask: a user without a record, or whose record fails its checksum, gets zeros and False
  (a corrupt record also warns, naming user and version, and is counted), never an
  exception.
"""

from __future__ import annotations

import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from dv365.errors import Dv365Error, NotFoundError, UsageError
from dv365.export.manifest import Manifest
from dv365.export.records import OpenedRecords, open_records
from dv365.export.sink import ShardDone
from dv365.stores.uri import StoreUri

State = dict[str, Any]


class StoreError(Dv365Error):
    """A store cannot do what was asked (unreachable, refused, full, inconsistent);
    ``where`` is the store's URI, password masked."""


class CorruptRecordWarning(UserWarning):
    """A stored record failed verification and was served as not found."""


@dataclass(frozen=True)
class Lookup:
    """What :meth:`Store.get` returns for a batch of users."""

    vectors: torch.Tensor
    """``float32 [B, rows, dim]``; zeros where ``found`` is False."""
    found: torch.Tensor
    """``bool [B]``."""
    version: str | None
    """The version read (``None`` when the store has none yet)."""


@dataclass(frozen=True)
class VersionInfo:
    """One published version as :meth:`Store.versions` lists it."""

    manifest: Manifest
    current: bool
    pinned: bool
    retired_ms: int | None
    """When it stopped being current (``None``: it is current or never was)."""


def empty_state() -> State:
    return {"current": None, "history": [], "retired": {}, "pins": {}}


def now_ms() -> int:
    return int(time.time() * 1000)


class Store(ABC):
    """A versioned store of user records (see the module docstring)."""

    #: Seconds a version that stopped being current stays readable before :meth:`gc` may
    #: remove it; backends whose readers hold no snapshot of their own (Redis) need one.
    default_grace_s: float = 0.0

    def __init__(self, uri: StoreUri):
        self.uri = uri
        self.corrupt_records = 0
        self._manifest_cache: dict[str, Manifest] = {}
        self._codecs: dict[str, Any] = {}

    # ------------------------------------------------------------------ backend primitives
    @abstractmethod
    def _load_state(self) -> State:
        """The state document (:func:`empty_state` for a new store)."""

    @abstractmethod
    def _update_state(self, change: Callable[[State], State]) -> State:
        """Atomically replace the state document by ``change(state)``; return the new one.
        Concurrent updates serialize (none is lost)."""

    @abstractmethod
    def _load_manifest(self, version: str) -> Manifest | None:
        """The manifest of a published version (``None`` if there is none)."""

    @abstractmethod
    def _published(self) -> list[str]:
        """Ids of every published version."""

    @abstractmethod
    def _read_raw(self, version: str, user_ids: np.ndarray) -> list[bytes | None]:
        """Raw values of ``user_ids`` in ``version``, in order (``None`` where absent), read
        as one consistent batch."""

    @abstractmethod
    def _scan_raw(self, version: str, batch_size: int
                  ) -> Iterator[tuple[np.ndarray, list[bytes]]]:
        """Every ``(user_ids, raw values)`` of ``version`` in batches, user ids ascending."""

    @abstractmethod
    def _count(self, version: str) -> int:
        """How many records ``version`` holds (published or staged)."""

    @abstractmethod
    def _staged(self) -> list[Manifest]:
        """Draft manifests of staged, unpublished versions."""

    @abstractmethod
    def _stage(self, draft: Manifest) -> "StagedSnapshot":
        """A writer for ``draft.id``: new, or the staged one of that id (resume)."""

    @abstractmethod
    def _drop(self, version: str) -> None:
        """Remove a version's records and manifest (published or staged)."""

    def close(self) -> None:
        """Release connections and handles."""

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------- names
    @property
    def display_uri(self) -> str:
        """The URI with the password masked: what every message shows."""
        return self.uri.display

    def error(self, message: str, *, hint: str | None = None) -> StoreError:
        """A :class:`StoreError` about this store."""
        return StoreError(message, where=self.display_uri, hint=hint)

    # ---------------------------------------------------------------------------- reads
    def current_version(self) -> str | None:
        return self._load_state()["current"]

    def manifest(self, version: str | None = None) -> Manifest:
        """The manifest of ``version`` (the current one by default); a
        :class:`~dv365.errors.NotFoundError` when there is no such version."""
        if version is None:
            version = self.current_version()
            if version is None:
                raise NotFoundError("the store has no current version", where=self.display_uri,
                                    hint="publish one with `dv365 export`")
        cached = self._manifest_cache.get(version)
        if cached is not None:
            return cached
        manifest = self._load_manifest(version)
        if manifest is None:
            known = sorted(self._published())
            raise NotFoundError(f"no version {version!r}", where=self.display_uri,
                                hint=f"versions: {', '.join(known[-5:]) or 'none'}; see "
                                     "`dv365 store versions`")
        self._manifest_cache[version] = manifest
        return manifest

    def _resolve(self, version: str | None) -> str | None:
        return self.current_version() if version is None else version

    def read(self, user_ids: Sequence[int] | np.ndarray, *,
             version: str | None = None) -> OpenedRecords:
        """Verified records of ``user_ids`` in ``version`` (current by default)."""
        ids = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        version = self._resolve(version)
        if version is None:
            return open_records(ids, [None] * len(ids), 0)
        return self._verified(ids, version, self.manifest(version))

    def _verified(self, ids: np.ndarray, version: str, manifest: Manifest) -> OpenedRecords:
        """:meth:`read` once the version and its manifest are known (:meth:`get` calls it
        directly: resolving and looking up twice is a sixth of a one-user get)."""
        opened = open_records(ids, self._read_raw(version, ids), manifest.record_size)
        for user, problem in opened.corrupt:
            self.corrupt_records += 1
            warnings.warn(CorruptRecordWarning(
                f"{self.display_uri}: version {version}: the record of user {user} is corrupt "
                f"({problem}); served as not found"), stacklevel=3)
        return opened

    def get(self, user_ids: Sequence[int] | np.ndarray, *,
            version: str | None = None) -> Lookup:
        """Decoded vectors ``float32 [B, rows, dim]`` and the found mask ``bool [B]`` of
        ``user_ids`` in ``version`` (the current one, resolved once, by default)."""
        ids = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        version = self._resolve(version)
        if version is None:
            return Lookup(torch.zeros(len(ids), 0, 0), torch.zeros(len(ids), dtype=torch.bool),
                          None)
        manifest = self.manifest(version)
        opened = self._verified(ids, version, manifest)
        codec = self._codecs.get(manifest.codec)
        if codec is None:
            from dv365.export.codecs import codec_named

            codec = codec_named(manifest.codec, where=f"{self.display_uri} version {version}")
            self._codecs[manifest.codec] = codec
        payloads = torch.from_numpy(opened.payloads.copy())  # contiguous, writable
        vectors = codec.decode(payloads, manifest.rows, manifest.dim)
        found = torch.from_numpy(opened.found)
        # a masked assignment costs more than the decode; a few rows are checked in Python
        every = all(opened.found.tolist()) if len(ids) <= 4 else opened.found.all()
        if not every:
            vectors = torch.where(found.view(-1, 1, 1), vectors, vectors.new_zeros(()))
        return Lookup(vectors, found, version)

    def scan(self, version: str | None = None, *, batch_size: int = 4096
             ) -> Iterator[tuple[np.ndarray, OpenedRecords]]:
        """Every verified record of ``version``, ascending by user id, in batches."""
        version = self._resolve(version)
        if version is None:
            return
        size = self.manifest(version).record_size
        for ids, raw in self._scan_raw(version, batch_size):
            yield ids, open_records(ids, raw, size)

    # ------------------------------------------------------------------------- versions
    def versions(self) -> list[VersionInfo]:
        """Published versions, oldest first."""
        state = self._load_state()
        out = [VersionInfo(self.manifest(v), v == state["current"], v in state["pins"],
                           state["retired"].get(v)) for v in self._published()]
        return sorted(out, key=lambda info: (info.manifest.created_ms, info.manifest.id))

    def promote(self, version: str) -> None:
        """Make a published ``version`` current (one atomic state update)."""
        self.manifest(version)  # refuses an unknown or unpublished version

        def change(state: State) -> State:
            old = state["current"]
            if old == version:
                return state
            if old is not None:
                state["retired"][old] = now_ms()
            state["retired"].pop(version, None)
            state["history"].append([version, now_ms()])
            state["current"] = version
            return state

        self._update_state(change)

    def rollback(self) -> str:
        """Make the version that was current before the current one current again; returns
        it. A :class:`UsageError` when there is none left to go back to."""
        def change(state: State) -> State:
            published = set(self._published())
            history = [h for h in state["history"] if h[0] in published]
            if len(history) < 2:
                raise UsageError("no earlier version to roll back to", where=self.display_uri)
            old = history.pop()[0]
            state["retired"][old] = now_ms()
            state["current"] = history[-1][0]
            state["retired"].pop(state["current"], None)
            state["history"] = history
            return state

        return self._update_state(change)["current"]

    def pin(self, version: str, note: str = "") -> None:
        """Protect ``version`` from :meth:`gc` until :meth:`unpin`."""
        self.manifest(version)

        def change(state: State) -> State:
            state["pins"][version] = note
            return state

        self._update_state(change)

    def unpin(self, version: str) -> None:
        def change(state: State) -> State:
            state["pins"].pop(version, None)
            return state

        self._update_state(change)

    def gc(self, *, keep: int = 3, grace_s: float | None = None) -> list[str]:
        """Remove all but the newest ``keep`` published versions (never the current one, a
        pinned one, or one retired less than ``grace_s`` ago); returns the removed ids.
        Staged versions are left alone: an export may still be writing one, and a rerun of
        the same export resumes it (``stage(draft).abort()`` discards one)."""
        if keep < 1:
            raise UsageError(f"keep must be at least 1, not {keep}", where="--keep")
        grace_ms = 1000 * (self.default_grace_s if grace_s is None else grace_s)
        state = self._load_state()
        infos = self.versions()
        newest = [info.manifest.id for info in infos][-keep:]
        removed = []
        for info in infos:
            v = info.manifest.id
            retired = state["retired"].get(v)
            if (v in newest or v == state["current"] or v in state["pins"]
                    or (retired is not None and now_ms() - retired < grace_ms)):
                continue
            self._drop(v)
            self._manifest_cache.pop(v, None)
            removed.append(v)

        def forget(state: State) -> State:
            for v in removed:
                state["retired"].pop(v, None)
            state["history"] = [h for h in state["history"] if h[0] not in removed]
            return state

        if removed:
            self._update_state(forget)
        return removed

    # -------------------------------------------------------------------------- writing
    def staged(self) -> list[Manifest]:
        return self._staged()

    def stage(self, draft: Manifest) -> "StagedSnapshot":
        """A writer for snapshot ``draft.id``. Staging an id that is staged already continues
        it (its completed shards are kept) when the drafts agree on
        :meth:`Manifest.identity`; a published id is refused."""
        if draft.id in self._published():
            raise UsageError(f"version {draft.id} is published already", where=self.display_uri)
        for old in self._staged():
            if old.id == draft.id and old.identity() != draft.identity():
                raise UsageError(f"staged version {draft.id} was computed from other inputs",
                                 where=self.display_uri,
                                 hint="drop it with `dv365 store gc` or export a new id")
        return self._stage(draft)


class StagedSnapshot(ABC):
    """A snapshot being written (implements :class:`dv365.export.sink.StagedSnapshot`).

    A backend implements the primitives; :meth:`publish` checks counts and the checksum
    before anything becomes visible."""

    def __init__(self, store: Store, manifest: Manifest):
        self.store = store
        self.manifest = manifest

    @abstractmethod
    def completed_shards(self) -> dict[int, ShardDone]: ...

    @abstractmethod
    def write(self, user_ids: np.ndarray, records: np.ndarray) -> None: ...

    @abstractmethod
    def finish_shard(self, done: ShardDone) -> None: ...

    @abstractmethod
    def _store_manifest(self, manifest: Manifest) -> None:
        """Record ``manifest`` as published (after which :meth:`Store._published` lists the
        version and :meth:`Store._staged` no longer does)."""

    def abort(self) -> None:
        self.store._drop(self.manifest.id)

    def publish(self, manifest: Manifest, *, make_current: bool = True) -> None:
        if manifest.is_draft or manifest.identity() != self.manifest.identity() \
                or manifest.id != self.manifest.id:
            raise ValueError("publish takes the staged draft, completed")
        shards = self.completed_shards().values()
        users = sum(s.users for s in shards)
        if users != manifest.users:
            raise self.store.error(f"version {manifest.id}: shards hold {users:,} users, the "
                                   f"manifest says {manifest.users:,}")
        stored = self.store._count(manifest.id)
        if stored != manifest.users:
            raise self.store.error(f"version {manifest.id} holds {stored:,} records where "
                                   f"{manifest.users:,} were written; not published",
                                   hint="export again: the staged version resumes")
        self._store_manifest(manifest)
        if make_current:
            self.store.promote(manifest.id)
