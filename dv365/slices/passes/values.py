"""What an expression of the spec means once its names are resolved: a typed value.

An expression node elaborates (:mod:`dv365.slices.passes.expressions`) to one of four kinds,
and what each kind may be used for is the language's type system: a :class:`Num` (numbers,
durations, numeric fields and arithmetic on them) is compared or used as a weight; a
:class:`Pred` (a filter) is combined with ``and`` / ``or`` / ``not``; a :class:`Column` (an
enumerated or id field) is tested with ``==``, ``!=`` or ``in``; a :class:`Word` (a bare word
or a string) is a vocabulary value, or an unknown name where anything else was needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from dv365.slices import ir
from dv365.slices.errors import Pos


@dataclass(frozen=True)
class Num:
    """A numeric expression; ``duration`` when built from duration literals only."""

    expr: ir.Expr
    duration: bool = False

    @property
    def const(self) -> float | None:
        return self.expr.value if isinstance(self.expr, ir.Const) else None


@dataclass(frozen=True)
class Pred:
    """A filter (already in the IR's normal form)."""

    pred: ir.Predicate


@dataclass(frozen=True)
class Column:
    """An enumerated or id event field, usable with ``==``, ``!=`` and ``in``."""

    name: str
    kind: str  # "enum" | "id"


@dataclass(frozen=True)
class Word:
    """A bare word or string: a vocabulary value, or an unknown name in a numeric place."""

    text: str
    quoted: bool
    pos: Pos


Typed = Union[Num, Pred, Column, Word]


def noun_phrase(value: Typed) -> str:
    """What ``value`` is, in the words of an error message (``a duration``, ``a filter``)."""
    if isinstance(value, Num):
        if value.duration:
            return "a duration"
        return "a number" if value.const is not None else "a numeric expression"
    if isinstance(value, Pred):
        return "a filter"
    if isinstance(value, Column):
        return f"the {'id' if value.kind == 'id' else 'enumerated'} field {value.name}"
    return f"the string '{value.text}'" if value.quoted else f"the name '{value.text}'"
