"""Semantic checks on elaborated slices: filters that can never be true, weights not provably
positive, tables nobody uses, tables of different dims, specs without slices.

The checks work on the IR (so they see named filters, generators and ranges after
expansion); :func:`check` maps every finding back to the statement it came from.
:func:`contradiction` and :func:`weight_problem` are public so that tests and tools can ask
the same questions about any IR.

Interval reasoning
    For each ``and``, the comparisons on one expression are intersected (``dwell_time > 30
    and dwell_time < 3`` is empty; so is ``x == 5 and x != 5``) and the memberships on one
    field likewise (``action == like and action == share``; ``media_type not in`` every
    value of the vocabulary). An ``or`` is empty when all its branches are.

    A weight is evaluated in interval arithmetic with what the filter guarantees: durations
    are non-negative seconds, and every comparison that must hold (``and`` of everything,
    the hull of an ``or``'s branches) bounds its expression, at any depth of the weight
    (so ``score > 0`` bounds a weight ``score``, and ``dwell_time > 0 and video_duration > 0``
    bounds ``ln(dwell_time + 1) / ln(gamma * video_duration + 1)`` above 0). The weight must
    also be non-null wherever the filter holds: every field it reads must appear in a
    required comparison (null makes a comparison false).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from dv365.slices import ir
from dv365.slices.errors import Diagnostic, Pos
from dv365.slices.elaborate import Elaborated
from dv365.slices.printer import format_expr, format_predicate

INF = math.inf


# ----------------------------------------------------------------------------- intervals
@dataclass(frozen=True)
class Interval:
    """A set of reals ``lo..hi``; ``*_open`` excludes the end (infinite ends are open)."""

    lo: float = -INF
    hi: float = INF
    lo_open: bool = True
    hi_open: bool = True

    @property
    def empty(self) -> bool:
        return self.lo > self.hi or (self.lo == self.hi and (self.lo_open or self.hi_open))

    @property
    def positive(self) -> bool:
        return self.lo > 0 or (self.lo == 0 and self.lo_open)

    def intersect(self, other: "Interval") -> "Interval":
        if self.lo > other.lo or (self.lo == other.lo and self.lo_open):
            lo, lo_open = self.lo, self.lo_open
        else:
            lo, lo_open = other.lo, other.lo_open
        if self.hi < other.hi or (self.hi == other.hi and self.hi_open):
            hi, hi_open = self.hi, self.hi_open
        else:
            hi, hi_open = other.hi, other.hi_open
        return Interval(lo, hi, lo_open, hi_open)

    def hull(self, other: "Interval") -> "Interval":
        if self.lo < other.lo or (self.lo == other.lo and not self.lo_open):
            lo, lo_open = self.lo, self.lo_open
        else:
            lo, lo_open = other.lo, other.lo_open
        if self.hi > other.hi or (self.hi == other.hi and not self.hi_open):
            hi, hi_open = self.hi, self.hi_open
        else:
            hi, hi_open = other.hi, other.hi_open
        return Interval(lo, hi, lo_open, hi_open)

    def __str__(self) -> str:
        def end(v: float) -> str:
            return "inf" if v == INF else "-inf" if v == -INF else f"{v:g}"

        return (f"{'(' if self.lo_open else '['}{end(self.lo)}, {end(self.hi)}"
                f"{')' if self.hi_open else ']'}")


ANY = Interval()
NON_NEGATIVE = Interval(0.0, INF, False, True)


def _of_compare(op: str, v: float) -> Interval:
    return {
        "<": Interval(-INF, v, True, True), "<=": Interval(-INF, v, True, False),
        ">": Interval(v, INF, True, True), ">=": Interval(v, INF, False, True),
        "==": Interval(v, v, False, False),
    }.get(op, ANY)


def _safe(lo: float, hi: float, lo_open: bool, hi_open: bool) -> Interval:
    if math.isnan(lo) or math.isnan(hi):
        return ANY
    # An infinite end is *reached* when closed (a division by zero), not approached.
    return Interval(lo, hi, lo_open, hi_open)


def _mul(a: Interval, b: Interval) -> Interval:
    def prod(x: float, y: float) -> float:
        return 0.0 if x == 0 or y == 0 else x * y

    corners = [prod(a.lo, b.lo), prod(a.lo, b.hi), prod(a.hi, b.lo), prod(a.hi, b.hi)]
    lo, hi = min(corners), max(corners)
    both_positive = a.positive and b.positive
    reaches_inf = any(abs(end) == INF and not is_open for x in (a, b)
                      for end, is_open in ((x.lo, x.lo_open), (x.hi, x.hi_open)))
    return _safe(lo, hi, (lo == 0 and both_positive) or (lo == -INF and not reaches_inf),
                 hi == INF and not reaches_inf)


def _reciprocal(b: Interval) -> Interval:
    if b.positive:
        lo = 0.0 if b.hi == INF else 1 / b.hi
        hi = INF if b.lo == 0 else 1 / b.lo
        return _safe(lo, hi, b.hi_open, b.lo_open)
    if b.hi < 0 or (b.hi == 0 and b.hi_open):
        return _neg(_reciprocal(_neg(b)))
    if b.lo == 0 and b.hi > 0:  # a divisor that can be exactly 0: the quotient reaches inf
        return Interval(0.0 if b.hi == INF else 1 / b.hi, INF, b.hi_open, False)
    return ANY


def _neg(a: Interval) -> Interval:
    return Interval(-a.hi, -a.lo, a.hi_open, a.lo_open)


def _monotone(fn, a: Interval, domain_lo: float, domain_lo_open: bool = False) -> Interval:
    if a.lo < domain_lo or (a.lo == domain_lo and domain_lo_open and not a.lo_open):
        return ANY
    try:
        lo, hi = fn(a.lo), fn(a.hi)
    except (ValueError, OverflowError):
        return ANY
    return _safe(lo, hi, a.lo_open, a.hi_open)


def _ln(x: float) -> float:
    return -INF if x == 0 else INF if x == INF else math.log(x)


def _log1p(x: float) -> float:
    return -INF if x == -1 else INF if x == INF else math.log1p(x)


def _exp(x: float) -> float:
    return 0.0 if x == -INF else INF if x > 700 else math.exp(x)


def _pow_const(a: Interval, c: float) -> Interval:
    if c == 0:
        return Interval(1.0, 1.0, False, False)
    if a.lo < 0:
        return ANY

    def p(x: float) -> float:
        if x == 0:
            return 0.0 if c > 0 else INF
        if x == INF:
            return INF if c > 0 else 0.0
        try:
            return x ** c
        except OverflowError:
            return INF

    if c > 0:
        return _safe(p(a.lo), p(a.hi), a.lo_open, a.hi_open)
    return _safe(p(a.hi), p(a.lo), a.hi_open, a.lo_open)


def interval_of(expr: ir.Expr, known: Mapping[ir.Expr, Interval]) -> Interval:
    """The values ``expr`` can take given ``known`` bounds on sub-expressions."""
    if isinstance(expr, ir.Const):
        base = Interval(expr.value, expr.value, False, False)
    elif isinstance(expr, ir.FieldRef):
        base = NON_NEGATIVE  # durations are seconds >= 0 (null aside)
    elif isinstance(expr, ir.Unary):
        a = interval_of(expr.arg, known)
        base = {
            "neg": lambda: _neg(a),
            "ln": lambda: _monotone(_ln, a, 0.0),
            "log1p": lambda: _monotone(_log1p, a, -1.0),
            "exp": lambda: _monotone(_exp, a, -INF),
            "sqrt": lambda: _monotone(math.sqrt, a, 0.0),
            "abs": lambda: a if a.lo >= 0 else _neg(a) if a.hi <= 0 else
            Interval(0.0, max(-a.lo, a.hi), False,
                     a.hi_open if a.hi >= -a.lo else a.lo_open),
        }[expr.op]()
    else:
        a, b = interval_of(expr.left, known), interval_of(expr.right, known)
        if expr.op == "+":
            base = _safe(a.lo + b.lo, a.hi + b.hi, a.lo_open or b.lo_open, a.hi_open or b.hi_open)
        elif expr.op == "-":
            nb = _neg(b)
            base = _safe(a.lo + nb.lo, a.hi + nb.hi, a.lo_open or nb.lo_open,
                         a.hi_open or nb.hi_open)
        elif expr.op == "*":
            base = _mul(a, b)
        elif expr.op == "/":
            base = _mul(a, _reciprocal(b))
        elif isinstance(expr.right, ir.Const):
            base = _pow_const(a, expr.right.value)
        else:
            base = Interval(0.0, INF, True, True) if a.positive else ANY
    bound = known.get(expr)
    return base if bound is None else base.intersect(bound)


# ----------------------------------------------------------------------------- facts
def _facts(pred: ir.Predicate) -> tuple[dict, frozenset]:
    """What ``pred`` guarantees: bounds per expression and the fields it proves non-null."""
    if isinstance(pred, ir.Compare):
        return {pred.expr: _of_compare(pred.op, pred.value)}, _fields(pred.expr)
    if isinstance(pred, ir.And):
        bounds: dict = {}
        nonnull: frozenset = frozenset()
        for arg in pred.args:
            b, n = _facts(arg)
            nonnull |= n
            for k, v in b.items():
                bounds[k] = bounds[k].intersect(v) if k in bounds else v
        return bounds, nonnull
    if isinstance(pred, ir.Or):
        parts = [_facts(a) for a in pred.args]
        keys = set(parts[0][0]).intersection(*(set(b) for b, _ in parts[1:]))
        bounds = {}
        for k in keys:
            iv = parts[0][0][k]
            for b, _ in parts[1:]:
                iv = iv.hull(b[k])
            bounds[k] = iv
        nonnull = frozenset.intersection(*(n for _, n in parts))
        return bounds, nonnull
    return {}, frozenset()


def _fields(expr: ir.Expr) -> frozenset:
    if isinstance(expr, ir.FieldRef):
        return frozenset({expr.field})
    if isinstance(expr, ir.Unary):
        return _fields(expr.arg)
    if isinstance(expr, ir.Binary):
        return _fields(expr.left) | _fields(expr.right)
    return frozenset()


# ----------------------------------------------------------------------------- questions
def contradiction(pred: ir.Predicate, vocab: Mapping[str, Sequence[str]] | None = None
                  ) -> str | None:
    """Why ``pred`` can never be true, or None (judged per ``and`` as described above)."""
    vocab = vocab or {}
    if isinstance(pred, ir.Member):
        universe = vocab.get(pred.field)
        if pred.negated and universe and set(universe) <= set(pred.values):
            return f"'{format_predicate(pred)}' excludes every {pred.field}"
        return None
    if isinstance(pred, ir.Or):
        reasons = [contradiction(a, vocab) for a in pred.args]
        return reasons[0] if all(reasons) else None
    if not isinstance(pred, ir.And):
        return None
    for arg in pred.args:
        reason = contradiction(arg, vocab)
        if reason:
            return reason
    compares: dict = {}
    members: dict = {}
    for arg in pred.args:
        if isinstance(arg, ir.Compare):
            compares.setdefault(arg.expr, []).append(arg)
        elif isinstance(arg, ir.Member):
            members.setdefault(arg.field, []).append(arg)
    for leaves in compares.values():
        iv, excluded = ANY, set()
        for leaf in leaves:
            if leaf.op == "!=":
                excluded.add(leaf.value)
            else:
                iv = iv.intersect(_of_compare(leaf.op, leaf.value))
        if iv.empty or (iv.lo == iv.hi and iv.lo in excluded):
            return " and ".join(format_predicate(leaf) for leaf in leaves) + " contradict"
    for column, leaves in members.items():
        universe = vocab.get(column)
        allowed = set(universe) if universe else None
        excluded = set()
        for leaf in leaves:
            if leaf.negated:
                excluded |= set(leaf.values)
            else:
                allowed = set(leaf.values) if allowed is None else allowed & set(leaf.values)
        if allowed is not None and not (allowed - excluded):
            return " and ".join(format_predicate(leaf) for leaf in leaves) + " contradict"
    return None


def weight_problem(slice_: ir.Slice) -> str | None:
    """Why ``slice_``'s weight may be zero, negative or null where its filter holds, or None."""
    weight = slice_.weight
    if weight is None:
        return None
    bounds, nonnull = _facts(slice_.predicate)
    missing = sorted(_fields(weight) - nonnull)
    if missing:
        return (f"weight reads {', '.join(missing)}, which can be null where the filter holds "
                f"(photos have no video_duration, explicit events may lack dwell_time); "
                f"require it in where, e.g. '{missing[0]} > 0'")
    iv = interval_of(weight, bounds)
    if iv.hi == INF and not iv.hi_open:
        return (f"weight {format_expr(weight)} can be infinite over the filter (a division by "
                f"zero); bound the divisor away from 0 in where")
    if not iv.positive:
        return (f"weight {format_expr(weight)} can be zero or negative over the filter (it lies "
                f"in {iv}); bound it in where, e.g. '{format_expr(weight)} > 0'")
    return None


