"""The reference semantics of a compiled slice spec: the oracle every kernel is tested against.

One plain NumPy implementation of :mod:`dv365.slices.ir`, written for clarity: every slice is
evaluated on its own with boolean masks over all of a user's events (vectorized per slice, so
a few users with 40k events each take well under a second per user). Fast kernels share
nothing with this module but what defines the data itself: the row hashing
(:func:`dv365.slices.hashing.rows_of`) and the vocabulary binding
(:class:`dv365.data.vocabulary.Vocabulary`).

Inputs
    *events*: one user's events as a mapping column -> NumPy array, the TimelineStore layout
    (``ts`` int64 ms, ``timeline`` int8 code 0 explicit / 1 implicit, ``media_id`` /
    ``author_id`` / ``topic_id`` int64, ``media_type`` / ``surface`` / ``action`` int8 codes
    into the dataset's vocabulary with -1 for null, ``video_duration`` / ``dwell_time``
    float32 seconds with NaN for null). Events may be in any order. *vocab* is the data's
    vocabulary (a :class:`~dv365.data.vocabulary.Vocabulary`, a ``DatasetMeta`` or a dict
    column -> values); the IR names enum values as strings and they are mapped to the
    data's codes here.

Edge cases, all of them decided here once
    * **Gap edge**: an event at exactly ``R - gap_ms`` is *not* eligible (the cutoff is
      exclusive); with ``gap_ms = 0`` an event at exactly the request time is not history.
    * **Window edge**: an event at exactly ``R - window_ms`` *is* eligible (``dt = R - t`` lies
      in ``(gap, window]``). A window not longer than the gap selects nothing.
    * **Nulls**: a predicate leaf whose value is null is false, and so is its negation
      (``not in``, flipped comparisons). Photos have no ``video_duration`` (NaN), so they never
      match a watch-ratio or debiased-score predicate, in either direction. Implicit rows have
      a null ``action`` and match neither ``action in [...]`` nor ``action not in [...]``. An
      expression that evaluates to NaN for other reasons (``ln`` of a negative number, 0/0)
      counts as null too; infinities compare as IEEE infinities.
    * **Arithmetic** is float64 on the float32 stored values (widened exactly), compared with
      the float64 constants of the IR.
    * **Ties in time** do not matter for which events are selected; selected events are
      listed in a canonical order, by time and then by every other column, so that the
      output (rows, weights, the float64 sums) does not depend on the order of storage.
    * **Weights**: unweighted slices weigh each event 1. A weight is only *used* by
      ``weighted_mean`` and ``sum`` pooling; where it is used, every selected event's weight
      must be finite and positive (the front end proves this over the predicate), else a
      :class:`~dv365.errors.DataError` names the slice.
    * **Empty slice**: count 0, no rows, and a pooled zero vector.

Outputs
    For each slice a :class:`Selection`: event indices, rows, raw weights and the *bag
    weights* -- the per-event weights normalized so that pooling is a plain weighted SUM:
    ``mean`` -> ``1 / count``; ``weighted_mean`` -> ``w / sum(w)``; ``sum`` -> ``w`` (1 when
    unweighted). That is what the jagged (KeyedJaggedTensor) path carries into a SUM
    EmbeddingBag; :func:`pool` computes the same sums directly in float64.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

from dv365.data.schema import ENUM_COLUMNS, ID_COLUMNS, NULL_CODE, TIMELINES
from dv365.data.event_store import EventStore
from dv365.data.vocabulary import VocabLike, Vocabulary
from dv365.errors import DataError
from dv365.slices.hashing import rows_of
from dv365.slices.ir import (
    And,
    Binary,
    Compare,
    Const,
    Expr,
    FieldRef,
    Member,
    Or,
    Predicate,
    Slice,
    SpecIR,
    TruePred,
    Unary,
)
from dv365.slices.language import NUMERIC_FIELDS


# Columns that break ties in time for the canonical order of selected events (after ts).
_TIE_BREAK_COLUMNS = ("timeline", "media_id", "author_id", "topic_id", "media_type", "surface",
                      "action", "video_duration", "dwell_time")

_COMPARE: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne,
}
_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "neg": np.negative, "ln": np.log, "log1p": np.log1p, "exp": np.exp, "sqrt": np.sqrt,
    "abs": np.abs,
}
_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "^": np.power,
}

# --------------------------------------------------------------------------- events
class Events:
    """One user's events, checked and widened once for all slices."""

    def __init__(self, events: Mapping[str, Any]):
        columns = {name: np.asarray(values) for name, values in events.items()}
        if "ts" not in columns or "timeline" not in columns:
            raise DataError("events need the columns 'ts' and 'timeline'",
                            hint=f"got {', '.join(sorted(columns)) or 'no columns'}")
        sizes = {name: len(values) for name, values in columns.items()}
        if len(set(sizes.values())) > 1:
            raise DataError(f"event columns have different lengths: {sizes}")
        self.columns = columns
        self.n = sizes["ts"]
        self.ts = columns["ts"].astype(np.int64, copy=False)
        self.timeline = columns["timeline"].astype(np.int64, copy=False)
        keys = [columns[c] for c in reversed(_TIE_BREAK_COLUMNS) if c in columns]
        # lexsort's last key is the primary one; NaNs sort last, deterministically.
        self.order = np.lexsort(keys + [self.ts]) if self.n else np.zeros(0, np.int64)

    def column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise DataError(f"events have no column {name!r}",
                            hint=f"columns are {', '.join(sorted(self.columns))}")
        return self.columns[name]

    def numeric(self, name: str) -> np.ndarray:
        if name not in NUMERIC_FIELDS:
            raise ValueError(f"{name!r} is not a numeric event field ({', '.join(NUMERIC_FIELDS)})")
        return self.column(name).astype(np.float64)


