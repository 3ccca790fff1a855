"""Backends, input checks before launch, and the compiled-kernel cache.

:class:`Backend` picks one of three implementations of the same semantics: ``reference``
(the NumPy oracle, :mod:`dv365.slices.reference`), ``cpu`` (generated Numba, parallel over
users) and ``cuda`` (generated Numba CUDA). Every compiled path checks its inputs first and
raises one clear :class:`~dv365.errors.DataError` -- generated kernels index without bounds
checks, so these checks are what keeps a kernel from reading out of bounds on bad input:

* the store: ``offsets`` start at 0, never decrease and end at the number of events; every
  column the plan reads is present, has the right dtype and the events' length; ``ts`` is
  sorted within each user (binary searches and window bands rely on it);
* ids of ``identity``-hashed tables lie in ``[0, num_rows)`` (``modulo``/``hash`` always do);
* the batch: user indices inside the store, request times in 2000..2100 (ms since epoch);
* tables: shape ``[num_rows, dim]``, one of fp32 / fp16 / bf16, the same for all tables.

Store checks cost one pass over the store and are remembered per store object.
"""

from __future__ import annotations

import enum
import weakref
from collections import OrderedDict
from typing import Any, Mapping, Sequence

import numpy as np

from dv365.data.schema import TS_MAX_MS, TS_MIN_MS
from dv365.data.vocabulary import Vocabulary
from dv365.errors import DataError
from dv365.kernels.plan import KernelPlan, lower
from dv365.slices.ir import SpecIR

COLUMN_DTYPES = {
    "ts": np.int64, "timeline": np.int8, "media_id": np.int64, "author_id": np.int64,
    "topic_id": np.int64, "media_type": np.int8, "surface": np.int8, "action": np.int8,
    "video_duration": np.float32, "dwell_time": np.float32,
}


class Backend(str, enum.Enum):
    """Which implementation runs a slice kernel."""

    reference = "reference"
    cpu = "cpu"
    cuda = "cuda"


def resolve(backend: Backend | str) -> Backend:
    try:
        return Backend(backend)
    except ValueError:
        raise DataError(f"unknown kernel backend {backend!r}", where="backend",
                        hint="one of " + ", ".join(b.value for b in Backend)) from None


# --------------------------------------------------------------------------- store checks
_checked: "weakref.WeakKeyDictionary[Any, set]" = weakref.WeakKeyDictionary()


def _memo(store: Any) -> set:
    try:
        return _checked.setdefault(store, set())
    except TypeError:  # not weak-referenceable: check every time
        return set()


def check_store(store: Any, columns: Sequence[str]) -> None:
    """Offsets, column dtypes and lengths, and time order within users (see module doc)."""
    done = _memo(store)
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
        want = COLUMN_DTYPES[name]
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


def check_ids(plan: KernelPlan, store: Any) -> None:
    """Ids of identity-hashed tables are rows of their table."""
    done = _memo(store)
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


def check_batch(store: Any, user_indices: Any, request_ts: Any) -> tuple[np.ndarray, np.ndarray]:
    """The batch as (int64 user indices, int64 request times), checked."""
    users = np.ascontiguousarray(np.asarray(user_indices).reshape(-1))
    if users.size and not np.issubdtype(users.dtype, np.integer):
        raise DataError(f"user indices must be integers, got {users.dtype}", where="user_indices")
    users = users.astype(np.int64, copy=False)
    n_users = len(store.offsets) - 1
    bad = (users < 0) | (users >= n_users)
    if bad.any():
        b = int(np.flatnonzero(bad)[0])
        raise DataError(f"user index {int(users[b])} is outside the store (0..{n_users - 1})",
                        where=f"user_indices[{b}]")
    times = np.asarray(request_ts)
    if times.size and not np.issubdtype(times.dtype, np.integer):
        raise DataError(f"request times must be integer milliseconds, got {times.dtype}",
                        where="request_ts")
    times = np.ascontiguousarray(np.broadcast_to(times.astype(np.int64), users.shape))
    bad = (times < TS_MIN_MS) | (times > TS_MAX_MS)
    if bad.any():
        b = int(np.flatnonzero(bad)[0])
        raise DataError(f"request time {int(times[b])} ms is outside 2000..2100",
                        where=f"request_ts[{b}]",
                        hint="request times are milliseconds since the Unix epoch")
    return users, times


TABLE_DTYPES = ("float32", "float16", "bfloat16")


def table_dtype_name(table: Any) -> str:
    name = str(getattr(table, "dtype", "")).replace("torch.", "")
    if name not in TABLE_DTYPES:
        raise DataError(f"embedding tables must be fp32, fp16 or bf16, got {name or type(table)}",
                        where="tables")
    return name


def check_tables(plan: KernelPlan, tables: Mapping[str, Any]) -> str:
    """Shapes and one common dtype; returns the dtype name."""
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
    return names.pop() if names else "float32"


# --------------------------------------------------------------------------- plans
_plans: dict[tuple, KernelPlan] = {}
# IR object -> its content hash, for the IRs used last (hashing the IR's JSON took 2.4 ms,
# paid by every batch); the entry holds the IR, so its id is not reused while cached.
_ir_hashes: "OrderedDict[int, tuple[SpecIR, str]]" = OrderedDict()


def _ir_hash(ir: SpecIR) -> str:
    hit = _ir_hashes.get(id(ir))
    if hit is not None and hit[0] is ir:
        _ir_hashes.move_to_end(id(ir))
        return hit[1]
    digest = ir.content_hash()
    _ir_hashes[id(ir)] = (ir, digest)
    while len(_ir_hashes) > 64:
        _ir_hashes.popitem(last=False)
    return digest


def plan_for(ir: SpecIR, store: Any) -> KernelPlan:
    """The IR lowered against the store's vocabulary (memoized by IR hash and vocabulary)."""
    vocab = Vocabulary.of_store(store)
    key = (_ir_hash(ir), vocab.key())
    plan = _plans.get(key)
    if plan is None:
        plan = _plans[key] = lower(ir, vocab)
    return plan


def prepare(ir: SpecIR, store: Any, user_indices: Any, request_ts: Any
            ) -> tuple[KernelPlan, np.ndarray, np.ndarray]:
    """Plan, checked store, and the checked batch: everything a compiled path needs."""
    plan = plan_for(ir, store)
    check_store(store, plan.columns)
    check_ids(plan, store)
    users, times = check_batch(store, user_indices, request_ts)
    return plan, users, times


def bad_weight_error(plan: KernelPlan, ir: SpecIR, bad: np.ndarray) -> DataError | None:
    """The error for a kernel's bad-weight flags (slot + 1 per batch row), if any."""
    flagged = np.flatnonzero(bad)
    if not len(flagged):
        return None
    b = int(flagged[0])
    slot = int(bad[b]) - 1
    slice_ = next(s for s in plan.slices if s.slot == slot and s.pooling != "mean")
    where = ir.origins.get(slice_.name) or f"slice {slice_.name}"
    return DataError(f"slice {slice_.name!r}: a weight is not finite and positive "
                     f"(batch row {b})", where=where,
                     hint="restrict the filter to events where the weight is positive")