def check(elaborated: Elaborated, complete: bool = True) -> list[Diagnostic]:
    """The semantic findings on an elaborated spec, each at the statement it came from.

    With ``complete=False`` (some statements failed to elaborate) unused tables are not
    reported: the slice that would use one may be among the failures.
    """
    out: list[Diagnostic] = []
    for s in elaborated.slices:
        origin = elaborated.slice_origins[s.name]
        reason = contradiction(s.predicate, elaborated.vocab)
        if reason:
            out.append(Diagnostic(origin.where or origin.name,
                                  f"slice '{s.name}' can never select an event: {reason}"))
        problem = weight_problem(s)
        if problem:
            out.append(Diagnostic(origin.pooling or origin.name, f"slice '{s.name}': {problem}"))
    used = {s.table for s in elaborated.slices}
    for table in elaborated.tables:
        if complete and table.name not in used:
            out.append(Diagnostic(elaborated.table_origins[table.name],
                                  f"table '{table.name}' has no slices",
                                  "pool a slice into it or remove it"))
    if elaborated.tables:
        first = elaborated.tables[0]
        for table in elaborated.tables[1:]:
            if table.dim != first.dim:
                out.append(Diagnostic(
                    elaborated.table_origins[table.name],
                    f"table '{table.name}' has dim {table.dim} but table '{first.name}' has dim "
                    f"{first.dim}", "all tables of a spec share one dim: slices stack into "
                    "[slices, dim]"))
    return out


def no_slices(path: str) -> Diagnostic:
    return Diagnostic(Pos(path, 1, 1), "the spec declares no slices",
                      "e.g. slice likes: from explicit where action == like "
                      "pool media_id into media mean")
