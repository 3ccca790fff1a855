"""Reading delimited text logs (CSV, TSV, GroupLens ``::``) into typed Arrow columns.

The delimiter of a file is sniffed from its first lines (:func:`sniff_format`) unless the user
forces one (:func:`parse_delimiter`); a UTF-8 byte order mark and CRLF line ends are accepted.

Raw logs are large, so the happy path is one multi-threaded ``pyarrow.csv`` read of just the
columns asked for. Only when that read fails (or a value is missing) is the file read again,
single-threaded and as text, to find the first offending line, so every error names
``file:line`` without slowing down good files.

Line numbers assume one record per line (no quoted newlines), which holds for every log format
dv365 imports; blank lines keep their numbers and are skipped.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Collection

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from dv365.data.importers.columns import require_columns
from dv365.errors import DataError, UsageError

# GroupLens ".dat" files separate fields with "::"; we rewrite it to this byte, which does not
# occur in their text, so that pyarrow's single-character CSV parser can read them.
_DOUBLE_COLON_SUBSTITUTE = "\x1f"

# The delimiters a log may use, in the order a tie is decided; ":" alone is not one.
DELIMITERS = (",", "\t", ";", "|", "::")
# Spellings a shell user can type for a delimiter (``--delimiter '\t'`` passes backslash-t).
_DELIMITER_NAMES = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
# Enough lines to see a file's field count settle, little enough to read in a blink.
_SNIFF_BYTES = 1 << 16
# The UTF-8 byte order mark Excel writes; pyarrow skips it in UTF-8 files, not in Latin-1 ones.
_BOM = b"\xef\xbb\xbf"

_INTEGER_TEXT = r"^\s*[-+]?[0-9]+(\.0*)?\s*$"
_FLOAT_TEXT = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"


@dataclass(frozen=True)
class TextFormat:
    """How a delimited log file is laid out.

    ``names`` gives the column names of a file without a header row; ``delimiter`` ``"::"``
    selects the GroupLens ``.dat`` layout.
    """

    delimiter: str = ","
    header: bool = True
    names: tuple[str, ...] | None = None
    quoting: bool = True
    encoding: str = "utf-8"

    @property
    def double_colon(self) -> bool:
        return self.delimiter == "::"


@dataclass(frozen=True)
class TextTable:
    """Typed columns read from a text file, and the way back to the file's line numbers."""

    path: Path
    table: pa.Table
    first_line: int
    kept_rows: np.ndarray | None  # original row index of each kept row; None: all rows kept

    def line_of(self, row: int) -> int:
        """The 1-based line number in the file of row ``row`` of :attr:`table`."""
        original = row if self.kept_rows is None else int(self.kept_rows[row])
        return self.first_line + original

    def where(self, row: int) -> str:
        return f"{self.path}:{self.line_of(row)}"

    def fail(self, row: int, message: str, hint: str | None = None) -> DataError:
        """A :class:`DataError` for row ``row`` (the caller raises it)."""
        return DataError(message, where=self.where(row), hint=hint)


def parse_delimiter(text: str) -> str:
    """The delimiter a user asked for: one character, ``::``, ``\\t`` (as a shell passes
    ``'\t'``) or a name (``tab``, ``comma``, ``semicolon``, ``pipe``).

    Raises :class:`UsageError` for anything else.
    """
    value = _DELIMITER_NAMES.get(text.lower(), text)
    if value == "::" or (len(value) == 1 and value not in '"\r\n'):
        return value
    raise UsageError(f"delimiter {text!r} is not one character or '::'", where="--delimiter",
                     hint="for example ',', '\\t' (or tab), ';', '|' or '::'")


