"""The timeline store: an events dataset as per-user CSR arrays that kernels read directly.

Layout (all NumPy, contiguous, memory-mapped read-only when opened from the cache):

* ``user_ids``: int64 [U], the users, sorted ascending, unique;
* ``offsets``: int64 [U + 1]; user ``u`` (an *index* into ``user_ids``) owns the events
  ``offsets[u]:offsets[u + 1]`` of every column;
* one array per column, events sorted by user, then time: ``ts`` int64 ms UTC, ``timeline``
  int8 (0 explicit, 1 implicit), ``media_id``/``author_id``/``topic_id`` int64,
  ``media_type``/``surface``/``action`` int8 codes into ``meta.vocab`` (-1 = null),
  ``video_duration``/``dwell_time`` float32 seconds (NaN = null).

**Tie rule.** The sort is stable: events of one user with the same ``ts`` keep their *source
order*, i.e. files in lexicographic order of their paths relative to the dataset folder, rows
in file order. Nothing else about input order matters.

**Queries.** "Events of user ``u`` strictly before time ``T``" is ``range_before(u, T)`` ->
``(start, end)``, one binary search over ``ts[offsets[u]:offsets[u+1]]`` (O(log n)).
``ends_before(users, cutoffs)`` answers a whole batch at once (a Numba loop); the paper's 24h
gap is ``cutoff = request_ts - DEFAULT_GAP_MS`` (:mod:`dv365.durations`).

**Building.** :meth:`TimelineStore.open` streams the dataset's record batches through
:class:`~dv365.data.validate.DatasetReader` (so everything is validated on read; a bad row
raises) into preallocated ``.npy`` memory maps sized from the Parquet footers. Data already
sorted by (user, ts) -- what the generator and the importers write -- is detected on the fly
and not sorted again; otherwise one stable sort gives the order (an argsort of a combined
(user, ts) int64 key when the ranges fit 63 bits, else ``np.lexsort``), applied column by
column.

**Cache.** Each built store is a folder ``<cache_dir>/<key>/`` of ``.npy`` files plus
``manifest.json``, written to a temporary folder and renamed into place (atomic; concurrent
builders of the same key are harmless, see :mod:`dv365.atomic_write`). ``cache_dir`` defaults
to ``$DV365_CACHE_DIR`` or ``~/.cache/dv365/timelines``. The key is a BLAKE2b hash of the store
format version and, for each file in source order, its relative path and the BLAKE2b digest of
its bytes: the source's content, so a copied dataset reuses the cache and any changed byte
rebuilds it. Hashing costs one extra read of the files (about 1 GB/s), so each file's digest
is remembered under a fingerprint of its stat (absolute path, size, mtime and ctime in ns,
inode), the way git's index avoids rehashing (and, like git, not trusted for a file changed in
the same clock tick as the note); a file rewritten in place with its stat forged back would be
missed, which is the price of not reading every byte on each open.

**Appended files.** The key is one hash over the files in source order, so the key of every
prefix of the file list comes with it (:func:`prefix_keys`). When the dataset's entry is
missing but the entry of its first ``k`` files is cached (a data folder that grew by files
named after the old ones, as ``dv365 pipeline`` collects them), only the new files are read
and validated, and merged into the cached arrays (:func:`_merge_into`): the result is,
array for array, what a full build writes, in one pass over the columns instead of a read
of every file. An older file changed, or a new one sorting before the old, leaves no cached
prefix and means a full build.

An entry is checked on every open before it is served: its manifest, its metadata against the
source's, each array's dtype and length, the CSR structure (offsets from 0 up to the number
of events, increasing; user ids strictly ascending), and each array file's BLAKE2b digest
against the one the manifest recorded at build time, remembered per stat like the source
digests (so a full read only after the file changed). A broken entry is discarded and rebuilt
with a one-line note on stderr.

**Memory at the paper's scale.** A stored event costs 44 bytes (ts 8, three ids 24, four codes
4, two floats 8) plus 8 bytes of ``user_id`` while building: 5.2 GB of memory-mapped files for
10^8 events, paged by the OS rather than held. Sorted input needs only one record batch of
anonymous memory (about 100 MB). Unsorted input adds the sort: the combined key (8 B/event),
the order (8 B/event) and the stable sort's work arrays (about 8 B/event), then one gathered
column at a time (8 B/event): about 3.2 GB at 10^8 events, well within 24 GiB. One user with
70,000 events is 3 MB of columns; nothing is per user except ``offsets``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numba
import numpy as np

from dv365.atomic_write import discard, staged_directory, write_text
from dv365.console import progress, stderr
from dv365.data.folder import dataset_files
from dv365.data.metadata import read_meta
from dv365.data.schema import EVENT_COLUMN_DTYPES, DatasetMeta
from dv365.data.validate import DatasetReader
from dv365.errors import DataError, NotFoundError

STORE_VERSION = 1
CACHE_ENV = "DV365_CACHE_DIR"
MANIFEST = "manifest.json"

_BOUNDARY_CHUNK = 1 << 24
_CSR = ("user_ids", "offsets")


def default_cache_dir() -> Path:
    """``$DV365_CACHE_DIR`` or ``~/.cache/dv365/timelines``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "dv365" / "timelines"


