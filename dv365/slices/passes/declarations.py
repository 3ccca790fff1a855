"""Declarations, the second pass: definitions, ``gap``, ``dim`` and tables, in source order.

:func:`declare` takes the :class:`~dv365.slices.passes.scopes.Expansion` and reads every
declaration but the slices, in the order written, since each may use what was declared
above it: ``name = expr`` binds a name in its scope (to a typed value: a constant, a numeric
expression or a filter), ``gap`` and ``dim`` are set once at the top level, and tables are
declared (:mod:`dv365.slices.passes.tables`) with the ``dim`` set above them. It gives
:class:`Declarations`, which the slices pass reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from dv365.data.schema import EVENT_FIELDS
from dv365.durations import DEFAULT_GAP_MS
from dv365.slices import ast
from dv365.slices.errors import Pos
from dv365.slices.language import FUNCTIONS, MAX_DIM
from dv365.slices.passes.expressions import Expressions
from dv365.slices.passes.names import unknown_name
from dv365.slices.passes.report import Reporter, Skip
from dv365.slices.passes.scopes import Definition, Definitions, Expansion, Scope
from dv365.slices.passes.tables import DeclaredTable, declare_table
from dv365.slices.passes.values import Word


@dataclass(frozen=True)
class Declarations:
    """What :func:`declare` gives: every definition (by scope), the settings, the tables."""

    definitions: Definitions
    gap: Setting | None
    dim: Setting | None
    tables: Mapping[str, DeclaredTable]

    @property
    def gap_ms(self) -> int:
        """The spec's gap, or the default (24 hours) when it sets none."""
        return self.gap.value if self.gap is not None else DEFAULT_GAP_MS


@dataclass(frozen=True)
class Setting:
    """A top-level setting (``gap``, in ms, or ``dim``) and where it was set."""

    value: int
    pos: Pos


def declare(expansion: Expansion, expressions: Expressions, report: Reporter) -> Declarations:
    """Read the definitions, settings and tables of ``expansion``; problems go to ``report``.

    The definitions go to ``expressions.definitions`` as they are read, so that each
    expression sees the definitions above it (and the slices pass, all of them).
    """
    definitions = expressions.definitions
    gap: Setting | None = None
    dim: Setting | None = None
    tables: dict[str, DeclaredTable] = {}
    for placed in expansion.statements:
        stmt, scope = placed.stmt, placed.scope
        try:
            if isinstance(stmt, ast.Define):
                name, definition = _define(stmt, scope, expressions, report)
                definitions.add(scope, name, definition)
            elif isinstance(stmt, ast.Gap):
                if gap is not None:
                    raise report.fail(stmt.pos, f"gap is set twice (first at {gap.pos})")
                gap = Setting(expressions.duration_ms(stmt.value, scope, "gap", allow_zero=True),
                              stmt.pos)
            elif isinstance(stmt, ast.Dim):
                if dim is not None:
                    raise report.fail(stmt.pos, f"dim is set twice (first at {dim.pos})")
                dim = Setting(expressions.integer(stmt.value, scope, "dim", 1, MAX_DIM), stmt.pos)
            elif isinstance(stmt, ast.TableDecl):
                declared = declare_table(stmt, scope, tables, dim.value if dim else None,
                                         expressions, report)
                tables[declared.table.name] = declared
        except Skip:
            pass
    return Declarations(definitions=definitions, gap=gap, dim=dim, tables=tables)


def _define(stmt: ast.Define, scope: Scope, expressions: Expressions,
            report: Reporter) -> tuple[str, Definition]:
    fail = report.fail
    name = stmt.name.name
    if stmt.name.is_template:
        raise fail(stmt.name.pos, "a defined name cannot hold placeholders")
    if name in EVENT_FIELDS:
        raise fail(stmt.name.pos, f"'{name}' is an event field; pick another name")
    if name in FUNCTIONS:
        raise fail(stmt.name.pos, f"'{name}' is a function; pick another name")
    first = expressions.definitions.in_scope(scope, name)
    if first is not None:
        raise fail(stmt.name.pos, f"'{name}' is defined twice (first at {first.pos})")
    if scope.loop(name) is not None:
        raise fail(stmt.name.pos, f"'{name}' is a for variable here")
    value = expressions.resolve(stmt.value, scope)
    if isinstance(value, Word):
        if value.quoted:
            raise fail(value.pos, "a definition must be a number, an expression or "
                       "a filter, not a string")
        raise unknown_name(value.text, value.pos, scope, expressions.definitions, report)
    return name, Definition(value, stmt.name.pos)
