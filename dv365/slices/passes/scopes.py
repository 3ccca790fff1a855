"""Scopes and expansion, the first pass: includes are read, ``for`` blocks run, and every
declaration gets the scope it is read in.

:func:`expand` takes the parsed main module (and, through a :class:`Loader`, the files it
includes) and gives an :class:`Expansion`: the declarations (``gap``, ``dim``, definitions,
tables, slices) in source order, each placed once per combination of the ``for`` blocks
around it (cross product, first list outermost) together with the :class:`Scope` that binds
those ``for`` variables. Includes and generators do not survive this pass; what can be
wrong with them (an include inside a ``for``, a variable bound twice, too many
combinations) is reported here.

Names are looked up innermost scope first: a ``for`` variable's value is read lazily in the
scope around its ``for``, and a definition (kept in :class:`Definitions`) is visible to what
its scope, or one inside it, reads after it; slices, read last, see every definition.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Mapping, Protocol

from dv365.slices import ast
from dv365.slices.errors import Pos
from dv365.slices.language import MAX_SLICES, WINDOW_VARIABLE
from dv365.slices.passes.report import Reporter, Skip
from dv365.slices.passes.values import Typed


# ----------------------------------------------------------------------------- scopes
@dataclass(frozen=True)
class LoopBinding:
    """A ``for`` variable bound to one value, read lazily in the loop's outer ``scope``.

    ``label`` is how the value reads inside a name (``[media = media_id]`` labels
    ``media_id`` as ``media``). The implicit ``{window}`` binding has no ``value`` but a
    ``window_ms`` (None for ``all``).
    """

    value: ast.Node | None
    label: str
    scope: "Scope"
    window_ms: int | None = None


@dataclass(frozen=True, eq=False)  # a scope is one place of the program: compared by identity
class Scope:
    """The ``for`` variables bound at one place (one body run of a ``for``), inside ``parent``."""

    parent: "Scope | None" = None
    loops: Mapping[str, LoopBinding] = field(default_factory=dict)

    def loop(self, var: str) -> LoopBinding | None:
        scope = self
        while scope is not None:
            if var in scope.loops:
                return scope.loops[var]
            scope = scope.parent
        return None

    def loop_names(self) -> set[str]:
        out, scope = set(), self
        while scope is not None:
            out |= set(scope.loops)
            scope = scope.parent
        return out


@dataclass(frozen=True)
class Definition:
    """What ``name = expr`` bound its name to, and where."""

    value: Typed
    pos: Pos


class Definitions:
    """The definitions of every scope: the table of names that expressions are read against.

    The declarations pass fills it in source order, so an expression read there sees the
    definitions above it; the slices pass reads it complete.
    """

    def __init__(self) -> None:
        # name -> scope -> definition: most names read (fields, vocabulary values) are defined
        # nowhere, which one lookup tells.
        self._by_name: dict[str, dict[Scope, Definition]] = {}

    def add(self, scope: Scope, name: str, definition: Definition) -> None:
        self._by_name.setdefault(name, {})[scope] = definition

    def in_scope(self, scope: Scope, name: str) -> Definition | None:
        """``name``'s definition made directly in ``scope`` (not in a parent), if any."""
        return self._by_name.get(name, {}).get(scope)

    def lookup(self, scope: Scope, name: str) -> Typed | None:
        """The value ``name`` is defined as where ``scope`` reads it (innermost scope
        first); None when it is not defined there."""
        scopes = self._by_name.get(name)
        while scopes is not None and scope is not None:
            if scope in scopes:
                return scopes[scope].value
            scope = scope.parent
        return None

    def visible(self, scope: Scope) -> set[str]:
        """Every name defined in ``scope`` or around it."""
        chain = []
        while scope is not None:
            chain.append(scope)
            scope = scope.parent
        return {name for name, scopes in self._by_name.items() if any(s in scopes for s in chain)}


# ----------------------------------------------------------------------------- expansion
@dataclass(frozen=True)
class Placed:
    """One declaration (gap, dim, definition, table or slice) in the scope it is read in."""

    stmt: ast.Gap | ast.Dim | ast.Define | ast.TableDecl | ast.SliceDecl
    scope: Scope