class TimelineStore:
    """Per-user CSR arrays of an events dataset (see the module docstring for the layout).

    Columns are also attributes: ``store.ts``, ``store.action``, ...
    """

    def __init__(self, user_ids: np.ndarray, offsets: np.ndarray,
                 columns: dict[str, np.ndarray], meta: DatasetMeta, *,
                 path: Path | None = None, source: Path | None = None):
        if offsets.shape != (len(user_ids) + 1,) or (len(offsets) and offsets[0] != 0):
            raise ValueError("offsets must have U + 1 entries starting at 0")
        n = int(offsets[-1])
        for name, dtype in EVENT_COLUMN_DTYPES.items():
            col = columns[name]
            if col.dtype != dtype or col.shape != (n,):
                raise ValueError(f"column {name!r} must be {dtype} [{n}], got "
                                 f"{col.dtype} {col.shape}")
        self.user_ids = user_ids
        self.offsets = offsets
        self.columns = dict(columns)
        self.meta = meta
        self.path = path
        self.source = source
        self.opened = "given"
        """How :meth:`open` got the arrays: ``cached`` (an entry of this content),
        ``extended`` (the cached entry of the dataset's first files, and the new files
        read), ``built`` (every file read); ``given`` when constructed directly."""

    def __getattr__(self, name: str) -> np.ndarray:
        columns = self.__dict__.get("columns")
        if columns is not None and name in columns:
            return columns[name]
        raise AttributeError(name)

    def __repr__(self) -> str:
        return (f"TimelineStore({self.num_users:,} users, {self.num_events:,} events, "
                f"source={str(self.source)!r})")

    # ------------------------------------------------------------------ sizes and lookups

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_events(self) -> int:
        return int(self.offsets[-1])

    def history_lengths(self) -> np.ndarray:
        """Events per user, int64 [U]."""
        return np.diff(self.offsets)

    def user_index(self, user_id: int) -> int:
        """The index of ``user_id`` (NotFoundError if the store does not hold it)."""
        i = int(np.searchsorted(self.user_ids, user_id))
        if i == len(self.user_ids) or self.user_ids[i] != user_id:
            raise self._missing(user_id)
        return i

    def user_indices(self, user_ids: np.ndarray, *, missing: int | None = None) -> np.ndarray:
        """Indices of many users at once (int64). Unknown users raise NotFoundError, or get
        ``missing`` (e.g. ``-1``) when it is given."""
        user_ids = np.asarray(user_ids, dtype=np.int64)
        idx = np.searchsorted(self.user_ids, user_ids)
        found = idx < len(self.user_ids)
        found[found] = self.user_ids[idx[found]] == user_ids[found]
        if not found.all():
            if missing is None:
                raise self._missing(int(user_ids[np.argmin(found)]))
            idx = np.where(found, idx, missing)
        return idx.astype(np.int64, copy=False)

    def _missing(self, user_id: int) -> NotFoundError:
        if self.num_users:
            hint = (f"the store holds {self.num_users:,} users with ids "
                    f"{int(self.user_ids[0])}..{int(self.user_ids[-1])}")
        else:
            hint = "the store holds no users"
        return NotFoundError(f"user {user_id} is not in the timeline store",
                             where=str(self.source) if self.source else None, hint=hint)

    def user_events(self, user_index: int) -> dict[str, np.ndarray]:
        """All events of one user, as column slices (views, no copy)."""
        s, e = self.offsets[user_index], self.offsets[user_index + 1]
        return {name: col[s:e] for name, col in self.columns.items()}

    # ------------------------------------------------------------------ cutoff queries

    def range_before(self, user_index: int, cutoff_ms: int) -> tuple[int, int]:
        """``(start, end)``: the user's events with ``ts < cutoff_ms`` are ``start:end``."""
        if not 0 <= user_index < self.num_users:
            raise IndexError(f"user index {user_index} out of range [0, {self.num_users})")
        s, e = int(self.offsets[user_index]), int(self.offsets[user_index + 1])
        return s, s + int(np.searchsorted(self.ts[s:e], cutoff_ms, side="left"))

    def ends_before(self, user_indices: np.ndarray, cutoffs_ms: np.ndarray | int) -> np.ndarray:
        """For each query, the end of that user's events strictly before its cutoff (int64).

        The events are ``offsets[u]:end``. ``cutoffs_ms`` may be one value for all.
        """
        users = np.ascontiguousarray(user_indices, dtype=np.int64)
        cutoffs = np.ascontiguousarray(np.broadcast_to(np.asarray(cutoffs_ms, dtype=np.int64),
                                                       users.shape))
        if users.size and (users.min() < 0 or users.max() >= self.num_users):
            bad = users[(users < 0) | (users >= self.num_users)][0]
            raise IndexError(f"user index {bad} out of range [0, {self.num_users})")
        out = np.empty(users.shape, dtype=np.int64)
        csr_ends_before(self.offsets, self.ts, users.ravel(), cutoffs.ravel(), out.ravel())
        return out

    # ------------------------------------------------------------------ open / build

    @classmethod
    def open(cls, source: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
             rebuild: bool = False,
             advance: Callable[[int], object] | None = None) -> "TimelineStore":
        """The store of an events dataset (or a data folder's ``events/``), from the cache
        when its content was built before, else extended from the cached store of its first
        files, else built now; cached either way (``store.opened`` says which).

        ``advance(n)`` hears the rows read while building; without it a progress bar shows
        on stderr (when stderr is a terminal). ``rebuild`` ignores a cached entry.
        """
        source = _events_folder(Path(source))
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        files, keys = prefix_keys(source, cache)
        entry = cache / keys[-1]
        if not rebuild and entry.exists():
            try:
                return _opened(_load(entry, source, cache), "cached")
            except BrokenEntry as broken:
                stderr.print(f"note: {entry}: the cached timeline store is broken ({broken}); "
                             "rebuilding it", highlight=False, markup=False, soft_wrap=True)
        # Broken or a rebuild was asked for: move it away first so the fresh build can take
        # its name.
        discard(entry)
        if not rebuild:
            parent = _cached_prefix(source, cache, keys)
            if parent is not None:
                try:
                    return _opened(cls.extend(parent, source, files[parent.file_count:],
                                              entry, advance=advance), "extended")
                except _NotAnExtension:
                    pass  # the full build reads every file and reports what is wrong
        return _opened(cls.build(source, entry, advance=advance), "built")

    @classmethod
    def load(cls, entry: str | os.PathLike) -> "TimelineStore":
        """Map a cache entry folder (``<cache_dir>/<key>``) read-only, after the checks of
        :meth:`open` (all but the comparison with the source's metadata)."""
        entry = Path(entry)
        try:
            return _load(entry, None, entry.parent)
        except BrokenEntry as broken:
            raise NotFoundError("not a usable timeline store cache entry", where=str(entry),
                                hint=str(broken)) from None

    @classmethod
    def build(cls, source: str | os.PathLike, entry: str | os.PathLike, *,
              advance: Callable[[int], object] | None = None) -> "TimelineStore":
        """Build the store of ``source`` into the folder ``entry`` (atomically) and map it."""
        source, entry = Path(source), Path(entry)
        reader = DatasetReader(source, "events")
        return _write_entry(entry, source, reader, "building timeline store",
                            functools.partial(_build_from, reader, source), advance)

    @classmethod
    def extend(cls, parent: "CachedPrefix", source: str | os.PathLike,
               files: list[Path], entry: str | os.PathLike, *,
               advance: Callable[[int], object] | None = None) -> "TimelineStore":
        """Build the store of ``source`` into ``entry`` from the cached store of its first
        files (``parent``) and the rows of the ``files`` that follow them, read and
        validated alone: the arrays are those :meth:`build` would write (see
        :func:`_merge_into`), without reading the parent's files again.
        """
        source, entry = Path(source), Path(entry)
        reader = DatasetReader(source, "events", files=files)
        if reader.meta != parent.store.meta:
            raise _NotAnExtension
        return _write_entry(entry, source, reader, "extending timeline store",
                            functools.partial(_merge_into, parent, reader, source), advance)


