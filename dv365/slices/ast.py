"""The typed syntax tree of a slice spec, every node with its source position.

The tree says what was *written*, not yet what it means: names are unresolved (a field, a
named constant, a named filter or a vocabulary value), placeholders such as ``{action}`` are
unexpanded, and numbers and filters share one expression grammar.
:mod:`dv365.slices.elaborate` resolves and checks it, and builds the IR.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from dv365.slices.errors import Pos


# ----------------------------------------------------------------------------- expressions
@dataclass(frozen=True)
class Number:
    """A numeric literal; ``unit`` is set for durations (``15s``, ``3d``; ``ms`` is exact)."""

    pos: Pos
    text: str
    value: float
    unit: str | None = None
    ms: int | None = None  # durations only: the exact number of milliseconds, when integral


@dataclass(frozen=True)
class String:
    pos: Pos
    value: str


@dataclass(frozen=True)
class Name:
    """An identifier; may contain ``{placeholders}`` of an enclosing ``for``."""

    pos: Pos
    name: str

    @property
    def is_template(self) -> bool:
        return "{" in self.name


@dataclass(frozen=True)
class Call:
    pos: Pos
    func: Name
    args: tuple["Node", ...]


@dataclass(frozen=True)
class Neg:
    pos: Pos
    arg: "Node"


@dataclass(frozen=True)
class BinOp:
    """``+ - * / ^``."""

    pos: Pos
    op: str
    left: "Node"
    right: "Node"


@dataclass(frozen=True)
class Compare:
    """A comparison chain ``a < b <= c`` (``ops[i]`` sits between ``operands[i]`` and ``[i+1]``)."""

    pos: Pos
    operands: tuple["Node", ...]
    ops: tuple[str, ...]


@dataclass(frozen=True)
class Range:
    """``lo..hi``: ``lo <= x < hi``; either end may be open (missing)."""

    pos: Pos
    lo: "Node | None"
    hi: "Node | None"


@dataclass(frozen=True)
class ValueSet:
    pos: Pos
    items: tuple["Node", ...]


@dataclass(frozen=True)
class In:
    """``x in [a, b]``, ``x in lo..hi``, or their ``not in`` forms."""

    pos: Pos
    left: "Node"
    target: ValueSet | Range
    negated: bool = False


@dataclass(frozen=True)
class Not:
    pos: Pos
    arg: "Node"


@dataclass(frozen=True)
class Logic:
    """``and`` / ``or`` of two or more operands."""

    pos: Pos
    op: str
    args: tuple["Node", ...]


Node = Union[Number, String, Name, Call, Neg, BinOp, Compare, In, Not, Logic]


# ------------------------------------------------------------------------------ statements
@dataclass(frozen=True)
class Include:
    pos: Pos
    path: str


@dataclass(frozen=True)
class Gap:
    pos: Pos
    value: Node


@dataclass(frozen=True)
class Dim:
    pos: Pos
    value: Node


@dataclass(frozen=True)
class Define:
    """``name = expr``: a named constant, numeric expression or filter."""

    pos: Pos
    name: Name
    value: Node


@dataclass(frozen=True)
class HashingSpec:
    pos: Pos
    kind: Name
    seed: Node | None = None


@dataclass(frozen=True)
class TableDecl:
    pos: Pos
    name: Name
    id_column: Name
    rows: tuple[Node, ...] = ()
    dims: tuple[Node, ...] = ()
    hashings: tuple[HashingSpec, ...] = ()


@dataclass(frozen=True)
class From:
    pos: Pos
    timeline: Name


@dataclass(frozen=True)
class Where:
    pos: Pos
    predicate: Node


@dataclass(frozen=True)
class Pool:
    pos: Pos
    id_column: Name
    table: Name | None


@dataclass(frozen=True)
class Pooling:
    """``mean``, ``sum``, ``weighted mean by w`` or ``weighted sum by w``."""

    pos: Pos
    kind: str  # "mean" | "sum" | "weighted_mean" | "weighted_sum"
    weight: Node | None = None


@dataclass(frozen=True)
class Window:
    """One entry of ``over``: ``all`` (``value`` None) or a duration expression."""

    pos: Pos
    value: Node | None


@dataclass(frozen=True)
class Over:
    pos: Pos
    windows: tuple[Window, ...]


Clause = Union[From, Where, Pool, Pooling, Over]


@dataclass(frozen=True)
class SliceDecl:
    pos: Pos
    name: Name
    clauses: tuple[Clause, ...]


@dataclass(frozen=True)
class LoopValue:
    """One value of a ``for`` list, optionally labelled (``half = 0.5``: names get ``half``)."""

    pos: Pos
    value: Node
    label: Name | None = None


@dataclass(frozen=True)
class Binding:
    pos: Pos
    var: Name
    values: tuple[LoopValue, ...]


@dataclass(frozen=True)
class Generator:
    """``for a in [...], b in [...] { ... }``: the body once per combination (cross product)."""

    pos: Pos
    bindings: tuple[Binding, ...]
    body: tuple["Statement", ...]


Statement = Union[Include, Gap, Dim, Define, TableDecl, SliceDecl, Generator]


@dataclass(frozen=True)
class Module:
    """One parsed file: its path (as shown in messages), text, statements and how many
    tokens it has."""

    path: str
    source: str
    statements: tuple[Statement, ...] = field(default_factory=tuple)
    tokens: int = field(default=0, compare=False)
