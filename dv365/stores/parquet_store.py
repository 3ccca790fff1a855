"""The warehouse store, ``parquet://PATH``: every version a plain Parquet dataset.

Layout (docs/warehouse.md has the schema and how to query it)::

    PATH/state.json                   the state document (current version, history, pins)
    PATH/.lock                        flock'ed around every state update
    PATH/versions/<id>/               one published version: a Parquet dataset folder
        part-<shard>.parquet          user_id int64, record binary, checksum uint32
        _row_groups.parquet           the index: shard, row_group, low, high, rows
        _manifest.json                the snapshot's manifest
    PATH/staging/<id>/                a version being written (invisible to readers)
        _draft.json                   its draft manifest
        _shards/<shard>.json          one per completed shard (written atomically)
        part-<shard>.parquet          the shard's records

The manifest and the shard notes start with ``_`` so that Parquet readers (pyarrow, Spark,
DuckDB's hive discovery) skip them: ``versions/<id>/`` is a dataset as it is.

Each part is sorted by user id (``sorting_columns`` says so) and written in row groups of
about :data:`ROW_GROUP_BYTES`, with page checksums; reads verify them. A lookup reads only
the row groups that can hold the users asked for: the version's index (cached per
version, four numbers a row group) has each row group's smallest and largest user id,
recorded from the ids written (footer statistics carry no checksum, so they are not
trusted). A broken part file is a one-line :class:`~dv365.stores.base.StoreError` naming
the file, the row group and the column.

A user is written to one shard: a shard redone, or a user written twice in one shard,
leaves one record, but two shards holding the same user would both be kept.

Publishing builds ``versions/<id>/`` from hard links to the staged parts inside
:func:`~dv365.atomic_write.staged_directory` (one rename makes it appear) and then drops
the staging folder; the base class then makes it current by one atomic rewrite of
``state.json``. A kill at any point leaves the current version complete: the staging folder
survives until the version is in place, and is resumed (its completed shards kept) by the
next export of the same id.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dv365.atomic_write import atomic_path, discard, staged_directory, write_text
from dv365.data.metadata import one_line
from dv365.errors import DataError
from dv365.export.manifest import Manifest
from dv365.export.records import CHECKSUM_BYTES
from dv365.export.sink import ShardDone
from dv365.stores.base import State, StagedSnapshot, Store, StoreError, empty_state
from dv365.stores.uri import StoreUri

#: The columns of every part file.
SCHEMA = pa.schema([
    pa.field("user_id", pa.int64(), nullable=False),
    pa.field("record", pa.binary(), nullable=False),
    pa.field("checksum", pa.uint32(), nullable=False),
], metadata={"dv365": "snapshot part: record = codec payload || crc32(user_id LE8 || "
                      "payload) LE; checksum = that crc32"})

#: A version's index: every row group of its parts, with the user ids it holds.
ROW_GROUPS_SCHEMA = pa.schema([
    pa.field("shard", pa.int64(), nullable=False),
    pa.field("row_group", pa.int64(), nullable=False),
    pa.field("low", pa.int64(), nullable=False),
    pa.field("high", pa.int64(), nullable=False),
    pa.field("rows", pa.int64(), nullable=False),
])

#: About how many record bytes a row group holds: the unit a lookup reads (a smaller one
#: makes a one-user lookup cheaper and a scan slower; docs/warehouse.md has numbers).
ROW_GROUP_BYTES = 4 << 20
MIN_ROW_GROUP_ROWS = 256

#: Hidden files and folders a killed writer left are removed once untouched this long.
LEFTOVER_AGE_S = 3600.0

#: What pyarrow raises on a damaged file (a damaged footer can fail to decode as text).
_UNREADABLE = (pa.ArrowException, OSError, ValueError, IndexError)

MANIFEST = "_manifest.json"
ROW_GROUPS = "_row_groups.parquet"
DRAFT = "_draft.json"
SHARDS = "_shards"

_WRITE_OPTIONS = dict(
    write_page_checksum=True,
    write_page_index=True,
    write_statistics=True,
    use_dictionary=False,
    column_encoding={"user_id": "DELTA_BINARY_PACKED", "record": "PLAIN", "checksum": "PLAIN"},
    # records are codec output (int4 codes, floats): compressing them buys little and
    # costs every read; the sorted ids compress well
    compression={"user_id": "zstd", "record": "none", "checksum": "none"},
    sorting_columns=[pq.SortingColumn(0)],
)


def part_name(shard: int) -> str:
    return f"part-{shard:05d}.parquet"


def _records_table(user_ids: np.ndarray, records: np.ndarray) -> pa.Table:
    """A table of :data:`SCHEMA` for ``records`` (``uint8 [B, size]``), without copying the
    record bytes."""
    count, size = records.shape
    offsets = np.arange(0, (count + 1) * size, size, dtype=np.int32)
    data = np.ascontiguousarray(records).reshape(-1)
    record = pa.Array.from_buffers(pa.binary(), count,
                                   [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    crc = np.ascontiguousarray(records[:, -CHECKSUM_BYTES:]).view("<u4").reshape(-1)
    return pa.Table.from_arrays([pa.array(user_ids, pa.int64()), record, pa.array(crc)],
                                schema=SCHEMA)


@dataclass(frozen=True)
class _Groups:
    """The row groups of one version, sorted by their smallest user id."""

    files: tuple[Path, ...]
    file: np.ndarray
    """Index into ``files`` of each row group."""
    group: np.ndarray
    """The row group's index inside its file."""
    low: np.ndarray
    high: np.ndarray
    """Smallest and largest user id of each row group."""
    group_rows: np.ndarray
    rows: int
    disjoint: bool
    """Whether no two row groups' [low, high] ranges overlap (then one binary search finds
    a user's only candidate)."""


