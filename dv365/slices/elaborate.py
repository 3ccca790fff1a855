"""AST -> IR: elaboration, the passes that give a parsed spec its meaning.

:func:`elaborate` runs the passes of :mod:`dv365.slices.passes` in order, each handing the
next a typed result:

1. :func:`~dv365.slices.passes.scopes.expand` (includes, ``for`` blocks, scopes) ->
   :class:`~dv365.slices.passes.scopes.Expansion`: the declarations in source order, each
   in its scope;
2. :func:`~dv365.slices.passes.declarations.declare` (definitions, ``gap``, ``dim``,
   tables) -> :class:`~dv365.slices.passes.declarations.Declarations`;
3. :func:`~dv365.slices.passes.slices.elaborate_slices` (slices, windows, name templates)
   -> :class:`~dv365.slices.passes.slices.Slices`.

Every expression is read by :class:`~dv365.slices.passes.expressions.Expressions` (name
resolution, typing, constant folding, comparison and negation normal form). Every problem
becomes a :class:`~dv365.slices.errors.Diagnostic`, and every pass continues past errors so
that one run reports them all. Checks that need the elaborated predicates (contradictions,
weight signs, unused tables, dims) live in :mod:`dv365.slices.check`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from dv365.data.schema import VOCAB_COLUMNS
from dv365.slices import ast, ir
from dv365.slices.errors import Diagnostic, Pos
from dv365.slices.passes.declarations import declare
from dv365.slices.passes.expressions import Expressions
from dv365.slices.passes.report import Reporter
from dv365.slices.passes.scopes import Definitions, Loader, expand
from dv365.slices.passes.slices import SliceOrigin, elaborate_slices


@dataclass(frozen=True)
class Elaborated:
    """What elaboration produced (possibly partial when ``diagnostics`` is non-empty)."""

    gap_ms: int
    tables: tuple[ir.Table, ...]
    table_origins: Mapping[str, Pos]
    slices: tuple[ir.Slice, ...]
    slice_origins: Mapping[str, SliceOrigin]
    vocab: dict[str, tuple[str, ...]]
    diagnostics: tuple[Diagnostic, ...]
    sources: Mapping[str, str]


def elaborate(module: ast.Module, vocab: Mapping[str, tuple[str, ...]],
              loader: Loader | None = None) -> Elaborated:
    """Elaborate a parsed main module (and, through ``loader``, its includes) to IR parts.

    ``vocab`` (column -> values) is what enumerated values are checked against; the result
    records it for every enumerated column.
    """
    report = Reporter()
    vocab = {c: tuple(vocab.get(c, ())) for c in VOCAB_COLUMNS}
    expressions = Expressions(vocab, Definitions(), report)
    expansion = expand(module, loader, report)
    declarations = declare(expansion, expressions, report)
    slices = elaborate_slices(expansion, declarations, expressions, report)
    return Elaborated(
        gap_ms=declarations.gap_ms,
        tables=tuple(t.table for t in declarations.tables.values()),
        table_origins={n: t.pos for n, t in declarations.tables.items()},
        slices=slices.slices,
        slice_origins=slices.origins,
        vocab=vocab,
        diagnostics=tuple(report.diagnostics),
        sources=expansion.sources,
    )