def _opened(store: TimelineStore, how: str) -> TimelineStore:
    store.opened = how
    return store


@numba.njit(cache=True, nogil=True)
def csr_ends_before(offsets, ts, users, cutoffs, out):  # pragma: no cover - compiled
    """``out[q]``: the end of user ``users[q]``'s events with ``ts < cutoffs[q]`` in CSR
    arrays (``offsets``, ``ts`` sorted within each user), one binary search per query.

    Compiled and unchecked: every ``users[q]`` must lie in ``[0, len(offsets) - 1)``.
    """
    for q in range(users.size):
        u = users[q]
        lo = offsets[u]
        hi = offsets[u + 1]
        c = cutoffs[q]
        while lo < hi:
            mid = (lo + hi) >> 1
            if ts[mid] < c:
                lo = mid + 1
            else:
                hi = mid
        out[q] = lo


def _events_folder(path: Path) -> Path:
    if path.is_dir() and (path / "events").is_dir():
        return path / "events"
    return path


# ------------------------------------------------------------------ content key

def content_key(source: Path, cache_dir: Path) -> str:
    """The cache key of a dataset: a hash of the format version and its files' content."""
    return prefix_keys(source, cache_dir)[1][-1]


def prefix_keys(source: Path, cache_dir: Path) -> tuple[list[Path], list[str]]:
    """The dataset's files in source order and, for each ``k``, the content key of the
    dataset made of its first ``k + 1`` files (the last is :func:`content_key`): the key is
    one hash over the files in order, so every prefix's key comes on the way."""
    files = dataset_files(source)
    h = hashlib.blake2b(digest_size=20)
    h.update(f"dv365-timeline-store-v{STORE_VERSION}".encode())
    keys = []
    for file in files:
        rel = file.name if file == source else file.relative_to(source).as_posix()
        h.update(rel.encode() + b"\0" + file_digest(file, cache_dir).encode() + b"\0")
        keys.append(h.hexdigest())
    return files, keys


