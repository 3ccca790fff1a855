"""Exact incremental refresh: which users' embeddings can differ between two request times.

A user's embedding at request time ``R`` is a function of the model and of its pooled slices
alone (the encoder sees nothing else), and a slice pools the user's events with
``R - window <= ts < R - gap`` (:mod:`dv365.slices.ir`; ``window`` = all time when unset),
weighting each by the event's own fields. Between a parent snapshot at ``T0`` and a refresh
at ``T1 >= T0`` on data that only gained events, an event changes membership of some slice
exactly when

* it *entered* the history: ``T0 - gap <= ts < T1 - gap``; or
* it *left a window* ``w`` of the spec: ``T0 - w <= ts < T1 - w``.

Every other user's slices, and so its record, are bit-for-bit what the parent stored (the
job computes embeddings in fixed-shape batches, so a user's bytes do not depend on which
users share its batch). Users that are new in the data have no parent record and are
computed too; the job finds those when the parent's read reports them not found.

Events *inserted* before ``T0 - gap`` (late data with old timestamps) would break the rule:
when the parent's timeline store is still in the cache, :func:`changed_users` compares each
user's count of events before the parent cutoff in both stores and recomputes users whose
counts differ. A spec whose slices depended on the request time in any other way (an age or
recency weight) would change every user with history; :func:`request_relative` names such
fields, and the job then recomputes everyone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dv365.data.timeline import TimelineStore
from dv365.slices.ir import Binary, FieldRef, SpecIR, Unary
from dv365.slices.language import NUMERIC_FIELDS


def _ends_before(store: TimelineStore, cutoff_ms: int) -> np.ndarray:
    """Per user of ``store``, the end of its events strictly before ``cutoff_ms`` (int64):
    one binary search per user over the CSR (:meth:`TimelineStore.ends_before`)."""
    return store.ends_before(np.arange(store.num_users, dtype=np.int64), cutoff_ms)


def events_in(store: TimelineStore, lo_ms: int, hi_ms: int) -> np.ndarray:
    """Per user of ``store``, how many of its events have ``lo_ms <= ts < hi_ms`` (int64)."""
    if hi_ms <= lo_ms:
        return np.zeros(store.num_users, dtype=np.int64)
    return _ends_before(store, hi_ms) - _ends_before(store, lo_ms)


def windows_of(ir: SpecIR) -> tuple[int, ...]:
    """The distinct finite windows (ms) of the spec's slices, longest first."""
    return tuple(sorted({s.window_ms for s in ir.slices if s.window_ms is not None},
                        reverse=True))


def request_relative(ir: SpecIR) -> tuple[str, ...]:
    """Fields the slices' filters or weights read that are not a fixed property of the event
    (so might depend on the request time); empty for every spec the language accepts today,
    and treated conservatively by the job (everyone recomputed) should one appear."""
    found: set[str] = set()

    def expr(node) -> None:
        if isinstance(node, FieldRef):
            if node.field not in NUMERIC_FIELDS:
                found.add(node.field)
        elif isinstance(node, Unary):
            expr(node.arg)
        elif isinstance(node, Binary):
            expr(node.left)
            expr(node.right)

    def pred(node) -> None:
        kind = node.kind
        if kind in ("and", "or"):
            for arg in node.args:
                pred(arg)
        elif kind == "compare":
            expr(node.expr)

    for s in ir.slices:
        pred(s.predicate)
        if s.weight is not None:
            expr(s.weight)
    return tuple(sorted(found))


@dataclass(frozen=True)
class Refresh:
    """Which users of the new data a refresh must compute, and why."""

    recompute: np.ndarray
    """``bool [U]`` over the new store's users: computed, never copied."""
    entered: int
    """Users with an event that entered the history."""
    left_window: int
    """Users with an event that left a window (and none that entered)."""
    rewritten: int
    """Users whose events before the parent cutoff differ from the parent's data."""
    everyone: str | None = None
    """Why every user is recomputed (``None`` when the rule applies)."""

    @property
    def count(self) -> int:
        return int(self.recompute.sum())


def changed_users(ir: SpecIR, store: TimelineStore, parent_at_ms: int, at_ms: int, *,
                  parent_store: TimelineStore | None = None) -> Refresh:
    """The users of ``store`` whose embedding at ``at_ms`` can differ from the one at
    ``parent_at_ms`` (see the module docstring). ``parent_store``, the data the parent was
    computed from, adds users whose events before the parent cutoff differ in count."""
    if at_ms < parent_at_ms:
        raise ValueError(f"refresh time {at_ms} is before the parent's {parent_at_ms}")
    users = len(store.user_ids)
    relative = request_relative(ir)
    if relative:
        return Refresh(np.ones(users, dtype=bool), 0, 0, 0,
                       everyone=f"the spec reads {', '.join(relative)}, which may depend on "
                                "the request time")
    gap = ir.gap_ms
    before_parent = _ends_before(store, parent_at_ms - gap)
    entered = (_ends_before(store, at_ms - gap) - before_parent) > 0
    left = np.zeros(users, dtype=bool)
    for w in windows_of(ir):
        left |= events_in(store, parent_at_ms - w, at_ms - w) > 0
    rewritten = np.zeros(users, dtype=bool)
    if parent_store is not None:
        old_index = np.searchsorted(parent_store.user_ids, store.user_ids)
        known = old_index < len(parent_store.user_ids)
        known[known] = parent_store.user_ids[old_index[known]] == store.user_ids[known]
        cutoff = parent_at_ms - gap
        new_counts = before_parent - np.asarray(store.offsets[:-1])
        old_counts = _ends_before(parent_store, cutoff) - np.asarray(parent_store.offsets[:-1])
        rewritten[known] = new_counts[known] != old_counts[old_index[known]]
    recompute = entered | left | rewritten
    return Refresh(recompute, int(entered.sum()), int((left & ~entered).sum()),
                   int((rewritten & ~entered & ~left).sum()))
