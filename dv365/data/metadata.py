"""Opening a dv365 Parquet file: its footer (row count, schema, ``dv365`` metadata) and its pages.

The one place where a dataset file is opened and where footer and metadata problems are worded
(a DataError naming the file), used by the folder layout, validation and the commands that only
need a dataset's declaration. Files are opened with page checksum verification: a page whose
CRC does not match its bytes is refused when read (see :func:`read_problem`); pages written
without a checksum (by other tools) are read unverified.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from dv365.data.schema import METADATA_KEY, DatasetMeta
from dv365.errors import DataError

# What reading a damaged file can raise: Arrow's own errors and OSError (thrift, codecs, CRC),
# and ValueError / KeyError / IndexError from decoding a damaged footer's key-value metadata.
READ_ERRORS = (pa.ArrowException, OSError, ValueError, KeyError, IndexError)

_CHECKSUM_FAILED = "CRC checksum verification failed"
DAMAGED_HINT = "the file is damaged: restore it from a copy or write it again"


def metadata_problem(file: Path, message: str, hint: str | None = None) -> DataError:
    """A problem with a file as a whole (its footer or metadata), naming the file."""
    return DataError(message, where=str(file), hint=hint)


def read_problem(file: Path, exc: BaseException, *, row_group: int | None = None,
                 column: str | None = None) -> DataError:
    """The DataError for a failed read of ``file``'s pages, located as far as known.

    A page checksum mismatch is worded as such; anything else the Parquet reader raised is
    quoted on one line.
    """
    where = str(file)
    if row_group is not None:
        where += f": row group {row_group}"
    if column is not None:
        where += f": column {column!r}"
    if isinstance(exc, PermissionError):
        return DataError("cannot be read (permission denied)", where=where)
    if _CHECKSUM_FAILED in str(exc):
        return DataError("corrupt page: its checksum does not match its bytes", where=where,
                         hint=DAMAGED_HINT)
    return DataError(f"cannot read ({one_line(exc)})", where=where, hint=DAMAGED_HINT)


def open_parquet(file: Path) -> pq.ParquetFile:
    """``file`` opened for reading with page checksum verification (DataError if unreadable)."""
    try:
        return pq.ParquetFile(file, page_checksum_verification=True)
    except PermissionError:
        raise metadata_problem(file, "cannot be read (permission denied)") from None
    except READ_ERRORS as exc:
        raise metadata_problem(file, f"not a readable Parquet file ({one_line(exc)})") from None


def read_meta(file: Path, schema: pa.Schema | None = None) -> DatasetMeta:
    """The ``dv365`` metadata of one Parquet file (DataError naming the file if absent/bad)."""
    schema = read_footer(file)[1] if schema is None else schema
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise metadata_problem(file, "no dv365 metadata in the Parquet schema",
                            "write files with dv365.data.schema.events_schema/examples_schema")
    try:
        meta = DatasetMeta.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"]) or "metadata"
        msg = first["msg"].removeprefix("Value error, ")
        raise metadata_problem(file, f"invalid dv365 metadata: {loc}: {msg}") from None
    return meta


def read_footer(file: Path) -> tuple[int, pa.Schema]:
    """Row count and Arrow schema (with metadata) from one file's footer."""
    pf = open_parquet(file)
    try:
        schema = pf.schema_arrow
        # A footer written with the Arrow schema holds the declaration twice (the key-value
        # metadata and inside the serialized schema); no checksum covers the footer, but a
        # damaged copy then differs from the other.
        stored = (pf.metadata.metadata or {}).get(METADATA_KEY)
        declared = (schema.metadata or {}).get(METADATA_KEY)
        if stored is not None and declared is not None and stored != declared:
            raise metadata_problem(file, "the footer's two copies of the dv365 metadata differ",
                                   DAMAGED_HINT)
        _check_row_counts(file, pf.metadata)
        return pf.metadata.num_rows, schema
    except READ_ERRORS as exc:
        raise metadata_problem(file, f"not a readable Parquet file ({one_line(exc)})") from None
    finally:
        pf.close()


def _check_row_counts(file: Path, md: pq.FileMetaData) -> None:
    """The footer's row count is the sum of its row groups' (a damaged count would otherwise
    read as a shorter dataset without any error)."""
    total = sum(md.row_group(g).num_rows for g in range(md.num_row_groups))
    if total != md.num_rows:
        raise metadata_problem(file, f"the footer declares {md.num_rows} rows but its row "
                                     f"groups hold {total}", DAMAGED_HINT)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line, at most 200 characters."""
    text = re.sub(r"\s+", " ", str(exc)).strip()
    return text[:200] if text else type(exc).__name__
