"""Writing Parquet dataset folders.

Every command that produces data writes inside :func:`dv365.atomic_write.staged_directory`
(a hidden staging folder renamed into place only when everything succeeded), so an
interrupted or failed run never leaves a half-written dataset behind and never destroys the
previous one unless asked to.

Every page carries a CRC checksum (``write_page_checksum``), which readers verify
(:func:`dv365.data.metadata.open_parquet`): a flipped bit in stored data is refused on read
instead of being read as a different value.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


DEFAULT_ROWS_PER_FILE = 8_000_000
DEFAULT_ROW_GROUP_SIZE = 1_000_000
# What every Parquet file dv365 writes carries, whatever else its writer tunes.
CHECKSUMS = {"write_page_checksum": True}


class DatasetWriter:
    """Appends record batches to a Parquet dataset folder, rolling files by row count.

    Files are named ``part-00000.parquet``, ``part-00001.parquet``, ... and all carry
    ``schema`` (including its ``dv365`` metadata) and page checksums. Use inside
    :func:`~dv365.atomic_write.staged_directory`.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        schema: pa.Schema,
        *,
        rows_per_file: int = DEFAULT_ROWS_PER_FILE,
        row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
        compression: str = "zstd",
        parquet_options: dict | None = None,
    ):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.rows_per_file = rows_per_file
        self.row_group_size = row_group_size
        self.compression = compression
        # Extra pq.ParquetWriter keywords (encodings, statistics, dictionary columns) for
        # writers that tune throughput, such as the generator.
        self.parquet_options = {**(parquet_options or {}), **CHECKSUMS}
        self.rows_written = 0
        self.files: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_file = 0

    def _open_next(self) -> None:
        self._close_current()
        path = self.folder / f"part-{len(self.files):05d}.parquet"
        self._writer = pq.ParquetWriter(
            path, self.schema, compression=self.compression, **self.parquet_options
        )
        self.files.append(path)
        self._rows_in_file = 0

    def _close_current(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        """Append rows; ``data`` must have the writer's schema (metadata aside)."""
        table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
        if not table.schema.equals(self.schema, check_metadata=False):
            table = table.cast(self.schema)
        start = 0
        while start < table.num_rows:
            if self._writer is None or self._rows_in_file >= self.rows_per_file:
                self._open_next()
            take = min(table.num_rows - start, self.rows_per_file - self._rows_in_file)
            self._writer.write_table(table.slice(start, take), row_group_size=self.row_group_size)
            self._rows_in_file += take
            self.rows_written += take
            start += take

    def close(self) -> None:
        """Finish the last file; an empty dataset still gets one file carrying the schema."""
        if not self.files:
            self._open_next()
        self._close_current()

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._close_current() if exc_type else self.close()
