"""IR constructors that keep the IR in its normal form: flat ``and`` / ``or``, ``not`` pushed
into the leaves, operations on constants folded.

Pure functions from IR to IR; the expression pass builds every predicate and expression
through them, so the normal form that :mod:`dv365.slices.ir` documents holds by
construction.
"""

from __future__ import annotations

import math

from dv365.slices import ir
from dv365.slices.language import NEGATED


def make_and(args) -> ir.Predicate:
    """``and`` of predicates, flattened (an and never directly holds an and)."""
    flat = []
    for arg in args:
        flat.extend(arg.args if isinstance(arg, ir.And) else (arg,))
    return flat[0] if len(flat) == 1 else ir.And(args=tuple(flat))


def make_or(args) -> ir.Predicate:
    """``or`` of predicates, flattened (an or never directly holds an or)."""
    flat = []
    for arg in args:
        flat.extend(arg.args if isinstance(arg, ir.Or) else (arg,))
    return flat[0] if len(flat) == 1 else ir.Or(args=tuple(flat))


def negate(pred: ir.Predicate) -> ir.Predicate:
    """``not pred`` in negation normal form (null stays false: ``not x > 3`` is ``x <= 3``)."""
    if isinstance(pred, ir.Compare):
        return ir.Compare(expr=pred.expr, op=NEGATED[pred.op], value=pred.value)
    if isinstance(pred, ir.Member):
        return ir.Member(field=pred.field, values=pred.values, negated=not pred.negated)
    if isinstance(pred, ir.And):
        return make_or([negate(a) for a in pred.args])
    if isinstance(pred, ir.Or):
        return make_and([negate(a) for a in pred.args])
    raise ValueError("'not true' selects nothing")  # the front end never builds it


_UNARY = {
    "neg": lambda x: -x, "ln": math.log, "log1p": math.log1p, "exp": math.exp,
    "sqrt": math.sqrt, "abs": abs,
}
_BINARY = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a / b, "^": lambda a, b: a ** b,
}


def fold(expr: ir.Expr) -> ir.Expr | None:
    """``expr`` with an operation on constants folded into one constant (an operation on
    anything else is returned as it is); None when the constant is not a finite number."""
    if isinstance(expr, ir.Unary) and isinstance(expr.arg, ir.Const):
        args = (expr.arg.value,)
        fn = _UNARY[expr.op]
    elif isinstance(expr, ir.Binary) and isinstance(expr.left, ir.Const) and \
            isinstance(expr.right, ir.Const):
        args = (expr.left.value, expr.right.value)
        fn = _BINARY[expr.op]
    else:
        return expr
    try:
        value = fn(*args)
    except (ValueError, ZeroDivisionError, OverflowError):
        value = math.nan
    if isinstance(value, complex) or not math.isfinite(value):
        return None
    return ir.Const(value=float(value) + 0.0)  # + 0.0: no -0.0, which would print as 0