# --------------------------------------------------------------------------- expressions
def evaluate(expr: Expr, events: Events) -> np.ndarray:
    """The value of a numeric expression for every event (float64, NaN = null)."""
    if isinstance(expr, Const):
        return np.full(events.n, expr.value, dtype=np.float64)
    if isinstance(expr, FieldRef):
        return events.numeric(expr.field)
    with np.errstate(all="ignore"):
        if isinstance(expr, Unary):
            return _UNARY[expr.op](evaluate(expr.arg, events))
        if isinstance(expr, Binary):
            return _BINARY[expr.op](evaluate(expr.left, events), evaluate(expr.right, events))
    raise TypeError(f"not an expression: {expr!r}")


def holds(pred: Predicate, events: Events, vocab: Vocabulary, *, slice_name: str = "?",
          where: str | None = None) -> np.ndarray:
    """Boolean mask of the events that satisfy ``pred`` (null leaves are false)."""
    if isinstance(pred, TruePred):
        return np.ones(events.n, dtype=bool)
    if isinstance(pred, And):
        mask = np.ones(events.n, dtype=bool)
        for arg in pred.args:
            mask &= holds(arg, events, vocab, slice_name=slice_name, where=where)
        return mask
    if isinstance(pred, Or):
        mask = np.zeros(events.n, dtype=bool)
        for arg in pred.args:
            mask |= holds(arg, events, vocab, slice_name=slice_name, where=where)
        return mask
    if isinstance(pred, Compare):
        value = evaluate(pred.expr, events)
        with np.errstate(invalid="ignore"):
            return ~np.isnan(value) & _COMPARE[pred.op](value, pred.value)
    if isinstance(pred, Member):
        return _member(pred, events, vocab, slice_name=slice_name, where=where)
    raise TypeError(f"not a predicate: {pred!r}")


def _member(pred: Member, events: Events, vocab: Vocabulary, *, slice_name: str,
            where: str | None) -> np.ndarray:
    column = events.column(pred.field).astype(np.int64)
    if pred.field in ENUM_COLUMNS:
        if not all(isinstance(v, str) for v in pred.values):
            raise ValueError(f"slice {slice_name!r}: {pred.field} values must be strings")
        wanted = [vocab.code(pred.field, v, slice_name=slice_name, where=where)
                  for v in pred.values]
        defined = column != NULL_CODE
    elif pred.field in ID_COLUMNS:
        if not all(isinstance(v, int) for v in pred.values):
            raise ValueError(f"slice {slice_name!r}: {pred.field} values must be integers")
        wanted = list(pred.values)
        defined = np.ones(events.n, dtype=bool)
    else:
        raise ValueError(f"slice {slice_name!r}: 'in' needs an enum or id field, "
                         f"not {pred.field!r}")
    inside = np.isin(column, np.asarray(wanted, dtype=np.int64))
    return defined & (~inside if pred.negated else inside)


