"""IR -> spec text, and slices in plain words.

:func:`print_spec` writes a spec that compiles back to the same IR (``compile_spec(
print_spec(ir), vocab=ir.vocab)`` has the same :meth:`~dv365.slices.ir.SpecIR.content_hash`):
one table statement per table, one slice statement per slice with its single window,
numbers spelled exactly (``repr`` of the float), parentheses only where precedence needs
them, names and values quoted where they would otherwise read as keywords or fields.
:func:`describe` is what ``dv365 compile --explain`` prints.
"""

from __future__ import annotations

import json
import re

from dv365.data.schema import EVENT_FIELDS
from dv365.durations import DEFAULT_GAP_MS, duration_text
from dv365.slices import ir
from dv365.slices.language import FUNCTIONS, keywords

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _word(text: str, reserved: frozenset[str] = frozenset()) -> str:
    if _IDENT.fullmatch(text) and text not in keywords() and text not in reserved:
        return text
    return json.dumps(text, ensure_ascii=False)


def format_number(v: float) -> str:
    """A number as spec text: integral values without a point, others exactly (``repr``)."""
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def format_window(window_ms: int | None) -> str:
    """A window as spec text (``all``, ``7d``, ``36h``): what ``over`` and ``{window}`` say."""
    return "all" if window_ms is None else duration_text(window_ms)


# ----------------------------------------------------------------------------- expressions
_ATOM, _POWER, _UNARY, _PRODUCT, _SUM = 5, 4, 3, 2, 1


def _prec(expr: ir.Expr) -> int:
    if isinstance(expr, ir.Const):
        return _UNARY if expr.value < 0 or str(expr.value).startswith("-") else _ATOM
    if isinstance(expr, ir.Unary):
        return _UNARY if expr.op == "neg" else _ATOM
    if isinstance(expr, ir.Binary):
        return {"^": _POWER, "*": _PRODUCT, "/": _PRODUCT, "+": _SUM, "-": _SUM}[expr.op]
    return _ATOM


def format_expr(expr: ir.Expr, need: int = _SUM) -> str:
    """An expression in spec syntax, parenthesized only where the grammar needs it."""
    text = _format_expr(expr)
    return f"({text})" if _prec(expr) < need else text


def _format_expr(expr: ir.Expr) -> str:
    if isinstance(expr, ir.Const):
        return format_number(expr.value)
    if isinstance(expr, ir.FieldRef):
        return expr.field
    if isinstance(expr, ir.Unary):
        if expr.op == "neg":
            return "-" + format_expr(expr.arg, _UNARY)
        return f"{expr.op}({format_expr(expr.arg)})"
    if expr.op == "^":
        return f"{format_expr(expr.left, _ATOM)} ^ {format_expr(expr.right, _UNARY)}"
    if expr.op in "*/":
        return f"{format_expr(expr.left, _PRODUCT)} {expr.op} {format_expr(expr.right, _UNARY)}"
    return f"{format_expr(expr.left, _SUM)} {expr.op} {format_expr(expr.right, _PRODUCT)}"


# ----------------------------------------------------------------------------- predicates
_RESERVED_VALUES = frozenset(EVENT_FIELDS) | frozenset(FUNCTIONS)


def _value(v: str | int) -> str:
    return str(v) if isinstance(v, int) else _word(v, _RESERVED_VALUES)


def format_predicate(pred: ir.Predicate, nested: bool = False) -> str:
    """A predicate in spec syntax (an ``or`` inside an ``and`` gets parentheses)."""
    if isinstance(pred, ir.Compare):
        return f"{format_expr(pred.expr)} {pred.op} {format_number(pred.value)}"
    if isinstance(pred, ir.Member):
        values = ", ".join(_value(v) for v in pred.values)
        return f"{pred.field} {'not in' if pred.negated else 'in'} [{values}]"
    if isinstance(pred, ir.And):
        return " and ".join(format_predicate(a, nested=True) for a in pred.args)
    if isinstance(pred, ir.Or):
        text = " or ".join(format_predicate(a) for a in pred.args)
        return f"({text})" if nested else text
    return "true"


# ----------------------------------------------------------------------------- specs
def format_table(table: ir.Table) -> str:
    hashing = table.hashing.kind
    if hashing == "hash":
        hashing = f"hash({table.hashing.seed})"
    return (f"table {_word(table.name)}: {table.id_column}, rows {table.num_rows}, "
            f"dim {table.dim}, hashing {hashing}")


def format_slice(s: ir.Slice) -> str:
    parts = [f"slice {_word(s.name)}: from {s.timeline}"]
    if not isinstance(s.predicate, ir.TruePred):
        parts.append(f"where {format_predicate(s.predicate)}")
    parts.append(f"pool {s.id_column} into {_word(s.table)}")
    if s.weight is None:
        parts.append(s.pooling)  # mean or sum
    else:
        kind = "mean" if s.pooling == "weighted_mean" else "sum"
        parts.append(f"weighted {kind} by {format_expr(s.weight)}")
    parts.append(f"over {format_window(s.window_ms)}")
    return " ".join(parts)


def print_spec(spec: ir.SpecIR) -> str:
    """Spec text that compiles back to ``spec`` (same content hash, given its vocab)."""
    lines = [f"# {len(spec.slices)} slices, {len(spec.tables)} tables "
             f"(printed by dv365 from IR {spec.content_hash()[:12]})",
             f"gap {duration_text(spec.gap_ms)}", ""]
    lines += [format_table(t) for t in spec.tables]
    lines.append("")
    lines += [format_slice(s) for s in spec.slices]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- plain words
def _words(pred: ir.Predicate) -> str:
    if isinstance(pred, ir.Member):
        values = " or ".join(str(v) for v in pred.values)
        return f"{pred.field} is {'not ' if pred.negated else ''}{values}"
    if isinstance(pred, ir.Compare):
        return f"{format_expr(pred.expr)} {pred.op} {format_number(pred.value)}"
    if isinstance(pred, ir.And):
        return ", ".join(_words(a) if not isinstance(a, ir.Or) else f"({_words(a)})"
                         for a in pred.args)
    if isinstance(pred, ir.Or):
        return "either " + " or ".join(
            f"({_words(a)})" if isinstance(a, ir.And) else _words(a) for a in pred.args)
    return ""


def describe(s: ir.Slice, gap_ms: int = DEFAULT_GAP_MS) -> str:
    """One slice in plain words, e.g. for ``dv365 compile --explain``."""
    when = ("all history" if s.window_ms is None
            else f"the last {duration_text(s.window_ms)}")
    gap = f"up to {duration_text(gap_ms)} before the request" if gap_ms else "up to the request"
    text = f"{s.timeline} events of {when}, {gap}"
    if not isinstance(s.predicate, ir.TruePred):
        text += f", where {_words(s.predicate)}"
    pooling = {"mean": "the mean", "weighted_mean": "the weighted mean", "sum": "the sum"}[
        s.pooling]
    text += f"; {pooling} of their {s.id_column} rows of table {s.table}"
    if s.weight is not None:
        text += f", weighted by {format_expr(s.weight)}"
    return text
