"""Expressions: what an expression node means, typed, folded and in normal form.

Every later pass reads its expressions (a definition's value, a table's rows, a gap, a
window, a filter, a weight) through :class:`Expressions`, in the
:class:`~dv365.slices.passes.scopes.Scope` where they are written:

* **Names** resolve, innermost first, to a ``for`` placeholder, a named definition
  (constant, numeric expression or filter), an event field, or else a bare word (a
  vocabulary value such as ``like``). Unknown names get a "did you mean" suggestion.
* **Types** (:mod:`dv365.slices.passes.values`): numbers (constants, durations,
  ``dwell_time`` / ``video_duration`` and arithmetic on them), enumerated fields (compared
  with vocabulary values), id fields (compared with integers), filters. A duration compared
  with an id, an enum compared with a number, a number used as a filter are errors.
* **Constants are folded** (``ln(2) * 3`` is one constant) but never moved across a
  comparison: ``dwell_time + 1 > 3`` stays as written. Comparisons get the expression on the
  left (``3s < dwell_time`` is ``dwell_time > 3``; ``a < b`` with two non-constant sides is
  ``a - b < 0``); chains and ranges become conjunctions (``lo..hi`` is ``>= lo and < hi``);
  ``not`` is pushed into the leaves (negation normal form); ``and`` / ``or`` are flattened;
  sets are deduplicated and ordered (vocabulary order; ids ascending).

A problem is reported and raises :class:`~dv365.slices.passes.report.Skip` for the
expression; where one expression holds several independent parts (the operands of an
``and``, the values of a set) each is checked, so that all their problems are reported.
"""

from __future__ import annotations

from typing import Mapping

from dv365.data.schema import ID_COLUMNS, VOCAB_COLUMNS
from dv365.durations import duration_text
from dv365.slices import ast, ir
from dv365.slices.errors import Pos, did_you_mean
from dv365.slices.language import FLIPPED, FUNCTIONS, MAX_GAP_OR_WINDOW_MS, NUMERIC_FIELDS
from dv365.slices.passes.names import (
    PLACEHOLDER, expand_template, unknown_name, unknown_placeholder,
)
from dv365.slices.passes.normal_form import fold, make_and, make_or, negate
from dv365.slices.passes.report import Reporter, Skip
from dv365.slices.passes.scopes import Definitions, Scope
from dv365.slices.passes.values import Column, Num, Pred, Typed, Word, noun_phrase
from dv365.slices.printer import format_number