def eligible(events: Events, slice_: Slice, gap_ms: int, request_ts: int) -> np.ndarray:
    """Events of the slice's timeline with ``R - window <= t < R - gap``."""
    mask = events.timeline == TIMELINES.index(slice_.timeline)
    mask &= events.ts < request_ts - gap_ms
    if slice_.window_ms is not None:
        mask &= events.ts >= request_ts - slice_.window_ms
    return mask


# --------------------------------------------------------------------------- selection
@dataclass(frozen=True)
class Selection:
    """What one slice selected for one user at one request time.

    ``indices`` are positions in the input arrays, in canonical order (time, then the other
    columns); ``rows``, ``weights`` (raw, 1 when unweighted) and ``bag_weights`` (normalized
    so that ``sum(bag_weights[k] * table[rows[k]])`` is the pooled vector) follow that order.
    """

    slice: Slice
    indices: np.ndarray
    rows: np.ndarray
    weights: np.ndarray
    bag_weights: np.ndarray

    @property
    def name(self) -> str:
        return self.slice.name

    @property
    def count(self) -> int:
        return int(len(self.indices))

    @property
    def weight_sum(self) -> float:
        return float(self.weights.sum())

    def pooled(self, table: np.ndarray) -> np.ndarray:
        """The pooled vector (float64; zeros when the slice is empty)."""
        table = np.asarray(table)
        if self.count == 0:
            return np.zeros(table.shape[1], dtype=np.float64)
        return (self.bag_weights[:, None] * table[self.rows].astype(np.float64)).sum(axis=0)


def bag_weights(pooling: str, weights: np.ndarray) -> np.ndarray:
    """Per-event weights that turn the slice's pooling into a weighted SUM."""
    if len(weights) == 0:
        return np.zeros(0, dtype=np.float64)
    if pooling == "mean":
        return np.full(len(weights), 1.0 / len(weights))
    if pooling == "weighted_mean":
        return weights / weights.sum()
    return weights.astype(np.float64, copy=True)


def select_events(ir: SpecIR, events: Events, vocab: Vocabulary, request_ts: int
                  ) -> list[Selection]:
    """:func:`select` on already prepared :class:`Events` and a bound :class:`Vocabulary`."""
    request_ts = int(request_ts)
    selections = []
    for slice_ in ir.slices:
        where = ir.origins.get(slice_.name)
        mask = eligible(events, slice_, ir.gap_ms, request_ts)
        mask &= holds(slice_.predicate, events, vocab, slice_name=slice_.name, where=where)
        indices = events.order[mask[events.order]].astype(np.int64)
        rows = rows_of(events.column(slice_.id_column)[indices], ir.table(slice_.table))
        if slice_.weight is None:
            weights = np.ones(len(indices), dtype=np.float64)
        else:
            weights = evaluate(slice_.weight, events)[indices]
            if slice_.pooling != "mean":
                _check_weights(slice_, weights, events.ts[indices], where)
        selections.append(Selection(slice_, indices, rows, weights,
                                    bag_weights(slice_.pooling, weights)))
    return selections


def _check_weights(slice_: Slice, weights: np.ndarray, ts: np.ndarray, where: str | None) -> None:
    bad = ~(np.isfinite(weights) & (weights > 0))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"slice {slice_.name!r}: weight {float(weights[k])!r} of the event at ts {int(ts[k])} "
            f"is not finite and positive ({int(bad.sum())} such events)",
            where=where or f"slice {slice_.name}",
            hint="restrict the filter to events where the weight is positive",
        )


def select(ir: SpecIR, events: Mapping[str, Any], vocab: VocabLike | None,
           request_ts: int) -> list[Selection]:
    """Every slice's selection for one user's ``events`` at ``request_ts`` (ms).

    ``vocab`` is the data's vocabulary; ``None`` uses the one the spec was compiled with.
    """
    bound = Vocabulary.of(ir.vocab if vocab is None else vocab)
    return select_events(ir, Events(events), bound, request_ts)


# --------------------------------------------------------------------------- pooling
def check_tables(ir: SpecIR, tables: Mapping[str, np.ndarray]) -> None:
    """Every table of the IR is present with shape ``[num_rows, dim]``."""
    for table in ir.tables:
        if table.name not in tables:
            raise DataError(f"no embedding table {table.name!r}", where=f"table {table.name}",
                            hint=f"tables given: {', '.join(sorted(tables)) or 'none'}")
        shape = tuple(np.shape(tables[table.name]))
        if shape != (table.num_rows, table.dim):
            raise DataError(f"table {table.name!r} has shape {shape}, the spec declares "
                            f"({table.num_rows}, {table.dim})", where=f"table {table.name}")


