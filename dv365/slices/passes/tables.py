"""Table declarations: ``table media: media_id, rows 2^20, dim 64, hashing hash(7)``.

:func:`declare_table` elaborates one table statement (in its scope, so a generator can
declare a family of tables) into an :class:`~dv365.slices.ir.Table` and where it was
declared. The declarations pass calls it in source order, so a table sees the ``dim`` set
above it and the tables declared before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from dv365.slices import ast, ir
from dv365.slices.errors import Pos, did_you_mean
from dv365.slices.language import HASHINGS, MAX_DIM, MAX_ROWS, MAX_SEED, keywords
from dv365.slices.passes.expressions import Expressions
from dv365.slices.passes.names import expand_template, id_column
from dv365.slices.passes.report import Reporter
from dv365.slices.passes.scopes import Scope


@dataclass(frozen=True)
class DeclaredTable:
    """A table and the position of its name (for later messages about it)."""

    table: ir.Table
    pos: Pos


def declare_table(stmt: ast.TableDecl, scope: Scope, declared: Mapping[str, DeclaredTable],
                  default_dim: int | None, expressions: Expressions,
                  report: Reporter) -> DeclaredTable:
    """The table ``stmt`` declares, given the tables ``declared`` before it and the spec's
    ``dim`` so far; a problem is reported and raises :class:`~dv365.slices.passes.report.Skip`."""
    fail = report.fail
    name = expand_template(stmt.name, scope, report, naming=True)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in keywords():
        raise fail(stmt.name.pos, f"table name {name!r} is not a plain name",
                   "letters, digits and _, not a keyword")
    column = id_column(stmt.id_column, scope, report)
    if name in declared:
        raise fail(stmt.name.pos,
                   f"table '{name}' is declared twice (first at {declared[name].pos})")
    for what, items in (("rows", stmt.rows), ("dim", stmt.dims), ("hashing", stmt.hashings)):
        if len(items) > 1:
            raise fail(items[1].pos, f"table '{name}' sets {what} twice")
    if not stmt.rows:
        raise fail(stmt.pos, f"table '{name}' needs rows", "e.g. table media: media_id, rows 2^20")
    rows = expressions.integer(stmt.rows[0], scope, "rows", 1, MAX_ROWS)
    if stmt.dims:
        dim = expressions.integer(stmt.dims[0], scope, "dim", 1, MAX_DIM)
    elif default_dim is not None:
        dim = default_dim
    else:
        raise fail(stmt.pos, f"table '{name}' needs a dim",
                   "set dim 64 at the top of the spec or ', dim 64' on the table")
    hashing = ir.Hashing()
    if stmt.hashings:
        hashing = _hashing(stmt.hashings[0], scope, expressions, report)
    return DeclaredTable(ir.Table(name=name, id_column=column, num_rows=rows, dim=dim,
                                  hashing=hashing), stmt.name.pos)


def _hashing(spec: ast.HashingSpec, scope: Scope, expressions: Expressions,
             report: Reporter) -> ir.Hashing:
    kind = expand_template(spec.kind, scope, report)
    if kind not in HASHINGS:
        raise report.fail(spec.kind.pos, f"unknown hashing '{kind}'",
                          did_you_mean(kind, HASHINGS) or "use modulo, hash(seed) or identity")
    if kind != "hash":
        if spec.seed is not None:
            raise report.fail(spec.seed.pos, f"hashing {kind} takes no seed")
        return ir.Hashing(kind=kind)
    seed = 0 if spec.seed is None else expressions.integer(spec.seed, scope, "seed", 0, MAX_SEED)
    return ir.Hashing(kind="hash", seed=seed)