class Expressions:
    """Elaborates expression nodes against one vocabulary and one table of definitions
    (which the declarations pass fills as it goes), reporting to one reporter."""

    def __init__(self, vocab: Mapping[str, tuple[str, ...]], definitions: Definitions,
                 report: Reporter):
        self.vocab = vocab
        self.definitions = definitions
        self.report = report

    # -- values --------------------------------------------------------------------------
    def resolve(self, node: ast.Node, scope: Scope) -> Typed:
        """The typed meaning of an expression node."""
        if isinstance(node, ast.Number):
            return Num(ir.Const(value=node.value), duration=node.unit is not None)
        if isinstance(node, ast.String):
            return Word(node.value, True, node.pos)
        if isinstance(node, ast.Name):
            return self._name(node, scope)
        if isinstance(node, ast.Call):
            return self._call(node, scope)
        if isinstance(node, ast.Neg):
            arg = self.number(node.arg, scope, "an operand of '-'")
            return Num(self._fold(node.pos, ir.Unary(op="neg", arg=arg.expr)), arg.duration)
        if isinstance(node, ast.BinOp):
            return self._binop(node, scope)
        if isinstance(node, (ast.Compare, ast.In, ast.Not, ast.Logic)):
            return Pred(self.predicate(node, scope))
        raise self.report.fail(_pos(node), "unsupported expression")

    def _name(self, node: ast.Name, scope: Scope) -> Typed:
        fail = self.report.fail
        whole = PLACEHOLDER.fullmatch(node.name)
        if whole:
            binding = scope.loop(whole.group(1))
            if binding is None:
                raise unknown_placeholder(whole.group(1), node.pos, scope, self.report)
            if binding.value is None:  # {window}
                if binding.window_ms is None:
                    raise fail(node.pos, "{window} is all time here, not a duration")
                return Num(ir.Const(value=binding.window_ms / 1000), duration=True)
            return self.resolve(binding.value, binding.scope)
        name = expand_template(node, scope, self.report)
        found = self.definitions.lookup(scope, name)
        if found is not None:
            return found
        if name in NUMERIC_FIELDS:
            return Num(ir.FieldRef(field=name))
        if name in ID_COLUMNS:
            return Column(name, "id")
        if name in VOCAB_COLUMNS:
            return Column(name, "enum")
        if name == "timeline":
            raise fail(node.pos, "filter on the timeline with 'from explicit' or "
                       "'from implicit', not in where")
        if name == "ts":
            raise fail(node.pos, "event time is selected with windows ('over 7d'), "
                       "not in where")
        if name == "user_id":
            raise fail(node.pos, "a slice cannot filter on user_id")
        return Word(name, False, node.pos)

    def _call(self, node: ast.Call, scope: Scope) -> Num:
        func = node.func.name
        if func not in FUNCTIONS:
            raise self.report.fail(node.func.pos, f"unknown function '{func}'",
                                   did_you_mean(func, FUNCTIONS) or
                                   f"functions: {', '.join(FUNCTIONS)}")
        if len(node.args) != 1:
            raise self.report.fail(node.pos, f"{func} takes one argument, got {len(node.args)}")
        arg = self.number(node.args[0], scope, f"the argument of {func}")
        return Num(self._fold(node.pos, ir.Unary(op=func, arg=arg.expr)))

    def _binop(self, node: ast.BinOp, scope: Scope) -> Num:
        left = self.number(node.left, scope, f"an operand of '{node.op}'")
        right = self.number(node.right, scope, f"an operand of '{node.op}'")
        duration = (left.duration and right.duration and node.op in "+-") or (
            (left.duration != right.duration) and node.op == "*") or (
            left.duration and not right.duration and node.op == "/")
        expr = ir.Binary(op=node.op, left=left.expr, right=right.expr)
        return Num(self._fold(node.pos, expr), duration)

    def _unknown(self, word: Word, scope: Scope) -> Skip:
        return unknown_name(word.text, word.pos, scope, self.definitions, self.report)

    def _fold(self, pos: Pos, expr: ir.Expr) -> ir.Expr:
        folded = fold(expr)
        if folded is None:
            raise self.report.fail(pos, "this constant expression is not a finite number")
        return folded

    def number(self, node: ast.Node, scope: Scope, what: str) -> Num:
        """``node`` as a numeric expression (``what`` names it in the error otherwise)."""
        value = self.resolve(node, scope)
        if isinstance(value, Num):
            return value
        if isinstance(value, Word) and not value.quoted:
            raise self._unknown(value, scope)
        raise self.report.fail(_pos(node), f"{what} must be a number, not {noun_phrase(value)}")

    # -- predicates ----------------------------------------------------------------------
    def predicate(self, node: ast.Node, scope: Scope) -> ir.Predicate:
        """``node`` as a filter, in the IR's normal form."""
        if isinstance(node, ast.Logic):
            args, failed = [], False
            for arg in node.args:
                try:
                    args.append(self.predicate(arg, scope))
                except Skip:
                    failed = True
            if failed:
                raise Skip()
            return make_and(args) if node.op == "and" else make_or(args)
        if isinstance(node, ast.Not):
            return negate(self.predicate(node.arg, scope))
        if isinstance(node, ast.Compare):
            return self._compare(node, scope)
        if isinstance(node, ast.In):
            return self._in(node, scope)
        value = self.resolve(node, scope)
        if isinstance(value, Pred):
            return value.pred
        if isinstance(value, Word) and not value.quoted:
            raise self._unknown(value, scope)
        raise self.report.fail(_pos(node), f"expected a filter (a comparison), not "
                               f"{noun_phrase(value)}")

    def _compare(self, node: ast.Compare, scope: Scope) -> ir.Predicate:
        operands = [self.resolve(o, scope) for o in node.operands]
        leaves = []
        for i, op in enumerate(node.ops):
            leaves.append(self._pair(operands[i], op, operands[i + 1], node.operands[i],
                                     node.operands[i + 1], node.pos, scope))
        return make_and(leaves)

    def _pair(self, left: Typed, op: str, right: Typed, lnode, rnode, pos: Pos,
              scope: Scope) -> ir.Predicate:
        fail = self.report.fail
        # Put the field (or the non-constant side) on the left.
        if isinstance(right, Column) or (isinstance(left, Num) and isinstance(right, Num)
                                         and left.const is not None and right.const is None):
            left, right, lnode, rnode, op = right, left, rnode, lnode, FLIPPED[op]
        for side, node in ((left, lnode), (right, rnode)):
            if isinstance(side, Pred):
                raise fail(_pos(node), "a filter cannot be compared; combine filters "
                           "with and / or")
        if isinstance(left, Column):
            if op not in ("==", "!="):
                raise fail(pos, f"{left.name} compares only with ==, != or in, not {op}")
            values = self._member_values(left, [(right, rnode)], scope)
            return ir.Member(field=left.name, values=values, negated=op == "!=")
        if isinstance(left, Num) and isinstance(right, Num):
            if left.const is not None and right.const is not None:
                raise fail(pos, "this comparison has a constant on both sides")
            if right.const is not None:
                return ir.Compare(expr=left.expr, op=op, value=right.const)
            return ir.Compare(expr=self._fold(pos, ir.Binary(op="-", left=left.expr,
                                                             right=right.expr)),
                              op=op, value=0.0)
        for side, node in ((left, lnode), (right, rnode)):
            if isinstance(side, Word) and not side.quoted:
                raise self._unknown(side, scope)
        raise fail(pos, f"cannot compare {noun_phrase(left)} with {noun_phrase(right)}")

    def _in(self, node: ast.In, scope: Scope) -> ir.Predicate:
        fail = self.report.fail
        left = self.resolve(node.left, scope)
        target = node.target
        if isinstance(target, ast.Range):
            if not isinstance(left, Num) or left.const is not None:
                if isinstance(left, Word) and not left.quoted:
                    raise self._unknown(left, scope)
                raise fail(_pos(node.left), f"a range needs a numeric expression on the "
                           f"left, not {noun_phrase(left)}")
            if target.lo is None and target.hi is None:
                raise fail(target.pos, "a range needs at least one end (lo.., ..hi)")
            lo = self.constant(target.lo, scope, "a range end") if target.lo is not None else None
            hi = self.constant(target.hi, scope, "a range end") if target.hi is not None else None
            if lo is not None and hi is not None and lo >= hi:
                raise fail(target.pos, f"empty range {format_number(lo)}..{format_number(hi)}",
                           "a range lo..hi holds lo <= x < hi")
            leaves = []
            if lo is not None:
                leaves.append(ir.Compare(expr=left.expr, op=">=", value=lo))
            if hi is not None:
                leaves.append(ir.Compare(expr=left.expr, op="<", value=hi))
            pred = make_and(leaves)
            return negate(pred) if node.negated else pred
        if not isinstance(left, Column):
            if isinstance(left, Word) and not left.quoted:
                raise self._unknown(left, scope)
            raise fail(_pos(node.left), f"'in [...]' needs an id or enumerated field on "
                       f"the left, not {noun_phrase(left)}",
                       "for numbers use a range: dwell_time in 3s..15s")
        if not target.items:
            raise fail(target.pos, "empty set: this filter can never be true")
        items = [(self.resolve(i, scope), i) for i in target.items]
        return ir.Member(field=left.name, values=self._member_values(left, items, scope),
                         negated=node.negated)

    def _member_values(self, column: Column, items, scope: Scope) -> tuple:
        error = self.report.error
        if column.kind == "enum":
            allowed = self.vocab[column.name]
            chosen, failed = set(), False
            for value, node in items:
                if isinstance(value, Num):
                    error(_pos(node), f"{column.name} is compared with "
                          f"{'a duration' if value.duration else 'a number'}; its "
                          f"values are names like {_sample(allowed)}")
                    failed = True
                elif isinstance(value, Word):
                    if value.text not in allowed:
                        hint = did_you_mean(value.text, allowed) or \
                            f"{column.name} is one of {_sample(allowed, 12)}"
                        error(value.pos, f"unknown {column.name} '{value.text}'", hint)
                        failed = True
                    chosen.add(value.text)
                else:
                    error(_pos(node), f"{column.name} cannot be compared with "
                          f"{noun_phrase(value)}")
                    failed = True
            if failed:
                raise Skip()
            return tuple(v for v in allowed if v in chosen)
        ids, failed = set(), False
        for value, node in items:
            if isinstance(value, Num) and value.const is not None and not value.duration:
                v = value.const
                if v != int(v) or abs(v) >= 2**63:
                    error(_pos(node), f"{column.name} values are integers, not "
                          f"{format_number(v)}")
                    failed = True
                else:
                    ids.add(int(v))
            elif isinstance(value, Num) and value.duration:
                error(_pos(node), f"cannot compare id {column.name} with a duration")
                failed = True
            elif isinstance(value, Word) and not value.quoted:
                raise self._unknown(value, scope)
            else:
                error(_pos(node), f"cannot compare id {column.name} with {noun_phrase(value)}")
                failed = True
        if failed:
            raise Skip()
        return tuple(sorted(ids))

    # -- constants -----------------------------------------------------------------------
    def constant(self, node: ast.Node, scope: Scope, what: str) -> float:
        """``node`` as a constant number."""
        value = self.number(node, scope, what)
        if value.const is None:
            raise self.report.fail(_pos(node), f"{what} must be a constant")
        return value.const

    def integer(self, node: ast.Node, scope: Scope, what: str, lo: int, hi: int) -> int:
        """``node`` as a constant integer in ``[lo, hi]``."""
        fail = self.report.fail
        value = self.number(node, scope, what)
        if value.const is None or value.duration:
            raise fail(_pos(node), f"{what} must be a constant integer")
        v = value.const
        if v != int(v):
            raise fail(_pos(node), f"{what} must be an integer, not {format_number(v)}")
        if not lo <= v <= hi:
            raise fail(_pos(node), f"{what} must be between {lo:,} and {hi:,}, not "
                       f"{format_number(v)}")
        return int(v)

    def duration_ms(self, node: ast.Node, scope: Scope, what: str, allow_zero: bool) -> int:
        """``node`` (a gap or a window) as a whole number of milliseconds, at most
        :data:`~dv365.slices.language.MAX_GAP_OR_WINDOW_MS`; positive unless ``allow_zero``."""
        fail = self.report.fail
        value = self.number(node, scope, what)
        if value.const is None:
            raise fail(_pos(node), f"{what} must be a constant duration")
        seconds = value.const
        if not value.duration and seconds != 0:
            raise fail(_pos(node), f"{what} needs a unit", f"e.g. {format_number(seconds)}d or "
                       f"{format_number(seconds)}h")
        ms = round(seconds * 1000)
        if abs(seconds * 1000 - ms) > 1e-6 * max(1.0, abs(ms)):
            raise fail(_pos(node), f"{what} is not a whole number of milliseconds")
        if ms > MAX_GAP_OR_WINDOW_MS:
            raise fail(_pos(node), f"{what} is longer than 100 years")
        if ms < 0 or (ms == 0 and not allow_zero):
            shown = ("-" if ms < 0 else "") + duration_text(abs(ms))
            raise fail(_pos(node), f"{what} must be positive, not {shown}"
                       if not allow_zero else f"{what} cannot be negative ({shown})")
        return ms


def _pos(node) -> Pos:
    return getattr(node, "pos", Pos("<spec>", 1, 1))


def _sample(values, n: int = 4) -> str:
    values = list(values)
    shown = ", ".join(values[:n])
    return shown + (", ..." if len(values) > n else "") if values else "(none declared)"
