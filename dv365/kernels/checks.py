"""Input checks before any kernel runs: the store, the ids, the tables, the weights.

Generated kernels index without bounds checks, so these checks are what keeps a kernel from
reading out of bounds on bad input; each raises one clear :class:`~dv365.errors.DataError`:

* the store: ``offsets`` start at 0, never decrease and end at the number of events; every
  column the plan reads is present, has the dtype of
  :data:`~dv365.data.schema.EVENT_COLUMN_DTYPES` and the events' length; ``ts`` is sorted
  within each user (binary searches and window bands rely on it);
* ids of ``identity``-hashed tables lie in ``[0, num_rows)`` (``modulo``/``hash`` always do);
* tables: shape ``[num_rows, dim]``, one of fp32 / fp16 / bf16, the same for all tables;
* after a kernel: a weight the slice uses that is not finite and positive.

Store checks cost one pass over the store and are remembered per store object
(:data:`dv365.kernels.cache.CACHES`, ``checked``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from dv365.data.event_store import EventStore
from dv365.data.schema import EVENT_COLUMN_DTYPES
from dv365.errors import DataError
from dv365.kernels.cache import CACHES
from dv365.kernels.plan import KernelPlan
from dv365.slices.ir import SpecIR

TABLE_DTYPES = ("float32", "float16", "bfloat16")
# Table element kinds of the generated code, by dtype name.
ELEM_OF_DTYPE = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}


def check_store(store: EventStore, columns: Sequence[str]) -> None:
    """Offsets, column dtypes and lengths, and time order within users (see module doc)."""
    done = CACHES.checked.of(store)
    offsets = np.asarray(store.offsets)
    if "offsets" not in done:
        if offsets.dtype != np.int64 or offsets.ndim != 1 or len(offsets) < 1:
            raise DataError(f"store offsets must be a 1-D int64 array, got {offsets.dtype} "
                            f"{offsets.shape}", where="store.offsets")
        if offsets[0] != 0:
            raise DataError(f"store offsets must start at 0, got {int(offsets[0])}",
                            where="store.offsets[0]")
        steps = np.diff(offsets)
        if (steps < 0).any():
            u = int(np.flatnonzero(steps < 0)[0])
            raise DataError(f"store offsets decrease at user {u} ({int(offsets[u])} -> "
                            f"{int(offsets[u + 1])})", where=f"store.offsets[{u + 1}]")
        done.add("offsets")
    n = int(offsets[-1])
    for name in ("ts", *columns):
        if name in done:
            continue
        if name not in store.columns:
            raise DataError(f"the store has no column {name!r}", where="store.columns",
                            hint="the spec reads " + ", ".join(columns))
        col = np.asarray(store.columns[name])
        want = EVENT_COLUMN_DTYPES[name]
        if col.dtype != want or col.ndim != 1:
            raise DataError(f"column {name!r} is {col.dtype} {col.shape}, kernels need 1-D "
                            f"{np.dtype(want)}", where=f"store.columns[{name!r}]")
        if len(col) != n:
            raise DataError(f"column {name!r} has {len(col)} values, offsets say {n}",
                            where=f"store.columns[{name!r}]")
        if name == "ts" and n > 1:
            back = np.diff(col) < 0
            back[offsets[1:-1][(offsets[1:-1] > 0) & (offsets[1:-1] < n)] - 1] = False
            if back.any():
                i = int(np.flatnonzero(back)[0]) + 1
                u = int(np.searchsorted(offsets, i, side="right")) - 1
                raise DataError(f"events of user {u} are not sorted by time (event {i})",
                                where=f"store.columns['ts'][{i}]",
                                hint="kernels need each user's events in time order")
        done.add(name)


def check_ids(plan: KernelPlan, store: EventStore) -> None:
    """Ids of identity-hashed tables are rows of their table."""
    done = CACHES.checked.of(store)
    for t in plan.tables:
        if t.hashing != "identity":
            continue
        tag = ("ids", t.id_column, t.num_rows)
        if tag in done:
            continue
        ids = np.asarray(store.columns[t.id_column])
        if len(ids):
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= t.num_rows:
                bad = lo if lo < 0 else hi
                i = int(np.flatnonzero(ids == bad)[0])
                raise DataError(
                    f"{t.id_column} {bad} is outside table {t.name!r} (rows 0..{t.num_rows - 1})",
                    where=f"store.columns[{t.id_column!r}][{i}]",
                    hint="use hashing modulo or hash, or a larger table")
        done.add(tag)


def table_dtype_name(table: Any) -> str:
    """``float32``, ``float16`` or ``bfloat16`` (a NumPy array or torch tensor)."""
    name = str(getattr(table, "dtype", "")).replace("torch.", "")
    if name not in TABLE_DTYPES:
        raise DataError(f"embedding tables must be fp32, fp16 or bf16, got {name or type(table)}",
                        where="tables")
    return name


def check_tables(plan: KernelPlan, tables: Mapping[str, Any]) -> str:
    """Shapes and one common dtype; returns the table element kind (``f32``, ``f16``,
    ``bf16``)."""
    names = set()
    for t in plan.tables:
        if t.name not in tables:
            raise DataError(f"no embedding table {t.name!r}", where=f"table {t.name}",
                            hint=f"tables given: {', '.join(sorted(tables)) or 'none'}")
        x = tables[t.name]
        shape = tuple(x.shape)
        if shape != (t.num_rows, t.dim):
            raise DataError(f"table {t.name!r} has shape {shape}, the spec declares "
                            f"({t.num_rows}, {t.dim})", where=f"table {t.name}")
        names.add(table_dtype_name(x))
    if len(names) > 1:
        raise DataError(f"tables mix dtypes {sorted(names)}", where="tables",
                        hint="convert all tables to one dtype")
    return ELEM_OF_DTYPE[names.pop() if names else "float32"]


def raise_bad_weight(plan: KernelPlan, ir: SpecIR, bad: np.ndarray) -> None:
    """Raise for a kernel's bad-weight flags (slot + 1 per batch row), if any is set."""
    flagged = np.flatnonzero(bad)
    if not len(flagged):
        return
    b = int(flagged[0])
    slot = int(bad[b]) - 1
    slice_ = next(s for s in plan.slices if s.slot == slot and s.pooling != "mean")
    where = ir.origins.get(slice_.name) or f"slice {slice_.name}"
    raise DataError(f"slice {slice_.name!r}: a weight is not finite and positive "
                    f"(batch row {b})", where=where,
                    hint="restrict the filter to events where the weight is positive")