def file_digest(file: Path, cache_dir: Path, *, computed: str | None = None) -> str:
    """A file's BLAKE2b-160 (hex), remembered in ``cache_dir`` per path, size, mtime, ctime
    and inode so an unchanged file is read once. ``computed``: the digest of these bytes,
    known already (hashed as they were written), remembered without reading the file.

    As in git's index, a remembered digest is trusted only when the file's timestamps are
    older than the note's: a change in the same clock tick as the hashing keeps the stat.
    """
    st = file.stat()
    stamp = (f"{file.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}"
             f"\0{st.st_ino}")
    memo = cache_dir / "digests" / hashlib.blake2b(stamp.encode(), digest_size=16).hexdigest()
    if computed is None:
        try:
            if max(st.st_mtime_ns, st.st_ctime_ns) < memo.stat().st_mtime_ns:
                return memo.read_text().strip()
        except OSError:
            pass
    digest = computed if computed is not None else _blake2b(file)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        write_text(memo, digest)
    except OSError:
        pass  # a read-only cache still works, it only hashes again next time
    return digest


def _blake2b(file: Path) -> str:
    with open(file, "rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=20)).hexdigest()


# ------------------------------------------------------------------ build and load

def _write_entry(entry: Path, source: Path, reader: DatasetReader, description: str,
                 write: Callable[[Path, Callable[[int], object]], dict[str, str]],
                 advance: Callable[[int], object] | None) -> TimelineStore:
    """Write a store into the folder ``entry`` atomically (``write(out, advance)`` fills
    ``out`` and returns the arrays' digests) and map it; a progress bar named
    ``description`` over ``reader``'s rows when no ``advance`` is given."""
    if entry.exists() and not (entry / MANIFEST).exists():
        discard(entry)  # a stale or broken entry (complete ones have their manifest)
    # A concurrent builder's complete entry (same content key) wins the race.
    with staged_directory(entry, if_exists="keep") as stage:
        if advance is not None:
            digests = write(stage, advance)
        else:
            with progress(description, reader.num_rows) as bar:
                digests = write(stage, bar)
    # The arrays were hashed as they were written: no need to read them again, unless
    # another builder's entry won.
    return _load(entry, source, entry.parent, built=digests)


def _read_rows(reader: DatasetReader, source: Path, user: np.ndarray,
               columns: dict[str, np.ndarray], advance: Callable[[int], object]) -> bool:
    """Copy every checked row of ``reader`` into ``user`` and ``columns`` (sized from the
    footers), in source order; whether the rows came sorted by (user, ts)."""
    n = reader.num_rows
    pos = 0
    is_sorted = True
    last_u, last_t = np.iinfo(np.int64).min, np.iinfo(np.int64).min
    for batch in reader.batches(advance=advance):
        c = batch.columns
        m = len(c["ts"])
        if m == 0:
            continue
        u, t = c["user_id"], c["ts"]
        if is_sorted:
            is_sorted = (u[0] > last_u or (u[0] == last_u and t[0] >= last_t)) and bool(
                np.all((u[1:] > u[:-1]) | ((u[1:] == u[:-1]) & (t[1:] >= t[:-1]))))
            last_u, last_t = u[-1], t[-1]
        user[pos:pos + m] = u
        for name, arr in columns.items():
            arr[pos:pos + m] = c[name]
        pos += m
    if pos != n:
        raise DataError(f"read {pos} rows but the footers promise {n}", where=str(source))
    return is_sorted


def _build_from(reader: DatasetReader, source: Path, out: Path,
                advance: Callable[[int], object]) -> dict[str, str]:
    """Build the store of every file of ``reader`` into ``out``; the arrays' digests."""
    started = time.perf_counter()
    n = reader.num_rows
    arrays = {name: _alloc(out / f"{name}.npy", dtype, n)
              for name, dtype in EVENT_COLUMN_DTYPES.items()}
    user = _alloc(out / "user_id.npy", np.dtype(np.int64), n)
    is_sorted = _read_rows(reader, source, user, arrays, advance)
    if not is_sorted:
        order = _stable_order(user, arrays["ts"])
        user[:] = user[order]
        for arr in arrays.values():
            arr[:] = arr[order]
        del order
    user_ids, offsets = _boundaries(user)
    np.save(out / "user_ids.npy", user_ids)
    np.save(out / "offsets.npy", offsets)
    for arr in arrays.values():
        if isinstance(arr, np.memmap):
            arr.flush()
    del arrays, user
    (out / "user_id.npy").unlink()
    return _write_manifest(out, source, files=len(reader.files), num_users=len(user_ids),
                           num_events=n, meta=reader.meta, started=started,
                           sorted_on_read=bool(is_sorted))


def _write_manifest(out: Path, source: Path, *, files: int, num_users: int, num_events: int,
                    meta: DatasetMeta, started: float, **facts: object) -> dict[str, str]:
    """Hash the arrays written into ``out`` and write its manifest; return the digests."""
    # What a full check of the arrays would cost on every open is paid once: each file's
    # digest, compared once per file stat (file_digest) when the entry is opened.
    names = (*_CSR, *EVENT_COLUMN_DTYPES)
    # hashlib lets go of the GIL on large buffers: the arrays hash side by side
    with ThreadPoolExecutor(max_workers=min(len(names), os.cpu_count() or 1)) as pool:
        digests = dict(zip(names, pool.map(lambda name: _blake2b(out / f"{name}.npy"), names)))
    manifest = {
        "format": "dv365-timeline-store",
        "version": STORE_VERSION,
        "source": str(source.resolve()),
        "files": files,
        "num_users": int(num_users),
        "num_events": int(num_events),
        **facts,
        "build_seconds": round(time.perf_counter() - started, 3),
        "columns": {name: dtype.str for name, dtype in EVENT_COLUMN_DTYPES.items()},
        "meta": json.loads(meta.model_dump_json()),
        "digests": digests,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return digests


# ------------------------------------------------------------------ extending a cached prefix

def discard_ancestors(store: TimelineStore) -> list[str]:
    """Remove from the cache the entries ``store`` was extended from, and theirs: the stores
    of a grown data folder's earlier states, which nothing opens again unless the folder is
    put back as it was (it is then built again). The keys removed, newest first."""
    removed: list[str] = []
    if store.path is None:
        return removed
    cache = store.path.parent
    key = _parent_key(store.path)
    while key is not None and key not in removed:
        entry = cache / key
        older = _parent_key(entry)
        if entry.is_dir():
            discard(entry)
            removed.append(key)
        key = older
    return removed


def _parent_key(entry: Path) -> str | None:
    """The key of the entry ``entry`` was extended from (None for a full build)."""
    try:
        parent = json.loads((entry / MANIFEST).read_text()).get("extended_from") or {}
    except (OSError, ValueError, AttributeError):
        return None
    key = parent.get("entry") if isinstance(parent, dict) else None
    # a key is a hex digest: a manifest never names a path outside the cache
    return key if isinstance(key, str) and re.fullmatch(r"[0-9a-f]{40}", key) else None


@dataclass(frozen=True)
class CachedPrefix:
    """The cached store of a dataset's first ``file_count`` files (its entry's key)."""

    store: TimelineStore
    file_count: int
    key: str


class _NotAnExtension(Exception):
    """The new files cannot extend the cached prefix (their metadata differs)."""


def _cached_prefix(source: Path, cache_dir: Path, keys: list[str]) -> CachedPrefix | None:
    """The longest proper prefix of the dataset's files with a usable cached store."""
    for count in range(len(keys) - 1, 0, -1):
        entry = cache_dir / keys[count - 1]
        if not (entry / MANIFEST).exists():
            continue
        try:
            return CachedPrefix(_load(entry, source, cache_dir), count, keys[count - 1])
        except BrokenEntry:
            continue  # an older prefix may still serve; the full build is the last resort
    return None


def _merge_into(parent: CachedPrefix, reader: DatasetReader, source: Path, out: Path,
                advance: Callable[[int], object]) -> dict[str, str]:
    """Write the store of the parent's rows followed by ``reader``'s rows into ``out``.

    :meth:`TimelineStore.build` stably sorts all rows by (user, ts) in source order. The
    parent's arrays are that sort of its files' rows, and the new files come after them in
    source order, so the same result is the new rows stably sorted, each inserted after
    the parent's events of its user with ``ts`` at or before its own: one binary search a
    new row (:func:`csr_ends_before` at ``ts + 1``) and one pass over every column, the
    parent's files not read again.
    """
    started = time.perf_counter()
    old = parent.store
    n = reader.num_rows
    new = {name: np.empty(n, dtype=dtype) for name, dtype in EVENT_COLUMN_DTYPES.items()}
    user = np.empty(n, dtype=np.int64)
    if not _read_rows(reader, source, user, new, advance):
        order = _stable_order(user, new["ts"])
        user = user[order]
        new = {name: arr[order] for name, arr in new.items()}
    # Where each new row goes among the parent's events, then its place in the whole.
    index = np.searchsorted(old.user_ids, user)
    known = index < old.num_users
    known[known] = old.user_ids[index[known]] == user[known]
    at = old.offsets[index]  # a new user starts where the next larger user does
    # A row at or after its user's last cached event goes at the end of that user's
    # events (a new day: nearly every row); the others take the binary search.
    last = old.ts[old.offsets[1:] - 1] if old.num_users else np.empty(0, dtype=np.int64)
    rows = np.flatnonzero(known)
    tail = new["ts"][rows] >= last[index[rows]]
    at[rows[tail]] = old.offsets[index[rows[tail]] + 1]
    inside = rows[~tail]
    if inside.size:
        ends = np.empty(inside.size, dtype=np.int64)
        csr_ends_before(old.offsets, old.ts, index[inside], new["ts"][inside] + 1, ends)
        at[inside] = ends
    dest = at + np.arange(n, dtype=np.int64)
    total = old.num_events + n
    kept = np.ones(total, dtype=bool)
    kept[dest] = False
    for name, dtype in EVENT_COLUMN_DTYPES.items():
        arr = _alloc(out / f"{name}.npy", dtype, total)
        if total:
            arr[kept] = old.columns[name]
            arr[dest] = new[name]
        if isinstance(arr, np.memmap):
            arr.flush()
        del arr
    del kept
    new_users, new_counts = np.unique(user, return_counts=True)
    user_ids = np.union1d(old.user_ids, new_users).astype(np.int64)
    counts = np.zeros(len(user_ids), dtype=np.int64)
    counts[np.searchsorted(user_ids, old.user_ids)] += np.diff(old.offsets)
    counts[np.searchsorted(user_ids, new_users)] += new_counts
    np.save(out / "user_ids.npy", user_ids)
    np.save(out / "offsets.npy", np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
    return _write_manifest(
        out, source, files=parent.file_count + len(reader.files), num_users=len(user_ids),
        num_events=total, meta=reader.meta, started=started,
        extended_from={"entry": parent.key, "files": parent.file_count,
                       "events": old.num_events, "new_events": n})


def _stable_order(user: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """The stable (user, ts) order: ties keep source order.

    When the user id range and the time span fit 63 bits together (e.g. 2^28 users over a
    year of milliseconds), one stable argsort of a combined int64 key (faster than
    ``np.lexsort`` over the two columns, docs/benchmarks.md); otherwise lexsort.
    """
    u_lo, u_hi = int(user.min()), int(user.max())
    t_lo, t_hi = int(ts.min()), int(ts.max())
    t_bits = (t_hi - t_lo).bit_length()
    if (u_hi - u_lo).bit_length() + t_bits <= 63:
        key = user - np.int64(u_lo)
        key <<= t_bits
        key |= ts - np.int64(t_lo)
        return np.argsort(key, kind="stable")
    return np.lexsort((ts, user))


def _alloc(path: Path, dtype: np.dtype, n: int) -> np.ndarray:
    if n == 0:  # a zero-length file cannot be memory-mapped
        np.save(path, np.empty(0, dtype=dtype))
        return np.empty(0, dtype=dtype)
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n,))


def _boundaries(user: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique users and CSR offsets of a sorted user column, in bounded-memory chunks."""
    n = len(user)
    starts = [np.zeros(1 if n else 0, dtype=np.int64)]
    for lo in range(1, n, _BOUNDARY_CHUNK):
        hi = min(n, lo + _BOUNDARY_CHUNK)
        starts.append(np.flatnonzero(user[lo:hi] != user[lo - 1:hi - 1]) + lo)
    first = np.concatenate(starts)
    user_ids = np.asarray(user[first], dtype=np.int64)
    offsets = np.append(first, n).astype(np.int64)
    return user_ids, offsets


class BrokenEntry(Exception):
    """A cache entry that must not be served; the message says why, in a few words."""


def _load(entry: Path, source: Path | None, cache_dir: Path, *,
          built: dict[str, str] | None = None) -> TimelineStore:
    """Map a cache entry after checking it (:class:`BrokenEntry` if anything is off).

    Checked on every open: the manifest, the metadata against the source's (when
    ``source`` is given), each array's dtype and length, the CSR structure (offsets from 0
    up to the number of events, each user owning at least one event; user ids strictly
    ascending) and each file's digest against the manifest's (a hash only when the file's
    stat changed, :func:`file_digest`; skipped when they are the ``built`` ones, just
    computed from these files).
    """
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BrokenEntry(f"unreadable {MANIFEST}: {type(exc).__name__}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "dv365-timeline-store" \
            or manifest.get("version") != STORE_VERSION:
        raise BrokenEntry(f"{MANIFEST} is not of a version {STORE_VERSION} store")
    digests = manifest.get("digests")
    names = (*_CSR, *EVENT_COLUMN_DTYPES)
    if not isinstance(digests, dict) or sorted(digests) != sorted(names):
        raise BrokenEntry(f"{MANIFEST} lacks the arrays' digests")
    try:
        meta = DatasetMeta.model_validate(manifest["meta"])
        num_users, num_events = int(manifest["num_users"]), int(manifest["num_events"])
    except (KeyError, TypeError, ValueError):
        raise BrokenEntry(f"{MANIFEST} has no valid metadata or counts") from None
    if source is not None and meta != read_meta(dataset_files(source)[0]):
        raise BrokenEntry("its metadata differs from the source's")
    arrays = {}
    for name in names:
        try:
            arrays[name] = np.load(entry / f"{name}.npy", mmap_mode="r")
        except (OSError, ValueError, EOFError):
            raise BrokenEntry(f"{name}.npy is not a readable array") from None
    user_ids, offsets = arrays.pop("user_ids"), arrays.pop("offsets")
    problem = _csr_problem(user_ids, offsets, num_users, num_events)
    if problem is not None:
        raise BrokenEntry(problem)
    if built != digests:
        for name in names:
            if file_digest(entry / f"{name}.npy", cache_dir) != digests[name]:
                raise BrokenEntry(f"{name}.npy does not match its digest")
    else:  # just built and hashed: the next open need not read them again
        for name in names:
            file_digest(entry / f"{name}.npy", cache_dir, computed=digests[name])
    try:
        return TimelineStore(user_ids, offsets, arrays, meta, path=entry,
                             source=source if source is not None else Path(manifest["source"]))
    except (ValueError, KeyError) as exc:
        raise BrokenEntry(str(exc)) from None


def _csr_problem(user_ids: np.ndarray, offsets: np.ndarray, num_users: int,
                 num_events: int) -> str | None:
    """What is wrong with cached CSR arrays of ``num_users`` users and ``num_events``
    events, or None."""
    if user_ids.dtype != np.int64 or user_ids.shape != (num_users,):
        return f"user_ids.npy is not int64 [{num_users}]"
    if offsets.dtype != np.int64 or offsets.shape != (num_users + 1,):
        return f"offsets.npy is not int64 [{num_users + 1}]"
    if offsets[0] != 0 or offsets[-1] != num_events:
        return f"offsets.npy does not run from 0 to {num_events}"
    if offsets.min() < 0 or offsets.max() > num_events:
        return f"offsets.npy points outside the {num_events} events"
    if not np.all(offsets[1:] > offsets[:-1]):
        return "offsets.npy is not increasing"
    if not np.all(user_ids[1:] > user_ids[:-1]):
        return "user_ids.npy is not strictly ascending"
    return None
