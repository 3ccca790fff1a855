"""Slices and windows, the last pass: each slice statement becomes one IR slice per window.

:func:`elaborate_slices` reads the slice statements of the
:class:`~dv365.slices.passes.scopes.Expansion` after every declaration
(:class:`~dv365.slices.passes.declarations.Declarations`), so a slice may use a table or a
definition written further down; the slices keep their order. A statement runs once per
window of its ``over`` (``all`` when it has none), with ``{window}`` bound to the window
(``v_{window}`` over ``all, 7d`` names ``v_all`` and ``v_7d``). Each part of a statement
(clauses, windows, timeline, pool, filter, weight) is checked on its own, so that one
statement reports all its problems. It gives :class:`Slices`: the slices, and where each
was written, for the messages of :mod:`dv365.slices.check`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from dv365.data.schema import TIMELINES
from dv365.slices import ast, ir
from dv365.slices.errors import Pos, did_you_mean
from dv365.slices.language import MAX_SLICES, WINDOW_VARIABLE
from dv365.slices.passes.declarations import Declarations
from dv365.slices.passes.expressions import Expressions
from dv365.slices.passes.names import expand_template, id_column
from dv365.slices.passes.report import Reporter, Skip
from dv365.slices.passes.scopes import Expansion, LoopBinding, Scope
from dv365.slices.printer import format_window

_CLAUSE_WORDS = {ast.From: "from", ast.Where: "where", ast.Pool: "pool",
                 ast.Pooling: "pooling (mean, sum, weighted ...)", ast.Over: "over"}
_POOLINGS = {"mean": "mean", "sum": "sum", "weighted_mean": "weighted_mean",
             "weighted_sum": "sum"}


@dataclass(frozen=True)
class SliceOrigin:
    """Where a slice was written (for messages of later checks)."""

    name: Pos
    statement: Pos
    where: Pos | None
    pooling: Pos | None


@dataclass(frozen=True)
class Slices:
    """What :func:`elaborate_slices` gives: the slices in output order, and their origins."""

    slices: tuple[ir.Slice, ...]
    origins: Mapping[str, SliceOrigin]


def elaborate_slices(expansion: Expansion, declarations: Declarations,
                     expressions: Expressions, report: Reporter) -> Slices:
    """The IR slices of every slice statement; problems go to ``report``."""
    run = _SliceStatements(declarations, expressions, report)
    for placed in expansion.statements:
        if not isinstance(placed.stmt, ast.SliceDecl):
            continue
        try:
            run.statement(placed.stmt, placed.scope)
        except Skip:
            pass
        if len(run.slices) > MAX_SLICES:
            report.error(placed.stmt.pos, f"the spec has more than {MAX_SLICES:,} slices")
            break
    return Slices(slices=tuple(run.slices), origins=run.origins)


class _SliceStatements:
    def __init__(self, declarations: Declarations, expressions: Expressions,
                 report: Reporter):
        self.tables = declarations.tables
        self.expressions = expressions
        self.report = report
        self.slices: list[ir.Slice] = []
        self.origins: dict[str, SliceOrigin] = {}

    def statement(self, stmt: ast.SliceDecl, scope: Scope) -> None:
        error, fail = self.report.error, self.report.fail
        by_type: dict[type, list] = {}
        for clause in stmt.clauses:
            by_type.setdefault(type(clause), []).append(clause)
        bad = False
        for kind, clauses in by_type.items():
            if len(clauses) > 1:
                error(clauses[1].pos, f"slice has more than one {_CLAUSE_WORDS[kind]} clause")
                bad = True
        if ast.From not in by_type:
            error(stmt.name.pos, "slice needs a timeline", "add 'from explicit' or 'from implicit'")
            bad = True
        if ast.Pool not in by_type:
            error(stmt.name.pos, "slice needs an id column and a table",
                  "add 'pool media_id into <table>'")
            bad = True
        elif by_type[ast.Pool][0].table is None:
            error(by_type[ast.Pool][0].pos, "slice has no table",
                  "add 'into <table>' after the id column")
            bad = True
        if bad:
            raise Skip()

        bad = False
        over = by_type.get(ast.Over, [None])[0]
        if over is not None and len(self.slices) + len(over.windows) > MAX_SLICES:
            raise fail(over.pos, f"the spec has more than {MAX_SLICES:,} slices")
        windows: list[tuple[int | None, Pos]] = []
        seen: set[int | None] = set()
        for window in (over.windows if over is not None else [ast.Window(stmt.pos, None)]):
            try:
                ms = None if window.value is None else self.expressions.duration_ms(
                    window.value, scope, "window", allow_zero=False)
            except Skip:
                bad = True
                continue
            if ms in seen:
                error(window.pos, f"window {format_window(ms)} is listed twice")
                bad = True
            seen.add(ms)
            windows.append((ms, window.pos))

        timeline_clause: ast.From = by_type[ast.From][0]
        timeline = expand_template(timeline_clause.timeline, scope, self.report)
        if timeline not in TIMELINES:
            error(timeline_clause.timeline.pos, f"unknown timeline '{timeline}'",
                  did_you_mean(timeline, TIMELINES) or "explicit or implicit")
            bad = True
        pool: ast.Pool = by_type[ast.Pool][0]
        try:
            column = id_column(pool.id_column, scope, self.report)
            table_name = expand_template(pool.table, scope, self.report)
            if table_name not in self.tables:
                raise fail(pool.table.pos, f"unknown table '{table_name}'",
                           did_you_mean(table_name, self.tables) or
                           "declare it with table <name>: <id column>, rows N")
            table = self.tables[table_name].table
            if table.id_column != column:
                raise fail(pool.id_column.pos, f"slice pools {column} but table "
                           f"'{table_name}' holds {table.id_column}")
        except Skip:
            bad = True

        pooling_clause: ast.Pooling | None = by_type.get(ast.Pooling, [None])[0]
        where: ast.Where | None = by_type.get(ast.Where, [None])[0]

        if not windows:  # every window was wrong: still check the rest of the statement
            windows.append((None, stmt.pos))
        for window_ms, _ in windows:
            inner = Scope(parent=scope, loops={
                WINDOW_VARIABLE: LoopBinding(None, format_window(window_ms), scope, window_ms)})
            try:
                name = expand_template(stmt.name, inner, self.report, naming=True)
            except Skip:
                return
            if not name.strip() or not name.isprintable():
                raise fail(stmt.name.pos, f"slice name {name!r} is empty or not printable")
            if name in self.origins:
                self._duplicate_name(name, stmt, scope, several_windows=len(windows) > 1)
                continue
            predicate: ir.Predicate = ir.TruePred()
            weight, pooling = None, "mean"
            try:
                if where is not None:
                    predicate = self.expressions.predicate(where.predicate, inner)
            except Skip:
                bad = True
            try:
                if pooling_clause is not None:
                    pooling = _POOLINGS[pooling_clause.kind]
                    if pooling_clause.weight is not None:
                        weight = self.expressions.number(pooling_clause.weight, inner,
                                                         "a weight").expr
            except Skip:
                bad = True
            if bad:
                continue
            self.slices.append(ir.Slice(
                name=name, timeline=timeline, predicate=predicate, weight=weight,
                pooling=pooling, window_ms=window_ms, id_column=column, table=table_name))
            self.origins[name] = SliceOrigin(
                name=stmt.name.pos, statement=stmt.pos,
                where=where.pos if where is not None else None,
                pooling=pooling_clause.pos if pooling_clause is not None else None)

    def _duplicate_name(self, name: str, stmt: ast.SliceDecl, scope: Scope,
                        several_windows: bool) -> None:
        error = self.report.error
        first = self.origins[name].name
        if first == stmt.name.pos and several_windows:
            error(stmt.name.pos, f"slice name '{name}' is the same for every window of over",
                  "put {window} in the name")
        elif first == stmt.name.pos:
            loops = sorted(scope.loop_names())
            error(stmt.name.pos, f"slice name '{name}' is the same for several combinations "
                  "of the for", "put " + ", ".join("{" + v + "}" for v in loops) + " in the name")
        else:
            error(stmt.name.pos, f"duplicate slice name '{name}' (first at {first})")
