"""Checking that an input file has every column an importer reads, in one error.

A user fixing a header should see every problem at once: the error names each missing column,
suggests the found name it was probably meant to be, and lists what the file does have.
"""

from __future__ import annotations

import difflib
from typing import Iterable

from dv365.errors import DataError

# A header that is one field holding one of these was most likely split on the wrong delimiter.
_OTHER_DELIMITERS = (",", "\t", ";", "|", "::")


def require_columns(wanted: Iterable[str], found: list[str], *, where: str) -> None:
    """Raise one :class:`DataError` naming every column of ``wanted`` missing from ``found``.

    Each missing column comes with the closest found name, if one is close (case is ignored
    when comparing); the message lists the found names.
    """
    missing = [column for column in wanted if column not in found]
    if not missing:
        return
    lowered = {name.lower(): name for name in reversed(found)}
    named = []
    for column in missing:
        close = difflib.get_close_matches(column.lower(), list(lowered), n=1, cutoff=0.6)
        named.append(f"{column!r} (did you mean {lowered[close[0]]!r}?)" if close
                     else repr(column))
    noun = "column" if len(missing) == 1 else "columns"
    shown = ", ".join(repr(name) if _odd(name) else name for name in found) or "none"
    hint = None
    if len(found) == 1 and any(d in found[0] for d in _OTHER_DELIMITERS):
        hint = "the header is one field: check the delimiter, or force one with --delimiter"
    raise DataError(f"missing {noun} {', '.join(named)}; found: {shown}", where=where, hint=hint)


def _odd(name: str) -> bool:
    """Whether a found name needs quotes to be read (blank, or holding spaces or controls)."""
    return not name or name != name.strip() or any(not c.isprintable() or c == " " for c in name)