def pool_selections(ir: SpecIR, selections: Sequence[Selection],
                    tables: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pooled vectors ``[S, D]`` (float64) and counts ``[S]`` (int64) of selections."""
    pooled = np.zeros((len(selections), ir.dim), dtype=np.float64)
    counts = np.zeros(len(selections), dtype=np.int64)
    for s, selection in enumerate(selections):
        pooled[s] = selection.pooled(tables[selection.slice.table])
        counts[s] = selection.count
    return pooled, counts


def pool(ir: SpecIR, events: Mapping[str, Any], vocab: VocabLike | None, request_ts: int,
         tables: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One user's pooled slice vectors ``[S, D]`` (float64) and counts ``[S]`` (int64)."""
    check_tables(ir, tables)
    return pool_selections(ir, select(ir, events, vocab, request_ts), tables)


# --------------------------------------------------------------------------- batches
def user_events(store: EventStore, user_index: int) -> dict[str, np.ndarray]:
    """The events of the ``user_index``-th user of a store (``offsets`` + ``columns``)."""
    start, stop = int(store.offsets[user_index]), int(store.offsets[user_index + 1])
    return {name: np.asarray(values[start:stop]) for name, values in store.columns.items()}


def _batch_selections(ir: SpecIR, store: EventStore, user_indices: Sequence[int],
                      request_ts: Any,
                      vocab: VocabLike | None) -> list[list[Selection]]:
    users = np.asarray(user_indices, dtype=np.int64).reshape(-1)
    times = np.broadcast_to(np.asarray(request_ts, dtype=np.int64), users.shape)
    bound = Vocabulary.of_store(store) if vocab is None else Vocabulary.of(vocab)
    return [select_events(ir, Events(user_events(store, int(u))), bound, int(t))
            for u, t in zip(users, times)]


def pool_batch(ir: SpecIR, store: EventStore, user_indices: Sequence[int], request_ts: Any,
               tables: Mapping[str, np.ndarray], *, vocab: VocabLike | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Pooled ``[B, S, D]`` (float64) and counts ``[B, S]`` (int64) for a batch.

    ``user_indices`` index the store's users (not raw user ids); ``request_ts`` is one time
    per example or one for all. ``vocab`` defaults to the store's.
    """
    check_tables(ir, tables)
    per_user = _batch_selections(ir, store, user_indices, request_ts, vocab)
    pooled = np.zeros((len(per_user), len(ir.slices), ir.dim), dtype=np.float64)
    counts = np.zeros((len(per_user), len(ir.slices)), dtype=np.int64)
    for b, selections in enumerate(per_user):
        pooled[b], counts[b] = pool_selections(ir, selections, tables)
    return pooled, counts


class JaggedSlices(NamedTuple):
    """The jagged form of a batch, key-major like torchrec's KeyedJaggedTensor.

    Keys are the slices in IR order; ``lengths[s * B + b]`` is user ``b``'s count for slice
    ``s``; ``values`` (rows, int64) and ``weights`` (bag weights, float32) are concatenated in
    that order; a SUM EmbeddingBag over them gives the pooled vectors.
    """

    lengths: np.ndarray
    values: np.ndarray
    weights: np.ndarray
    counts: np.ndarray


def jagged_batch(ir: SpecIR, store: EventStore, user_indices: Sequence[int], request_ts: Any, *,
                 vocab: VocabLike | None = None) -> JaggedSlices:
    """The batch's selections as key-major jagged arrays (see :class:`JaggedSlices`)."""
    per_user = _batch_selections(ir, store, user_indices, request_ts, vocab)
    n_slices, batch = len(ir.slices), len(per_user)
    lengths = np.zeros(n_slices * batch, dtype=np.int64)
    values: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    for s in range(n_slices):
        for b in range(batch):
            selection = per_user[b][s]
            lengths[s * batch + b] = selection.count
            values.append(selection.rows)
            weights.append(selection.bag_weights)
    counts = lengths.reshape(n_slices, batch).T.copy()
    return JaggedSlices(
        lengths,
        np.concatenate(values).astype(np.int64) if values else np.zeros(0, np.int64),
        np.concatenate(weights).astype(np.float32) if weights else np.zeros(0, np.float32),
        counts,
    )
