"""Validation on read: every events or examples batch dv365 reads is checked first.

:class:`DatasetReader` opens a dataset (see :mod:`dv365.data.folder`), checks every file's
footer (Parquet at all, ``dv365`` metadata, columns and types) and then streams record batches
converted to dv365's internal form and checked row by row -- vectorized over each batch, never
a Python loop over rows. Files are streamed one at a time (``ParquetFile.iter_batches``, in
source order) rather than through a multi-file dataset scanner, so that every row keeps its
file and row number for the error message. Errors name the file, the row (0-based index within that file, as in
``pq.read_table(file).slice(row, 1)``) and the column::

    data/events/part-00003.parquet: row 1234: column 'dwell_time': error: negative value -3.0

Internal form (what :meth:`DatasetReader.batches` yields and the timeline store keeps):

* ids (``user_id``, ``media_id``, ``author_id``, ``topic_id``) as ``int64``;
* times (``ts``, ``request_ts``) as ``int64`` milliseconds since the epoch, UTC;
* enumerated columns as ``int8`` codes into the declared vocabulary (``timeline``: 0 explicit,
  1 implicit), ``-1`` for null;
* seconds, dense features and regression labels as ``float32`` (NaN for null); binary labels
  as ``int8``.

Accepted physical types (anything else is a "mistyped column" error):

* ids: any signed integer, or unsigned up to 32 bits (converted to ``int64`` losslessly);
  ``uint64`` and floats are refused, since they cannot be ids without loss or guessing.
* times: ``timestamp`` of unit s, ms, us or ns, with any time zone or none. Arrow stores
  zoned timestamps as UTC instants, so the zone changes nothing; zone-less ones are read as
  UTC. Sub-millisecond precision is floored to milliseconds. Plain integers are refused:
  their unit would be a guess.
* enums: ``string``/``large_string`` or ``dictionary<*, string|large_string>``; a column of
  Arrow type ``null`` (all null) is accepted where nulls are allowed (``action``).
* seconds, dense features, regression labels: any float or integer type (``float64`` is
  narrowed to ``float32``; a value that does not fit is reported as non-finite).
* binary labels: any integer type or ``bool``, values 0 or 1.
* Columns the schema does not name are ignored (and not written by a repair).

Row rules (each a *reason*, named ``"<column>: <rule>"`` in reports):

* no nulls in required columns; ``action`` required on explicit rows and null on implicit
  rows; ``dwell_time`` required on implicit rows (it may be null on explicit rows);
  ``video_duration`` may be null (photos);
* durations and dwell times finite and not negative; dense features and regression labels
  finite; binary labels 0 or 1;
* times within the sane range of :mod:`dv365.data.schema` (1990-01-01 .. 2100-01-01 UTC);
* enum values declared in the dataset's vocabulary (the message suggests the closest one).

Nothing is dropped silently. By default the first bad row raises :class:`DataError`. With
``repair=True`` the reader drops bad rows and counts them in a :class:`RowReport`; a row
that breaks several rules is counted once, under the first rule it breaks (rules are in
schema column order), so the per-reason counts add up to the rows dropped. Problems of a
whole file (not Parquet, metadata, columns, types) cannot be repaired and always raise.

Damaged files: pages are read with checksum verification
(:func:`~dv365.data.metadata.open_parquet`), one row group at a time, and each row group must
yield the rows its footer declares. A failed read raises a DataError naming the file, row
group and column; a dictionary index past its dictionary names the row too. Neither can be
repaired.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dv365.data.folder import DatasetKind, dataset_files
from dv365.data.metadata import (
    READ_ERRORS,
    metadata_problem,
    open_parquet,
    read_footer,
    read_meta,
    read_problem,
)
from dv365.data.schema import (
    EVENT_FIELDS,
    EXAMPLE_FIELDS,
    EXPLICIT,
    IMPLICIT,
    TS_MAX_MS,
    TS_MIN_MS,
    TS_TYPE,
    DatasetMeta,
    FieldSpec,
    dense_column,
    events_schema,
    examples_schema,
    label_column,
)
from dv365.errors import DataError

BATCH_ROWS = 1 << 20
_MS_PER_UNIT = {"s": 1000, "ms": 1, "us": None, "ns": None}
_UNITS_PER_MS = {"us": 1000, "ns": 1_000_000}
_SMALL_UNSIGNED = (pa.uint8(), pa.uint16(), pa.uint32())


# ----------------------------------------------------------------------------- problems

@dataclass(frozen=True)
class Problem:
    """One bad row (or a whole file when ``row`` is None): where, which rule, what."""

    file: Path
    row: int | None
    column: str | None
    reason: str
    message: str

    @property
    def where(self) -> str:
        parts = [str(self.file)]
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.column is not None:
            parts.append(f"column {self.column!r}")
        return ": ".join(parts)

    def error(self) -> DataError:
        return DataError(self.message, where=self.where)

    def __str__(self) -> str:
        return self.error().render()


@dataclass
class RowReport:
    """What reading a dataset found: rows read and kept, bad rows per reason."""

    rows_read: int = 0
    rows_kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    first: dict[str, Problem] = field(default_factory=dict)

    @property
    def rows_dropped(self) -> int:
        return self.rows_read - self.rows_kept

    @property
    def ok(self) -> bool:
        return self.rows_dropped == 0

    def problems(self) -> list[Problem]:
        """The first problem of each reason, in order of appearance."""
        return sorted(self.first.values(), key=lambda p: (str(p.file), p.row or 0))


# ----------------------------------------------------------------------------- columns

@dataclass(frozen=True)
class _Column:
    """One column to read: its spec and how it is converted and checked."""

    name: str
    role: str  # id | time | enum | seconds | number | binary
    nullable: bool
    values: tuple[str, ...] = ()  # enum vocabulary


def _columns(kind: DatasetKind, meta: DatasetMeta) -> list[_Column]:
    fields = EVENT_FIELDS if kind == "events" else EXAMPLE_FIELDS
    cols = [_Column(f.name, _role(f), f.nullable, meta.values(f.name) if f.kind == "enum" else ())
            for f in fields.values()]
    if kind == "examples":
        cols += [_Column(dense_column(d), "number", False) for d in meta.dense]
        cols += [_Column(label_column(t), "binary" if k == "binary" else "number", False)
                 for t, k in meta.tasks.items()]
    return cols


def _role(f: FieldSpec) -> str:
    return {"id": "id", "time": "time", "enum": "enum", "seconds": "seconds"}.get(f.kind, "number")


def _type_ok(col: _Column, t: pa.DataType) -> bool:
    if pa.types.is_null(t):
        return col.nullable
    if col.role == "id":
        return pa.types.is_signed_integer(t) or t in _SMALL_UNSIGNED
    if col.role == "time":
        return pa.types.is_timestamp(t)
    if col.role == "enum":
        if pa.types.is_dictionary(t):
            t = t.value_type
        return pa.types.is_string(t) or pa.types.is_large_string(t)
    if col.role == "binary":
        return pa.types.is_integer(t) or pa.types.is_boolean(t)
    return pa.types.is_floating(t) or pa.types.is_integer(t)


_EXPECTED = {
    "id": "int64",
    "time": "timestamp[ms, tz=UTC]",
    "enum": "string or dictionary<string>",
    "seconds": "float32 seconds",
    "number": "float32",
    "binary": "int8 0/1",
}


# ----------------------------------------------------------------------------- conversions

class _Failure:
    """Rows of a batch that break one rule, and how to word the first of them.

    A ``damaged`` failure shows the file itself is corrupt: it is raised even when repairing,
    since the file's other values cannot be trusted either.
    """

    __slots__ = ("column", "reason", "mask", "describe", "damaged")

    def __init__(self, column: str, reason: str, mask: np.ndarray,
                 describe: Callable[[int], str], damaged: bool = False):
        self.column, self.reason, self.mask, self.describe = column, reason, mask, describe
        self.damaged = damaged


def _valid(arr: pa.Array) -> np.ndarray | None:
    """Validity mask, or None when the array has no nulls (the common case, no work)."""
    if arr.null_count == 0:
        return None
    return arr.is_valid().to_numpy(zero_copy_only=False)


def _null_failure(col: _Column, valid: np.ndarray | None, out: list[_Failure]) -> None:
    if valid is not None and not col.nullable:
        out.append(_Failure(col.name, "null", ~valid, lambda i: "null value in a required column"))


def _to_int64(arr: pa.Array) -> np.ndarray:
    if arr.null_count:
        arr = arr.fill_null(0)
    return arr.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _convert_id(col, arr, out):
    _null_failure(col, _valid(arr), out)
    return _to_int64(arr)


def _convert_time(col, arr, out):
    valid = _valid(arr)
    _null_failure(col, valid, out)
    unit = arr.type.unit
    raw = _to_int64(arr.view(pa.int64()))
    if unit == "s":
        # Clip before scaling so absurd values cannot overflow; they are out of range anyway.
        limit = np.iinfo(np.int64).max // 1000
        ms = np.clip(raw, -limit, limit) * 1000
    elif unit == "ms":
        ms = raw
    else:
        ms = np.floor_divide(raw, _UNITS_PER_MS[unit])
    bad = (ms < TS_MIN_MS) | (ms >= TS_MAX_MS)
    if valid is not None:
        bad &= valid
    if bad.any():
        def describe(i: int) -> str:
            return (f"timestamp {raw[i]} ({unit} since 1970) is outside the sane range "
                    f"1990-01-01 .. 2100-01-01 UTC")
        out.append(_Failure(col.name, "out of range", bad, describe))
    return ms


def _convert_enum(col, arr, out):
    if pa.types.is_null(arr.type):
        return np.full(len(arr), -1, dtype=np.int8)
    valid = _valid(arr)
    if pa.types.is_dictionary(arr.type):
        strings = arr.dictionary
        lut = _lookup(strings, col.values)
        idx = _to_int64(arr.indices)
        past = (idx < 0) | (idx >= len(strings))
        if valid is not None:
            past &= valid
        if past.any():
            out.append(_Failure(col.name, "dictionary index out of range", past,
                                lambda i: f"dictionary index {int(idx[i])} is past the "
                                          f"column's dictionary of {len(strings)} values "
                                          f"(the file is damaged)", damaged=True))
            return np.full(len(arr), -1, dtype=np.int8)
        codes = lut[idx] if len(lut) else np.full(len(arr), -2, dtype=np.int8)
        raw_value = lambda i: strings[int(idx[i])].as_py()  # noqa: E731
    else:
        codes = _lookup(arr, col.values)
        raw_value = lambda i: arr[i].as_py()  # noqa: E731
    if valid is not None:
        codes[~valid] = -1
    if not col.nullable:
        null = codes == -1
        if null.any():
            out.append(_Failure(col.name, "null", null,
                                lambda i: "null value in a required column"))
    undeclared = codes == -2
    if undeclared.any():
        def describe(i: int) -> str:
            value = raw_value(i)
            text = f"value {value!r} is not declared in the vocabulary of {col.name!r}"
            close = difflib.get_close_matches(value, col.values, n=1)
            if close:
                return f"{text}; did you mean {close[0]!r}?"
            return f"{text} ({', '.join(col.values) or 'empty'})"
        out.append(_Failure(col.name, "not declared", undeclared, describe))
    return codes


def _lookup(strings: pa.Array, values: tuple[str, ...]) -> np.ndarray:
    """Code of each string in ``values``; -2 where undeclared (and for nulls, fixed later)."""
    value_set = pa.array(values, type=strings.type)
    index = pc.index_in(strings, value_set=value_set)
    return index.fill_null(-2).to_numpy(zero_copy_only=False).astype(np.int8)


def _convert_float(col, arr, out):
    if pa.types.is_null(arr.type):
        return np.full(len(arr), np.nan, dtype=np.float32)
    valid = _valid(arr)
    _null_failure(col, valid, out)
    raw = arr.to_numpy(zero_copy_only=False)  # nulls become NaN (floats) or float64 (ints)
    x = raw.astype(np.float32, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        nonfinite = ~np.isfinite(x)
        if valid is not None:
            nonfinite &= valid
        if nonfinite.any():
            out.append(_Failure(col.name, "non-finite", nonfinite,
                                lambda i: f"value {float(raw[i])} does not fit float32"
                                if np.isfinite(raw[i]) else f"non-finite value {float(raw[i])}"))
        if col.role == "seconds":
            negative = x < 0
            if negative.any():
                out.append(_Failure(col.name, "negative", negative,
                                    lambda i: f"negative value {float(raw[i])!r}"))
    if valid is not None and not x.flags.writeable:
        x = x.copy()
    if valid is not None:
        x[~valid] = np.nan
    return x


def _convert_binary(col, arr, out):
    valid = _valid(arr)
    _null_failure(col, valid, out)
    if pa.types.is_boolean(arr.type):
        arr = arr.cast(pa.int8())
    raw = _to_int64(arr)
    bad = (raw != 0) & (raw != 1)
    if valid is not None:
        bad &= valid
    if bad.any():
        out.append(_Failure(col.name, "not 0 or 1", bad,
                            lambda i: f"binary label value {int(raw[i])} is not 0 or 1"))
    return raw.astype(np.int8)


_CONVERT = {
    "id": _convert_id,
    "time": _convert_time,
    "enum": _convert_enum,
    "seconds": _convert_float,
    "number": _convert_float,
    "binary": _convert_binary,
}


def _event_rules(c: dict[str, np.ndarray], out: list[_Failure]) -> None:
    """Rules across columns: what an explicit and an implicit row must and must not carry."""
    explicit = c["timeline"] == EXPLICIT
    implicit = c["timeline"] == IMPLICIT
    action = c["action"]
    missing = explicit & (action < 0)
    if missing.any():
        out.append(_Failure("action", "null on an explicit row", missing,
                            lambda i: "null action on an explicit row (explicit rows are "
                                      "actions)"))
    extra = implicit & (action >= 0)
    if extra.any():
        out.append(_Failure("action", "set on an implicit row", extra,
                            lambda i: "action on an implicit row (implicit rows are "
                                      "impressions; their action must be null)"))
    no_dwell = implicit & np.isnan(c["dwell_time"])
    if no_dwell.any():
        # A NaN value was already reported as non-finite; this is the null case.
        out.append(_Failure("dwell_time", "null on an implicit row", no_dwell,
                            lambda i: "null dwell_time on an implicit row (impressions need "
                                      "their dwell time)"))


# ----------------------------------------------------------------------------- reader

@dataclass
class CheckedBatch:
    """Rows of one file in internal form; ``rows`` are their 0-based indices in ``file``."""

    file: Path
    rows: np.ndarray | slice
    columns: dict[str, np.ndarray]

    @property
    def num_rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


class DatasetReader:
    """Opens an events or examples dataset, checks every footer, streams checked batches.

    Opening reads only footers: each file must be Parquet, carry ``dv365`` metadata of the
    expected ``kind`` equal to the first file's, and hold every required column in an
    accepted type. ``num_rows`` is the total from the footers.
    """

    def __init__(self, path: str | os.PathLike, kind: DatasetKind, *,
                 batch_rows: int = BATCH_ROWS, files: Sequence[Path] | None = None):
        """``files``: only these files of the dataset at ``path`` (in the order given, source
        order for a build), e.g. the files a cached timeline store has not seen yet."""
        self.path = Path(path)
        self.kind = kind
        self.batch_rows = batch_rows
        self.files = list(files) if files is not None else dataset_files(self.path)
        if not self.files:
            raise ValueError("a dataset reader needs at least one file")
        footers = [read_footer(file) for file in self.files]
        self.meta = self._check_meta([schema for _, schema in footers])
        self.columns = _columns(kind, self.meta)
        self._check_vocab()
        for file, (_, schema) in zip(self.files, footers):
            self._check_columns(file, schema)
        self.file_rows: list[int] = [rows for rows, _ in footers]
        self.num_rows = sum(self.file_rows)

    def _check_meta(self, schemas: list[pa.Schema]) -> DatasetMeta:
        first = read_meta(self.files[0], schemas[0])
        if first.kind != self.kind:
            raise metadata_problem(self.files[0], f"this is an {first.kind} dataset, "
                                               f"expected {self.kind}")
        for file, schema in zip(self.files[1:], schemas[1:]):
            meta = read_meta(file, schema)
            if meta != first:
                raise metadata_problem(file, f"dv365 metadata differs from that of "
                                          f"{self.files[0]}",
                                    "all files of a dataset must declare the same vocabulary")
        return first

    def _check_vocab(self) -> None:
        for col in self.columns:
            if col.role == "enum" and col.name != "timeline" and col.name not in self.meta.vocab:
                raise metadata_problem(self.files[0], f"dv365 metadata declares no vocabulary "
                                                   f"for column {col.name!r}")

    def _check_columns(self, file: Path, schema: pa.Schema) -> None:
        for col in self.columns:
            found = schema.get_all_field_indices(col.name)
            if len(found) > 1:
                raise DataError(f"duplicated column: {len(found)} columns are named "
                                f"{col.name!r}", where=f"{file}: column {col.name!r}",
                                hint="keep one of them")
            if not found:
                raise DataError("missing column", where=f"{file}: column {col.name!r}",
                                hint=f"{self.kind} need {_EXPECTED[col.role]} column "
                                     f"{col.name!r}")
            idx = found[0]
            t = schema.field(idx).type
            if not _type_ok(col, t):
                hint = None
                if col.role == "time" and pa.types.is_integer(t):
                    hint = "store times as timestamp[ms, tz=UTC]; a bare integer's unit is a guess"
                raise DataError(f"mistyped column: expected {_EXPECTED[col.role]}, found {t}",
                                where=f"{file}: column {col.name!r}", hint=hint)

    def _raw_batches(self, file: Path) -> Iterator[pa.RecordBatch]:
        """The file's record batches, page checksums verified; a failed read is located.

        Read one row group at a time: a damaged page header (which no checksum covers) that
        claims an extra value then cannot shift the values of the next row group.
        """
        pf = open_parquet(file)
        columns = [c.name for c in self.columns]
        try:
            for group in range(pf.num_row_groups):
                stream = pf.iter_batches(batch_size=self.batch_rows, row_groups=[group],
                                         columns=columns)
                rows, expected = 0, pf.metadata.row_group(group).num_rows
                while True:
                    try:
                        batch = next(stream)
                    except StopIteration:
                        break
                    except READ_ERRORS as exc:
                        raise _locate_read_failure(file, group, columns, exc) from None
                    rows += batch.num_rows
                    yield batch
                if rows != expected:  # a damaged column can end the stream early, silently
                    short = ValueError(f"read {rows} rows of the {expected} the footer declares")
                    raise _locate_read_failure(file, group, columns, short)
        finally:
            pf.close()

    def check_batch(self, batch: pa.RecordBatch) -> tuple[dict[str, np.ndarray], list[_Failure]]:
        """Convert one record batch to internal form; return the rules it breaks."""
        failures: list[_Failure] = []
        converted: dict[str, np.ndarray] = {}
        for col in self.columns:
            arr = batch.column(col.name)
            converted[col.name] = _CONVERT[col.role](col, arr, failures)
        if self.kind == "events":
            _event_rules(converted, failures)
        return converted, failures

    def batches(self, *, repair: bool = False, report: RowReport | None = None,
                advance: Callable[[int], object] | None = None) -> Iterator[CheckedBatch]:
        """Checked batches in source order.

        Without ``repair`` the first bad row raises its :class:`DataError`. With ``repair``
        bad rows are left out and counted in ``report`` (which also keeps the first problem
        of each reason). ``advance(n)`` is called with the rows read (progress bars).
        """
        report = report if report is not None else RowReport()
        for file in self.files:
            start = 0
            for batch in self._raw_batches(file):
                n = batch.num_rows
                columns, failures = self.check_batch(batch)
                rows: np.ndarray | slice = slice(start, start + n)
                report.rows_read += n
                if failures:
                    damaged = [f for f in failures if f.damaged]
                    if damaged or not repair:
                        raise _first_problem(file, start, damaged or failures).error()
                    keep = _account(file, start, failures, report)
                    columns = {k: v[keep] for k, v in columns.items()}
                    rows = np.flatnonzero(keep) + start
                report.rows_kept += len(next(iter(columns.values()))) if columns else n
                start += n
                if advance is not None:
                    advance(n)
                yield CheckedBatch(file, rows, columns)


def _locate_read_failure(file: Path, group: int, columns: list[str],
                         exc: BaseException) -> DataError:
    """The located error for a failed read of row group ``group`` of ``file``.

    Reads each column of the row group alone to find the first that fails; only on this
    error path, so the common read stays one stream per row group.
    """
    try:
        pf = pq.ParquetFile(file, page_checksum_verification=True)
    except READ_ERRORS:
        return read_problem(file, exc, row_group=group)
    try:
        for name in columns:
            try:
                pf.read_row_group(group, columns=[name])
            except READ_ERRORS as cause:
                return read_problem(file, cause, row_group=group, column=name)
        return read_problem(file, exc, row_group=group)
    finally:
        pf.close()


def _first_problem(file: Path, start: int, failures: list[_Failure]) -> Problem:
    firsts = [(int(np.argmax(f.mask)), k) for k, f in enumerate(failures)]
    i, k = min(firsts)
    f = failures[k]
    return Problem(file, start + i, f.column, f"{f.column}: {f.reason}", f.describe(i))


def _account(file: Path, start: int, failures: list[_Failure], report: RowReport) -> np.ndarray:
    """Count each bad row once, under the first rule it breaks; return the rows to keep."""
    bad = np.zeros(len(failures[0].mask), dtype=bool)
    for f in failures:
        reason = f"{f.column}: {f.reason}"
        new = f.mask & ~bad
        count = int(np.count_nonzero(new))
        if count:
            report.dropped[reason] = report.dropped.get(reason, 0) + count
        if reason not in report.first:
            i = int(np.argmax(f.mask))
            report.first[reason] = Problem(file, start + i, f.column, reason, f.describe(i))
        bad |= f.mask
    return ~bad


def validate_dataset(path: str | os.PathLike, kind: DatasetKind, *,
                     advance: Callable[[int], object] | None = None) -> tuple[DatasetReader,
                                                                               RowReport]:
    """Read a whole dataset, counting bad rows per reason instead of stopping at the first.

    Whole-file problems raise :class:`DataError`; row problems are in the report.
    """
    reader = DatasetReader(path, kind)
    report = RowReport()
    for _ in reader.batches(repair=True, report=report, advance=advance):
        pass
    return reader, report


# ----------------------------------------------------------------------------- writing back

def to_record_batch(columns: dict[str, np.ndarray], meta: DatasetMeta) -> pa.RecordBatch:
    """Internal-form columns back to a record batch of the dataset's canonical schema."""
    schema = events_schema(meta) if meta.kind == "events" else examples_schema(meta)
    arrays = []
    for f in schema:
        x = columns[f.name]
        if pa.types.is_dictionary(f.type):
            indices = pa.array(x.astype(np.int32), mask=x < 0)
            arrays.append(pa.DictionaryArray.from_arrays(indices,
                                                         pa.array(meta.values(f.name),
                                                                  pa.string())))
        elif f.type == TS_TYPE:
            arrays.append(pa.array(x.astype(np.int64)).view(TS_TYPE))
        elif pa.types.is_floating(f.type):
            arrays.append(pa.array(x, type=f.type, mask=np.isnan(x) if f.nullable else None))
        else:
            arrays.append(pa.array(x, type=f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def repair_dataset(src: str | os.PathLike, dst: str | os.PathLike, kind: DatasetKind, *,
                   advance: Callable[[int], object] | None = None) -> RowReport:
    """Write the good rows of ``src`` to the dataset folder ``dst`` (canonical schema).

    ``dst`` is written in place: call inside :func:`~dv365.atomic_write.staged_directory`.
    """
    from dv365.data.dataset import DatasetWriter

    reader = DatasetReader(src, kind)
    report = RowReport()
    schema = events_schema(reader.meta) if kind == "events" else examples_schema(reader.meta)
    with DatasetWriter(dst, schema) as writer:
        for batch in reader.batches(repair=True, report=report, advance=advance):
            if batch.num_rows:
                writer.write(to_record_batch(batch.columns, reader.meta))
    return report