def sniff_format(path: Path, fmt: TextFormat, wanted: Collection[str] = ()) -> TextFormat:
    """``fmt`` with the delimiter of ``path`` among :data:`DELIMITERS`, read from its first lines.

    With a header, the delimiter that splits it into the most of the ``wanted`` column names
    wins; without one, the delimiter that splits every line into ``len(fmt.names)`` fields.
    Next comes a delimiter that splits every sampled line into the same number (more than one)
    of fields. Ties, and files where nothing fits (their errors then name the columns), keep
    ``fmt.delimiter``.
    """
    lines = _sample_lines(Path(path), fmt)
    if not lines:
        return fmt

    def score(delimiter: str) -> tuple[int, bool]:
        rows = _split(lines, delimiter, fmt.quoting)
        counts = {len(fields) for fields in rows}
        steady = len(counts) == 1 and counts.pop() > 1
        if fmt.header:
            names = {name.strip().strip('"') for name in rows[0]}
            return sum(column in names for column in wanted), steady
        fits = steady and len(rows[0]) == len(fmt.names or ())
        return int(fits), steady

    candidates = (fmt.delimiter, *(d for d in DELIMITERS if d != fmt.delimiter))
    best = max(candidates, key=score)  # the first of equal scores: fmt's own delimiter first
    return fmt if best == fmt.delimiter else replace(fmt, delimiter=best)


def _sample_lines(path: Path, fmt: TextFormat) -> list[str]:
    try:
        with path.open("rb") as f:
            data = f.read(_SNIFF_BYTES)
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc}", where=str(path)) from None
    if len(data) == _SNIFF_BYTES:
        data = data[:data.rfind(b"\n") + 1]  # a cut last line would miscount its fields
    text = data.removeprefix(_BOM).decode(fmt.encoding, errors="replace")
    return [line for line in text.splitlines() if line.strip()]


def _split(lines: list[str], delimiter: str, quoting: bool) -> list[list[str]]:
    if delimiter == "::":
        lines = [line.replace("::", _DOUBLE_COLON_SUBSTITUTE) for line in lines]
        delimiter = _DOUBLE_COLON_SUBSTITUTE
    if quoting:
        return list(csv.reader(lines, delimiter=delimiter, quotechar='"'))
    return list(csv.reader(lines, delimiter=delimiter, quoting=csv.QUOTE_NONE))


def header_names(path: Path, fmt: TextFormat) -> list[str]:
    """The column names of ``path``: its header row, or ``fmt.names``."""
    if not fmt.header:
        return list(fmt.names or ())
    try:
        with path.open("rb") as f:
            first = f.readline().removeprefix(_BOM).decode(fmt.encoding)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the header: {exc}", where=f"{path}:1") from None
    delimiter = _DOUBLE_COLON_SUBSTITUTE if fmt.double_colon else fmt.delimiter
    if fmt.double_colon:
        first = first.replace("::", delimiter)
    return [name.strip().strip('"') for name in first.rstrip("\r\n").split(delimiter)]