@dataclass(frozen=True)
class Expansion:
    """What :func:`expand` gives: the declarations in source order, the top scope, and the
    text of every file read (for error excerpts)."""

    top: Scope
    statements: tuple[Placed, ...]
    sources: Mapping[str, str]


class Loader(Protocol):
    """Reads included files: ``enter`` parses one (None when skipped), ``leave`` ends it."""

    def enter(self, includer: str, stmt: ast.Include) -> "ast.Module | None": ...

    def leave(self, module: ast.Module) -> None: ...


def expand(module: ast.Module, loader: Loader | None, report: Reporter) -> Expansion:
    """Read ``module`` and its includes, run its ``for`` blocks; problems go to ``report``."""
    return _Expander(loader, report).run(module)


class _Expander:
    def __init__(self, loader: Loader | None, report: Reporter):
        self.loader = loader
        self.report = report
        self.top = Scope()
        self.placed: list[Placed] = []
        self.sources: dict[str, str] = {}
        self.combinations = 0

    def run(self, module: ast.Module) -> Expansion:
        self.sources[module.path] = module.source
        self._statements(module.statements, self.top, top=True)
        return Expansion(top=self.top, statements=tuple(self.placed), sources=self.sources)

    def _statements(self, statements, scope: Scope, top: bool) -> None:
        for stmt in statements:
            try:
                if isinstance(stmt, ast.Include):
                    self._include(stmt, top)
                elif isinstance(stmt, ast.Generator):
                    self._generator(stmt, scope)
                elif isinstance(stmt, (ast.Gap, ast.Dim)) and not top:
                    word = "gap" if isinstance(stmt, ast.Gap) else "dim"
                    raise self.report.fail(stmt.pos, f"{word} must be set at the top level, "
                                           "not inside a for")
                else:
                    self.placed.append(Placed(stmt, scope))
            except Skip:
                pass

    def _include(self, stmt: ast.Include, top: bool) -> None:
        if not top:
            raise self.report.fail(stmt.pos, "include must be at the top level of a file")
        if self.loader is None:
            raise self.report.fail(stmt.pos, "include is not available here")
        module = self.loader.enter(stmt.pos.path, stmt)
        if module is None:
            return
        self.sources[module.path] = module.source
        try:
            self._statements(module.statements, self.top, top=True)
        finally:
            self.loader.leave(module)

    def _generator(self, stmt: ast.Generator, scope: Scope) -> None:
        fail = self.report.fail
        # Nested generators multiply: bound the total number of body runs, not each for's,
        # before building any of them.
        count = math.prod(len(b.values) for b in stmt.bindings)
        if self.combinations > MAX_SLICES:
            raise Skip()  # already reported; stop expanding anything
        self.combinations += count
        if self.combinations > MAX_SLICES:
            raise fail(stmt.pos, f"for blocks expand to more than {MAX_SLICES:,} "
                       "combinations in all")
        seen: dict[str, Pos] = {}
        lists = []
        for binding in stmt.bindings:
            var = binding.var.name
            if binding.var.is_template:
                raise fail(binding.var.pos, "a for variable cannot hold placeholders")
            if var == WINDOW_VARIABLE:
                raise fail(binding.var.pos, "'window' is reserved for the over windows")
            if var in seen:
                raise fail(binding.var.pos, f"for variable '{var}' is bound twice")
            seen[var] = binding.var.pos
            values = []
            for value in binding.values:
                label = value.label.name if value.label is not None else label_of(value.value)
                values.append(LoopBinding(value.value, label, scope))
            lists.append((var, values))
        for combo in itertools.product(*(v for _, v in lists)):
            inner = Scope(parent=scope, loops={var: b for (var, _), b in zip(lists, combo)})
            self._statements(stmt.body, inner, top=False)


def label_of(node: ast.Node) -> str:
    """How an unlabelled loop value reads inside a name (``like``, ``media_id``, ``7d``)."""
    if isinstance(node, ast.Name):
        return node.name
    if isinstance(node, ast.Number):
        return node.text
    if isinstance(node, ast.String):
        return node.value
    if isinstance(node, ast.Neg) and isinstance(node.arg, ast.Number):
        return "minus" + node.arg.text
    return "expr"
