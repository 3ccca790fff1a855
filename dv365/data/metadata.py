"""Reading a dv365 Parquet file's footer: its row count, schema and ``dv365`` metadata.

The one place where metadata problems are worded (a DataError naming the file), used by the
folder layout, validation and the commands that only need a dataset's declaration.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from dv365.data.schema import METADATA_KEY, DatasetMeta
from dv365.errors import DataError


def metadata_problem(file: Path, message: str, hint: str | None = None) -> DataError:
    """A problem with a file as a whole (its footer or metadata), naming the file."""
    return DataError(message, where=str(file), hint=hint)


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
        raise metadata_problem(file, f"invalid dv365 metadata: {loc}: {first['msg']}") from None
    return meta


def read_footer(file: Path) -> tuple[int, pa.Schema]:
    """Row count and Arrow schema (with metadata) from one file's footer."""
    try:
        md = pq.read_metadata(file)
        return md.num_rows, md.schema.to_arrow_schema()
    except (pa.ArrowException, OSError) as exc:
        raise metadata_problem(file, f"not a readable Parquet file ({one_line(exc)})") from None


def one_line(exc: BaseException) -> str:
    """An exception's message on one line, at most 200 characters."""
    text = re.sub(r"\s+", " ", str(exc)).strip()
    return text[:200] if text else type(exc).__name__
