"""Lowering a :class:`~dv365.slices.ir.SpecIR` into a kernel plan: the shared work, deduplicated.

A spec of ~200 slices is mostly the same few questions asked in different combinations
(8 actions x 3 id columns x 3 windows). The plan names each distinct piece of work once, the
way datashader lowers reductions into shared *bases* and a *finalize* step:

* **expressions** (``dwell_time / video_duration``, a debiased score) are common
  subexpressions, computed once per event, in dependency order;
* **leaves** (``action in {like}``, ``watch_ratio > 0.5``, the timeline test) are distinct
  comparisons, evaluated once per event; enum strings are bound to the *data's* vocabulary
  codes here, so a spec checked against one vocabulary runs on data declaring another;
* **slots** are the distinct (timeline, predicate, weight, table) accumulations. Slices that
  differ only by their time window share one slot;
* **bands**: the distinct windows, sorted from the longest (or all time) to the shortest.
  Events of a user are sorted by time, so each window is a *suffix* of the eligible events
  and an event inside 3d is also inside 7d and all. A kernel walks the events backwards,
  accumulating each slot once, and reads a slice off its slot when it leaves the slice's
  window (the finalize step: divide by the count or the weight sum);
* **tables**: one row lookup (hash the id, gather the row) per distinct table per event,
  done only when some slot of that table selected the event.

The plan is backend-neutral data; :mod:`dv365.kernels.codegen` renders it into source.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Mapping, Sequence

from dv365.data.schema import DEFAULT_VOCAB, ENUM_COLUMNS, ID_COLUMNS, TIMELINES
from dv365.data.vocabulary import VocabLike, Vocabulary
from dv365.errors import ConfigError
from dv365.slices import ir as I
from dv365.slices.language import NUMERIC_FIELDS


@dataclass(frozen=True)
class PlanExpr:
    """One distinct numeric subexpression ``e<index>`` (args are indices of earlier exprs)."""

    index: int
    kind: str  # "field" | "const" | "unary" | "binary"
    op: str = ""  # unary/binary operator, field name for "field"
    args: tuple[int, ...] = ()
    value: float = 0.0


@dataclass(frozen=True)
class PlanLeaf:
    """One distinct leaf test ``l<index>``.

    ``compare``: ``e<expr> <op> value`` (false on NaN). ``member``: ``column in codes`` (or
    not in, when ``negated``), false on null (code -1) for enum columns.
    """

    index: int
    kind: str  # "compare" | "member"
    expr: int = -1
    op: str = ""
    value: float = 0.0
    column: str = ""
    codes: tuple[int, ...] = ()
    negated: bool = False
    nullable: bool = False


@dataclass(frozen=True)
class BoolExpr:
    """A predicate over leaves in negation normal form: ``leaf``, ``and``, ``or`` or ``true``."""

    kind: str
    leaf: int = -1
    args: tuple["BoolExpr", ...] = ()

    def leaves(self) -> set[int]:
        if self.kind == "leaf":
            return {self.leaf}
        out: set[int] = set()
        for a in self.args:
            out |= a.leaves()
        return out


@dataclass(frozen=True)
class PlanTable:
    index: int
    name: str
    id_column: str
    num_rows: int
    dim: int
    hashing: str  # "modulo" | "hash" | "identity"
    seed: int  # as an unsigned 64-bit value


@dataclass(frozen=True)
class PlanSlot:
    """A distinct accumulation: events of ``table`` where ``predicate`` holds.

    ``weight`` is the expression index of the weight when the pooling uses it, else -1.
    """

    index: int
    table: int
    predicate: BoolExpr
    weight: int


@dataclass(frozen=True)
class PlanSlice:
    index: int
    name: str
    slot: int
    band: int  # index into KernelPlan.windows
    pooling: str  # "mean" | "weighted_mean" | "sum"


@dataclass(frozen=True)
class KernelPlan:
    """The lowered, vocabulary-bound form of a spec that kernels are generated from."""

    ir_hash: str
    gap_ms: int
    exprs: tuple[PlanExpr, ...]
    leaves: tuple[PlanLeaf, ...]
    tables: tuple[PlanTable, ...]
    slots: tuple[PlanSlot, ...]
    slices: tuple[PlanSlice, ...]
    # Distinct windows, longest first; None (all time) is first when any slice uses it.
    windows: tuple[int | None, ...]
    dim: int

    @property
    def columns(self) -> tuple[str, ...]:
        """The event columns the kernels read (besides ``ts``), in a fixed order."""
        used = {"timeline"}
        for e in self.exprs:
            if e.kind == "field":
                used.add(e.op)
        for leaf in self.leaves:
            if leaf.kind == "member":
                used.add(leaf.column)
        for t in self.tables:
            used.add(t.id_column)
        order = ("timeline", "media_type", "surface", "action", *ID_COLUMNS, *NUMERIC_FIELDS)
        return tuple(c for c in order if c in used)

    def key(self) -> str:
        """A digest of everything generated code depends on (the IR hash and bound codes)."""
        payload = json.dumps(
            [self.ir_hash, [(leaf.index, leaf.column, leaf.codes, leaf.negated)
                            for leaf in self.leaves]],
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:24]

    def slices_of_slot(self, slot: int) -> tuple[PlanSlice, ...]:
        return tuple(s for s in self.slices if s.slot == slot)

    def slots_of_table(self, table: int) -> tuple[PlanSlot, ...]:
        return tuple(s for s in self.slots if s.table == table)

    def summary(self) -> str:
        """One line on how much the lowering shared (for logs and docs)."""
        return (f"{len(self.slices)} slices -> {len(self.slots)} slots x "
                f"{len(self.windows)} bands, {len(self.leaves)} leaves, "
                f"{len(self.exprs)} exprs, {len(self.tables)} tables")


class _Lowering:
    def __init__(self, vocab: Vocabulary, origins: Mapping[str, str]):
        self.vocab = vocab
        self.origins = origins
        self.slice_name = "?"
        self.exprs: list[PlanExpr] = []
        self.expr_ids: dict[tuple, int] = {}
        self.leaves: list[PlanLeaf] = []
        self.leaf_ids: dict[tuple, int] = {}

    # -- expressions -----------------------------------------------------------------
    def expr(self, node: I.Expr) -> int:
        if isinstance(node, I.Const):
            key: tuple = ("const", float(node.value))
        elif isinstance(node, I.FieldRef):
            if node.field not in NUMERIC_FIELDS:
                raise ConfigError(f"unknown numeric field {node.field!r}", where="spec")
            key = ("field", node.field)
        elif isinstance(node, I.Unary):
            key = ("unary", node.op, self.expr(node.arg))
        else:
            key = ("binary", node.op, self.expr(node.left), self.expr(node.right))
        found = self.expr_ids.get(key)
        if found is not None:
            return found
        index = len(self.exprs)
        if key[0] == "const":
            e = PlanExpr(index, "const", value=key[1])
        elif key[0] == "field":
            e = PlanExpr(index, "field", op=key[1])
        else:
            e = PlanExpr(index, key[0], op=key[1], args=tuple(key[2:]))
        self.exprs.append(e)
        self.expr_ids[key] = index
        return index

    # -- leaves ----------------------------------------------------------------------
    def _leaf(self, key: tuple, make) -> BoolExpr:
        found = self.leaf_ids.get(key)
        if found is None:
            found = len(self.leaves)
            self.leaves.append(make(found))
            self.leaf_ids[key] = found
        return BoolExpr("leaf", leaf=found)

    def codes_of(self, column: str, values: Sequence) -> tuple[int, ...]:
        if column in ID_COLUMNS:
            return tuple(sorted({int(v) for v in values}))
        # A value the data does not declare is a DataError, as in the reference.
        return tuple(sorted({
            self.vocab.code(column, v, slice_name=self.slice_name,
                            where=self.origins.get(self.slice_name))
            for v in values
        }))

    def timeline_leaf(self, timeline: str) -> BoolExpr:
        code = TIMELINES.index(timeline)
        return self._leaf(("member", "timeline", (code,), False),
                          lambda i: PlanLeaf(i, "member", column="timeline", codes=(code,)))

    def predicate(self, node: I.Predicate) -> BoolExpr:
        if isinstance(node, I.TruePred):
            return BoolExpr("true")
        if isinstance(node, (I.And, I.Or)):
            args = tuple(self.predicate(a) for a in node.args)
            return BoolExpr("and" if isinstance(node, I.And) else "or", args=args)
        if isinstance(node, I.Compare):
            e = self.expr(node.expr)
            key = ("compare", e, node.op, float(node.value))
            return self._leaf(key, lambda i: PlanLeaf(i, "compare", expr=e, op=node.op,
                                                      value=float(node.value)))
        if node.field not in ENUM_COLUMNS and node.field not in ID_COLUMNS:
            raise ConfigError(f"unknown field {node.field!r} in a membership test", where="spec")
        codes = self.codes_of(node.field, node.values)
        nullable = node.field in ENUM_COLUMNS and node.field != "timeline"
        key = ("member", node.field, codes, node.negated)
        return self._leaf(key, lambda i: PlanLeaf(i, "member", column=node.field, codes=codes,
                                                  negated=node.negated, nullable=nullable))


def _bool_key(b: BoolExpr) -> tuple:
    if b.kind == "leaf":
        return ("leaf", b.leaf)
    return (b.kind, tuple(_bool_key(a) for a in b.args))


def build_plan(ir: I.SpecIR, vocab: VocabLike | None = None) -> KernelPlan:
    """Lower ``ir`` into a :class:`KernelPlan`, binding enum values to ``vocab``'s codes.

    ``vocab`` is the data's vocabulary (a DatasetMeta or column -> values in code order);
    ``None`` uses the one the spec was compiled with (or the project default).
    """
    bound = (Vocabulary.of({**DEFAULT_VOCAB, **ir.vocab}) if vocab is None
             else Vocabulary.of(vocab))
    low = _Lowering(bound, ir.origins)
    tables = tuple(
        PlanTable(i, t.name, t.id_column, t.num_rows, t.dim, t.hashing.kind,
                  t.hashing.seed & (2**64 - 1))
        for i, t in enumerate(ir.tables)
    )
    table_index = {t.name: t.index for t in tables}
    dims = {t.dim for t in tables}
    if len(dims) != 1:
        raise ConfigError(f"tables have different dims {sorted(dims)}; pooled output needs one",
                          where="spec tables")

    windows_present = {s.window_ms for s in ir.slices}
    windows: tuple[int | None, ...] = tuple(
        ([None] if None in windows_present else [])
        + sorted((w for w in windows_present if w is not None), reverse=True)
    )
    band_of = {w: k for k, w in enumerate(windows)}

    slots: list[PlanSlot] = []
    slot_ids: dict[tuple, int] = {}
    slices: list[PlanSlice] = []
    for si, s in enumerate(ir.slices):
        low.slice_name = s.name
        pred = low.predicate(s.predicate)
        tl = low.timeline_leaf(s.timeline)
        full = BoolExpr("and", args=(tl,) if pred.kind == "true" else (tl, pred))
        weight = low.expr(s.weight) if (s.weight is not None and s.pooling != "mean") else -1
        key = (table_index[s.table], _bool_key(full), weight)
        slot = slot_ids.get(key)
        if slot is None:
            slot = len(slots)
            slots.append(PlanSlot(slot, table_index[s.table], full, weight))
            slot_ids[key] = slot
        slices.append(PlanSlice(si, s.name, slot, band_of[s.window_ms], s.pooling))

    return KernelPlan(
        ir_hash=ir.content_hash(),
        gap_ms=ir.gap_ms,
        exprs=tuple(low.exprs),
        leaves=tuple(low.leaves),
        tables=tables,
        slots=tuple(slots),
        slices=tuple(slices),
        windows=windows,
        dim=dims.pop(),
    )