def read_text_columns(path: Path, fmt: TextFormat, columns: dict[str, pa.DataType], *,
                      nullable: Collection[str] = ()) -> TextTable:
    """Read ``columns`` (name -> Arrow type) of ``path``; values must be present except in the
    ``nullable`` columns.

    Raises :class:`DataError` naming ``file:line`` for missing columns (all in one error), a
    line with the wrong number of fields, a value that is not of its column's type, or an empty
    value. Integer columns accept integral decimals such as ``12.0``. Blank lines are skipped.
    """
    path = Path(path)
    require_columns(columns, header_names(path, fmt),
                    where=f"{path}:1" if fmt.header else str(path))
    first_line = 2 if fmt.header else 1
    try:
        table = _read(path, fmt, columns, typed=True, threads=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        table = _read_leniently(path, fmt, columns, first_line)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the file: {exc}", where=str(path)) from None
    return _drop_blank_lines(path, table, first_line, set(nullable))


def _source(path: Path, fmt: TextFormat):
    utf8 = fmt.encoding.lower().replace("-", "").replace("_", "") == "utf8"
    if not fmt.double_colon and (utf8 or not _starts_with_bom(path)):
        return str(path)
    data = path.read_bytes()
    if not utf8:
        data = data.removeprefix(_BOM)
    if fmt.double_colon:
        # One bytes.replace over the whole file is vectorized C, and keeps line numbers intact.
        data = data.replace(b"::", _DOUBLE_COLON_SUBSTITUTE.encode())
    return pa.BufferReader(pa.py_buffer(data))


def _starts_with_bom(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(_BOM)) == _BOM


def _read(path: Path, fmt: TextFormat, columns: dict[str, pa.DataType], *, typed: bool,
          threads: bool, invalid_row_handler=None) -> pa.Table:
    delimiter = _DOUBLE_COLON_SUBSTITUTE if fmt.double_colon else fmt.delimiter
    read_options = pcsv.ReadOptions(
        use_threads=threads,
        column_names=None if fmt.header else list(fmt.names or ()),
        encoding=fmt.encoding,
    )
    parse_options = pcsv.ParseOptions(
        delimiter=delimiter,
        quote_char='"' if fmt.quoting else False,
        ignore_empty_lines=False,  # keeps row i on line first_line + i
        invalid_row_handler=invalid_row_handler,
    )
    convert_options = pcsv.ConvertOptions(
        include_columns=list(columns),
        column_types=dict(columns) if typed else {c: pa.string() for c in columns},
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    return pcsv.read_csv(_source(path, fmt), read_options=read_options,
                         parse_options=parse_options, convert_options=convert_options)


def _read_leniently(path: Path, fmt: TextFormat, columns: dict[str, pa.DataType],
                    first_line: int) -> pa.Table:
    """Slow path after a failed typed read: find the first bad line, or convert what the fast
    reader refused but is valid (integral decimals in integer columns)."""
    bad_rows: list = []

    def remember(row) -> str:
        bad_rows.append(row)
        return "skip"

    try:
        text = _read(path, fmt, columns, typed=False, threads=False, invalid_row_handler=remember)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot parse the file: {_first_line_of(exc)}", where=str(path)) from None
    if bad_rows:
        row = bad_rows[0]
        where = f"{path}:{row.number}" if row.number is not None else str(path)
        raise DataError(
            f"expected {row.expected_columns} fields, found {row.actual_columns}: "
            f"{row.text[:80]!r}",
            where=where,
        )
    converted = {}
    for name, typ in columns.items():
        values = text.column(name)
        if pa.types.is_string(typ):
            converted[name] = values
            continue
        integral = pa.types.is_integer(typ)
        ok = pc.match_substring_regex(values, _INTEGER_TEXT if integral else _FLOAT_TEXT)
        bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False) & values.is_valid().to_numpy(
            zero_copy_only=False))
        if bad.size:
            i = int(bad[0])
            kind = "an integer" if integral else "a number"
            raise DataError(
                f"column {name!r}: {values[i].as_py()!r} is not {kind}",
                where=f"{path}:{first_line + i}",
            )
        if integral:
            values = pc.replace_substring_regex(values, r"\.0*\s*$", "")
        converted[name] = pc.cast(pc.utf8_trim_whitespace(values), typ)
    return pa.table(converted)


def _drop_blank_lines(path: Path, table: pa.Table, first_line: int,
                      nullable: set[str]) -> TextTable:
    if all(col.null_count == 0 for col in table.columns):
        return TextTable(path, table, first_line, None)
    present = [col.is_valid().to_numpy(zero_copy_only=False) for col in table.columns]
    if not present:
        return TextTable(path, table, first_line, None)
    stacked = np.vstack(present)
    any_present = stacked.any(axis=0)
    required = [k for k, name in enumerate(table.column_names) if name not in nullable]
    all_present = stacked[required].all(axis=0) if required else np.ones_like(any_present)
    partial = np.flatnonzero(any_present & ~all_present)
    if partial.size:
        i = int(partial[0])
        missing = [table.column_names[k] for k in required if not present[k][i]]
        raise DataError(f"empty value in column {missing[0]!r}", where=f"{path}:{first_line + i}")
    if any_present.all():
        return TextTable(path, table, first_line, None)
    kept = np.flatnonzero(any_present)
    return TextTable(path, table.take(pa.array(kept)), first_line, kept)


def _first_line_of(exc: BaseException) -> str:
    return re.split(r"[\r\n]", str(exc), maxsplit=1)[0]