class ParquetStore(Store):
    """``parquet://PATH``: versions as Parquet datasets under ``PATH/versions/``.

    URI options: ``row_group_rows=N`` fixes the rows of a row group (default: about
    :data:`ROW_GROUP_BYTES` of records)."""

    def __init__(self, uri: StoreUri):
        super().__init__(uri)
        self.root = Path(uri.path)
        if self.root.exists() and not self.root.is_dir():
            raise self.error(f"{self.root} is not a folder",
                             hint="a parquet:// store is a folder of versions")
        options = uri.options
        try:
            self.row_group_rows = int(options["row_group_rows"]) \
                if "row_group_rows" in options else None
        except ValueError:
            raise self.error(f"row_group_rows={options['row_group_rows']!r} is not a "
                             "number") from None
        self._groups: dict[str, _Groups] = {}

    # ---------------------------------------------------------------------------- paths
    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    @property
    def staging_dir(self) -> Path:
        return self.root / "staging"

    def _relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    @contextmanager
    def writing(self, what: str) -> Iterator[None]:
        """Turn a failed write (a full disk, a read-only folder) into a one-line
        :class:`StoreError` saying what could not be done."""
        try:
            yield
        except StoreError:
            raise
        except (OSError, pa.ArrowException) as exc:
            raise self.error(f"cannot {what} ({one_line(exc)})",
                             hint="nothing current changed; make room or fix access and "
                                  "export again: a staged version resumes") from None

    def rows_per_group(self, record_size: int) -> int:
        if self.row_group_rows is not None:
            return max(1, self.row_group_rows)
        return max(MIN_ROW_GROUP_ROWS, ROW_GROUP_BYTES // record_size)

    # ---------------------------------------------------------------------------- state
    def _load_state(self) -> State:
        path = self.root / "state.json"
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return empty_state()
        except OSError as exc:
            raise self.error(f"cannot read state.json ({one_line(exc)})") from None
        try:
            state = json.loads(text)
            if not isinstance(state, dict) or set(empty_state()) - set(state):
                raise ValueError("not a dv365 state document")
        except ValueError as exc:
            raise self.error(f"state.json is unreadable ({one_line(exc)})",
                             hint="restore it from a backup, or promote a version again") \
                from None
        return state

    def _update_state(self, change: Callable[[State], State]) -> State:
        with self.writing("update state.json"):
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.root / ".lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
                state = change(self._load_state())
                write_text(self.root / "state.json", json.dumps(state, sort_keys=True))
        return state

    # ------------------------------------------------------------------------ manifests
    def _read_manifest(self, path: Path) -> Manifest | None:
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self.error(f"cannot read {self._relative(path)} ({one_line(exc)})") from None
        try:
            return Manifest.from_json(text, where=self._relative(path))
        except DataError as exc:
            raise self.error(f"{exc.where}: {exc.message}") from None

    def _load_manifest(self, version: str) -> Manifest | None:
        return self._read_manifest(self.versions_dir / version / MANIFEST)

    def _published(self) -> list[str]:
        if not self.versions_dir.is_dir():
            return []
        return sorted(p.name for p in self.versions_dir.iterdir()
                      if not p.name.startswith(".") and (p / MANIFEST).is_file())

    def _staged(self) -> list[Manifest]:
        if not self.staging_dir.is_dir():
            return []
        self._sweep()
        out = []
        for folder in sorted(self.staging_dir.iterdir()):
            draft = None if folder.name.startswith(".") else self._read_manifest(folder / DRAFT)
            if draft is not None:
                out.append(draft)
        return out

    def _sweep(self) -> None:
        """Remove what killed writers left: the staging folder of a version published
        already (a kill between its two steps), and hidden temporaries (pending parts,
        half-built or half-removed folders) untouched for :data:`LEFTOVER_AGE_S`; age, not
        process ids, so that a writer on another host sharing the folder is safe. Best
        effort: a reader without write access sweeps nothing."""
        try:
            self._sweep_leftovers()
        except OSError:
            pass

    def _sweep_leftovers(self) -> None:
        published = set(self._published())
        old = time.time() - LEFTOVER_AGE_S
        for temporary in self.root.glob(".state.json.*"):
            _remove_if_older(temporary, old)
        for parent in (self.staging_dir, self.versions_dir):
            if not parent.is_dir():
                continue
            for entry in parent.iterdir():
                if parent == self.staging_dir and entry.name in published:
                    discard(entry)
                elif entry.name.startswith("."):
                    _remove_if_older(entry, old)
                elif parent == self.staging_dir and entry.is_dir():
                    for inner in (*entry.glob(".*"), *entry.glob(f"{SHARDS}/.*")):
                        _remove_if_older(inner, old)

    def _stage(self, draft: Manifest) -> "ParquetStaged":
        folder = self.staging_dir / draft.id
        if not (folder / DRAFT).is_file():
            with self.writing(f"stage version {draft.id}"), \
                    staged_directory(folder, if_exists="keep") as stage:
                (stage / DRAFT).write_text(draft.to_json())
                (stage / SHARDS).mkdir()
        return ParquetStaged(self, draft, folder)

    def _drop(self, version: str) -> None:
        self._groups.pop(version, None)
        with self.writing(f"remove version {version}"):
            for parent in (self.versions_dir, self.staging_dir):
                discard(parent / version)

    def close(self) -> None:
        self._groups.clear()

    # ---------------------------------------------------------------------------- parts
    def _broken(self, path: Path, detail: str, exc: BaseException) -> StoreError:
        if isinstance(exc, FileNotFoundError):
            return self.error(f"{self._relative(path)} is missing",
                              hint="its version was removed (gc) while it was read, or the "
                                   "file was deleted")
        return self.error(f"broken part file {self._relative(path)}{detail}: {one_line(exc)}",
                          hint="restore the file, or drop the version and publish it again")

    def _open_part(self, path: Path) -> pq.ParquetFile:
        try:
            part = pq.ParquetFile(path, page_checksum_verification=True)
        except _UNREADABLE as exc:
            raise self._broken(path, "", exc) from None
        if part.schema_arrow.names[:2] != ["user_id", "record"]:
            raise self.error(f"{self._relative(path)} is not a dv365 snapshot part (columns "
                             f"{', '.join(part.schema_arrow.names)})")
        return part

    def _read_group(self, path: Path, part: pq.ParquetFile, group: int, column: str
                    ) -> pa.Array:
        where = f": row group {group}, column {column!r}"
        try:
            values = part.read_row_group(group, columns=[column]).column(0).combine_chunks()
            rows = part.metadata.row_group(group).num_rows
        except _UNREADABLE as exc:
            raise self._broken(path, where, exc) from None
        if len(values) != rows:  # a damaged page header can drop values without an error
            raise self.error(f"broken part file {self._relative(path)}{where}: "
                             f"{len(values):,} values in a row group of {rows:,} rows")
        return values

    def _group_ids(self, groups: _Groups, g: int, part: pq.ParquetFile) -> np.ndarray:
        """The user ids of row group ``g`` of ``groups``, checked against the index."""
        path, group = groups.files[groups.file[g]], int(groups.group[g])
        ids = self._read_group(path, part, group, "user_id").to_numpy()
        if len(ids) != groups.group_rows[g] or ids[0] != groups.low[g] \
                or ids[-1] != groups.high[g] or np.any(ids[1:] <= ids[:-1]):
            raise self.error(f"broken part file {self._relative(path)}: row group {group}: "
                             f"its user ids are not the {int(groups.group_rows[g]):,} from "
                             f"{groups.low[g]} to {groups.high[g]} the version's index lists")
        return ids

    def _footer_rows(self, path: Path) -> int:
        try:
            return pq.read_metadata(path).num_rows
        except _UNREADABLE as exc:
            raise self._broken(path, "", exc) from None

    def _row_groups(self, version: str) -> _Groups:
        """The row groups of a published version, from its ``_row_groups.parquet`` (read
        once, then cached: published versions never change).

        The ranges come from the ids as they were written, not from the part footers:
        a footer has no checksum, and a damaged min/max there would make a lookup skip a
        row group and miss its users silently."""
        cached = self._groups.get(version)
        if cached is not None:
            return cached
        path = self.versions_dir / version / ROW_GROUPS
        try:
            table = pq.read_table(path, page_checksum_verification=True)
            columns = {name: table.column(name).to_numpy() for name in ROW_GROUPS_SCHEMA.names}
        except (*_UNREADABLE, KeyError) as exc:
            raise self._broken(path, "", exc) from None
        if len({len(c) for c in columns.values()}) > 1:
            raise self.error(f"broken index {self._relative(path)}: columns of unequal length")
        rows = int(columns["rows"].sum())
        users = self.manifest(version).users
        if rows != users:
            raise self.error(f"version {version}: its row groups hold {rows:,} records, its "
                             f"manifest {users:,}", hint="a part file was replaced")
        shards, file = np.unique(columns["shard"], return_inverse=True)
        order = np.argsort(columns["low"], kind="stable")
        low, high = columns["low"][order], columns["high"][order]
        groups = _Groups(tuple(self.versions_dir / version / part_name(int(s)) for s in shards),
                         file[order], columns["row_group"][order].astype(np.int64), low, high,
                         columns["rows"][order].astype(np.int64), rows,
                         bool(np.all(high[:-1] < low[1:])))
        self._groups[version] = groups
        return groups

    def _completed_shards(self, folder: Path) -> dict[int, ShardDone]:
        """The shards of the staged version in ``folder`` whose part is in place."""
        done = {}
        notes = folder / SHARDS
        for note in sorted(notes.glob("*.json")) if notes.is_dir() else ():
            try:
                shard = ShardDone(**json.loads(note.read_bytes())["shard"])
            except (OSError, ValueError, TypeError, KeyError) as exc:
                raise self.error(f"{self._relative(note)} is unreadable "
                                 f"({one_line(exc)})") from None
            if (folder / part_name(shard.index)).is_file():
                done[shard.index] = shard
        return done

    # ---------------------------------------------------------------------------- reads
    def _count(self, version: str) -> int:
        if (self.versions_dir / version / MANIFEST).is_file():
            return self._row_groups(version).rows
        folder = self.staging_dir / version
        return sum(self._footer_rows(folder / part_name(s))
                   for s in self._completed_shards(folder))

    def _read_raw(self, version: str, user_ids: np.ndarray) -> list[bytes | None]:
        out: list[bytes | None] = [None] * len(user_ids)
        if not len(user_ids):
            return out
        groups = self._row_groups(version)
        if not len(groups.low):
            return out
        ids = np.asarray(user_ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        wanted = ids[order]
        # candidates[g] = the slice of `wanted` that row group g can hold
        if groups.disjoint:
            at = np.searchsorted(groups.low, wanted, side="right") - 1
            inside = (at >= 0) & (wanted <= groups.high[np.maximum(at, 0)])
            needed = np.unique(at[inside])
            starts = np.searchsorted(wanted, groups.low[needed], side="left")
            ends = np.searchsorted(wanted, groups.high[needed], side="right")
        else:
            starts = np.searchsorted(wanted, groups.low, side="left")
            ends = np.searchsorted(wanted, groups.high, side="right")
            needed = np.flatnonzero(ends > starts)
            starts, ends = starts[needed], ends[needed]
        for f in np.unique(groups.file[needed]):
            path = groups.files[f]
            part = self._open_part(path)
            for k in np.flatnonzero(groups.file[needed] == f):
                g = needed[k]
                stored = self._group_ids(groups, g, part)
                asked = wanted[starts[k]:ends[k]]
                rows = np.minimum(np.searchsorted(stored, asked), len(stored) - 1)
                hit = stored[rows] == asked
                if not hit.any():
                    continue
                records = self._read_group(path, part, int(groups.group[g]), "record")
                values = records.take(pa.array(rows[hit])).to_pylist()
                for position, value in zip(order[starts[k]:ends[k]][hit].tolist(), values):
                    out[position] = value
        return out

    def _scan_raw(self, version: str, batch_size: int
                  ) -> Iterator[tuple[np.ndarray, list[bytes]]]:
        """Row groups in order of their smallest id; overlapping ones (parts that are not
        disjoint user ranges) are merged, holding one row group of each in memory."""
        groups = self._row_groups(version)
        parts: dict[int, pq.ParquetFile] = {}  # open parts an active row group is of
        active: list[list] = []  # [ids, records (list of bytes), offset, part]
        pending_ids: list[np.ndarray] = []
        pending_records: list[bytes] = []
        pending = 0
        next_group = 0

        def load(g: int) -> None:
            f = int(groups.file[g])
            path = groups.files[f]
            if f not in parts:
                parts[f] = self._open_part(path)
            ids = self._group_ids(groups, g, parts[f])
            records = self._read_group(path, parts[f], int(groups.group[g]), "record")
            active.append([ids, records.to_pylist(), 0, f])

        while active or next_group < len(groups.low):
            if not active:
                load(next_group)
                next_group += 1
            bound = min(int(a[0][-1]) for a in active)
            while next_group < len(groups.low) and groups.low[next_group] <= bound:
                load(next_group)
                next_group += 1
                bound = min(bound, int(active[-1][0][-1]))
            chunk_ids, chunk_records = [], []
            for a in active:
                end = int(np.searchsorted(a[0], bound, side="right"))
                chunk_ids.append(a[0][a[2]:end])
                chunk_records.extend(a[1][a[2]:end])
                a[2] = end
            active = [a for a in active if a[2] < len(a[0])]
            for f in set(parts) - {a[3] for a in active}:
                parts.pop(f).close()
            ids = np.concatenate(chunk_ids)
            if len(chunk_ids) > 1:
                order = np.argsort(ids, kind="stable")
                ids = ids[order]
                chunk_records = [chunk_records[i] for i in order.tolist()]
            pending_ids.append(ids)
            pending_records.extend(chunk_records)
            pending += len(ids)
            while pending >= batch_size or (pending and not active
                                             and next_group == len(groups.low)):
                all_ids = np.concatenate(pending_ids)
                yield all_ids[:batch_size], pending_records[:batch_size]
                pending_ids = [all_ids[batch_size:]]
                pending_records = pending_records[batch_size:]
                pending = len(pending_records)


class ParquetStaged(StagedSnapshot):
    """A version being written under ``PATH/staging/<id>/``.

    :meth:`write` appends to a hidden pending file, a row group at a time; :meth:`finish_shard`
    turns it into ``part-<shard>.parquet`` (sorted by user id, a user written twice kept
    once, the last write winning) and then notes the shard in ``_shards/<shard>.json``."""

    store: ParquetStore

    def __init__(self, store: ParquetStore, manifest: Manifest, folder: Path):
        super().__init__(store, manifest)
        self.folder = folder
        self.group_rows = store.rows_per_group(manifest.record_size)
        self._writer: pq.ParquetWriter | None = None
        self._pending: Path | None = None
        self._buffer: list[tuple[np.ndarray, np.ndarray]] = []
        self._buffered = 0
        self._last: int | None = None
        self._ordered = True

    def completed_shards(self) -> dict[int, ShardDone]:
        return self.store._completed_shards(self.folder)

    def write(self, user_ids: np.ndarray, records: np.ndarray) -> None:
        ids = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        records = np.asarray(records, dtype=np.uint8)
        if records.shape != (len(ids), self.manifest.record_size):
            raise ValueError(f"expected [{len(ids)}, {self.manifest.record_size}] records, got "
                             f"{records.shape}")
        if not len(ids):
            return
        if np.any(ids[1:] <= ids[:-1]) or (self._last is not None and ids[0] <= self._last):
            self._ordered = False
        self._last = int(ids[-1])
        self._buffer.append((ids, records))
        self._buffered += len(ids)
        if self._buffered >= self.group_rows:
            with self.store.writing(f"write version {self.manifest.id}"):
                try:
                    self._flush(final=False)  # what stays buffered is a fresh concatenation
                except BaseException:
                    self._reset()  # the shard is to be written again
                    raise
        else:  # kept past this call: the caller may reuse its arrays
            self._buffer[-1] = (ids.copy(), records.copy())

    def _flush(self, *, final: bool) -> None:
        if not self._buffer:
            return
        ids = np.concatenate([b[0] for b in self._buffer])
        records = np.concatenate([b[1] for b in self._buffer])
        whole = len(ids) if final else len(ids) - len(ids) % self.group_rows
        if self._writer is None:
            self._pending = self.folder / f".pending-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            self._writer = pq.ParquetWriter(self._pending, SCHEMA, **_WRITE_OPTIONS)
        for start in range(0, whole, self.group_rows):
            stop = min(start + self.group_rows, whole)
            self._writer.write_table(_records_table(ids[start:stop], records[start:stop]),
                                     row_group_size=self.group_rows)
        self._buffer = [(ids[whole:], records[whole:])] if whole < len(ids) else []
        self._buffered = len(ids) - whole

    def finish_shard(self, done: ShardDone) -> None:
        with self.store.writing(f"write version {self.manifest.id} shard {done.index}"):
            self._finish_shard(done)

    def _finish_shard(self, done: ShardDone) -> None:
        target = self.folder / part_name(done.index)
        try:
            self._flush(final=True)
            with atomic_path(target) as tmp:
                if self._writer is None:  # an empty shard
                    pq.write_table(_records_table(np.zeros(0, np.int64),
                                                  np.zeros((0, self.manifest.record_size),
                                                           np.uint8)), tmp, **_WRITE_OPTIONS)
                else:
                    self._writer.close()
                    if self._ordered:
                        os.replace(self._pending, tmp)
                    else:
                        self._rewrite_sorted(self._pending, tmp)
                meta = pq.read_metadata(tmp)
                rows = meta.num_rows
                if rows != done.users:
                    raise self.store.error(
                        f"version {self.manifest.id} shard {done.index}: {rows:,} users "
                        f"written, the shard says {done.users:,}", hint="write the shard again")
        finally:
            self._reset()
        write_text(self.folder / SHARDS / f"{done.index}.json",
                   json.dumps({"shard": asdict(done), "row_groups": _ranges(meta)}))

    def _rewrite_sorted(self, source: Path, target: Path) -> None:
        """``source`` sorted by user id, each user's last write kept, written to ``target``."""
        table = pq.read_table(source)
        source.unlink()
        ids = table.column("user_id").to_numpy()
        order = np.argsort(ids, kind="stable")
        keep = np.append(ids[order][1:] != ids[order][:-1], True)  # last of each run
        table = table.take(pa.array(order[keep]))
        with pq.ParquetWriter(target, SCHEMA, **_WRITE_OPTIONS) as writer:
            writer.write_table(table, row_group_size=self.group_rows)

    def _reset(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except (OSError, pa.ArrowException):
                pass  # its file is being thrown away
        if self._pending is not None:
            self._pending.unlink(missing_ok=True)
        self._writer, self._pending = None, None
        self._buffer, self._buffered = [], 0
        self._last, self._ordered = None, True

    def abort(self) -> None:
        self._reset()
        super().abort()

    def _store_manifest(self, manifest: Manifest) -> None:
        with self.store.writing(f"publish version {manifest.id}"):
            self._publish_folder(manifest)

    def _publish_folder(self, manifest: Manifest) -> None:
        versions = self.store.versions_dir
        if versions.is_dir():  # what a publish of this id killed mid-way left behind
            for leftover in versions.glob(f".{manifest.id}.partial-*"):
                shutil.rmtree(leftover, ignore_errors=True)
        shards, index = self.completed_shards(), []
        for shard in shards:
            note = json.loads((self.folder / SHARDS / f"{shard}.json").read_text())
            index += [(shard, group, *ranges) for group, ranges in enumerate(note["row_groups"])
                      if ranges[2]]
        table = pa.Table.from_arrays([pa.array([row[i] for row in index], pa.int64())
                                      for i in range(5)], schema=ROW_GROUPS_SCHEMA)
        with staged_directory(versions / manifest.id) as stage:
            for shard in shards:
                _link_or_copy(self.folder / part_name(shard), stage / part_name(shard))
            pq.write_table(table, stage / ROW_GROUPS, write_page_checksum=True)
            (stage / MANIFEST).write_text(manifest.to_json())
        discard(self.folder)


def _ranges(meta: pq.FileMetaData) -> list[tuple[int, int, int]]:
    """``(smallest id, largest id, rows)`` of each row group of a part just written (its
    statistics, trusted before the file leaves this process)."""
    out = []
    for g in range(meta.num_row_groups):
        info = meta.row_group(g)
        stats = info.column(0).statistics
        out.append((stats.min, stats.max, info.num_rows) if info.num_rows else (0, 0, 0))
    return out


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copyfile(source, target)


def _remove_if_older(path: Path, cutoff: float) -> None:
    try:
        if path.lstat().st_mtime >= cutoff:
            return
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
