"""Raw ids -> embedding-table rows, the one definition every backend follows.

Kernels re-implement :func:`splitmix64` in Numba with the same uint64 wrap-around arithmetic;
tests check them against this NumPy version.
"""

from __future__ import annotations

import numpy as np

from dv365.errors import DataError
from dv365.slices.ir import Table

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer of ``x + golden`` (uint64 in, uint64 out, wrapping)."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def rows_of(ids: np.ndarray, table: Table) -> np.ndarray:
    """Map raw ids (int64) to rows of ``table`` (int64 in ``[0, num_rows)``)."""
    ids = np.asarray(ids, dtype=np.int64)
    n = table.num_rows
    kind = table.hashing.kind
    if kind == "modulo":
        return np.mod(ids, n)
    if kind == "hash":
        mixed = splitmix64(ids.view(np.uint64) ^ np.uint64(table.hashing.seed & (2**64 - 1)))
        return (mixed % np.uint64(n)).astype(np.int64)
    bad = (ids < 0) | (ids >= n)
    if bad.any():
        first = int(ids[bad][0])
        raise DataError(
            f"{table.id_column} {first} is outside table {table.name!r} (rows 0..{n - 1})",
            where=f"table {table.name}",
            hint="use hashing modulo or hash, or a larger table",
        )
    return ids.copy()
