"""AST -> IR: resolve names, type-check, expand generators and windows, build the IR.

Lowering is where a spec gets its meaning:

* **Names** resolve, innermost first, to a ``for`` placeholder, a named definition
  (constant, numeric expression or filter), an event field, or else a bare word (a
  vocabulary value such as ``like``). Unknown names get a "did you mean" suggestion.
* **Types**: numbers (constants, durations, ``dwell_time`` / ``video_duration`` and
  arithmetic on them), enumerated fields (compared with vocabulary values), id fields
  (compared with integers), filters. A duration compared with an id, an enum compared with a
  number, a number used as a filter are errors.
* **Constants are folded** (``ln(2) * 3`` is one constant) but never moved across a
  comparison: ``dwell_time + 1 > 3`` stays as written. Comparisons get the expression on the
  left (``3s < dwell_time`` is ``dwell_time > 3``; ``a < b`` with two non-constant sides is
  ``a - b < 0``); chains and ranges become conjunctions (``lo..hi`` is ``>= lo and < hi``);
  ``not`` is pushed into the leaves (negation normal form); ``and`` / ``or`` are flattened;
  sets are deduplicated and ordered (vocabulary order; ids ascending).
* **Expansion**: each ``for`` runs its body once per combination of its lists (cross
  product, first list outermost) and each slice statement once per window of its ``over``.

Every problem becomes a :class:`~dv365.slices.errors.Diagnostic`; lowering continues past
errors so that :func:`lower` reports them all. Checks that need the lowered predicates
(contradictions, weight signs, unused tables, dims) live in :mod:`dv365.slices.check`.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Mapping, Protocol, Union

from dv365.data.schema import EVENT_FIELDS, ID_COLUMNS, TIMELINES, VOCAB_COLUMNS
from dv365.durations import DEFAULT_GAP_MS, duration_text
from dv365.slices import ast, ir
from dv365.slices.errors import Diagnostic, Pos, did_you_mean
from dv365.slices.language import (
    FLIPPED, FUNCTIONS, HASHINGS, MAX_DIM, MAX_GAP_OR_WINDOW_MS, MAX_ROWS, MAX_SEED, MAX_SLICES,
    NEGATED, NUMERIC_FIELDS, keywords,
)

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def window_label(window_ms: int | None) -> str:
    return "all" if window_ms is None else duration_text(window_ms)


# ----------------------------------------------------------------------------- typed values
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


class _Bad(Exception):
    """Raised inside lowering once a diagnostic is recorded, to skip the broken construct."""


# ----------------------------------------------------------------------------- environment
@dataclass
class _Binding:
    """A ``for`` variable bound to one value (resolved lazily in the loop's outer scope)."""

    value: ast.Node | None
    label: str
    scope: "Scope"
    window_ms: int | None = None  # the implicit {window} binding


@dataclass
class Scope:
    parent: "Scope | None" = None
    names: dict[str, tuple[Typed, Pos]] = field(default_factory=dict)
    loops: dict[str, _Binding] = field(default_factory=dict)

    def lookup(self, name: str) -> tuple[Typed, Pos] | None:
        scope = self
        while scope is not None:
            if name in scope.names:
                return scope.names[name]
            scope = scope.parent
        return None

    def loop(self, var: str) -> _Binding | None:
        scope = self
        while scope is not None:
            if var in scope.loops:
                return scope.loops[var]
            scope = scope.parent
        return None

    def all_names(self) -> set[str]:
        out, scope = set(), self
        while scope is not None:
            out |= set(scope.names)
            scope = scope.parent
        return out

    def all_loops(self) -> set[str]:
        out, scope = set(), self
        while scope is not None:
            out |= set(scope.loops)
            scope = scope.parent
        return out


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class SliceOrigin:
    """Where a lowered slice was written (for messages of later checks)."""

    name: Pos
    statement: Pos
    where: Pos | None
    pooling: Pos | None


@dataclass
class Lowered:
    """What lowering produced (possibly partial when ``diagnostics`` is non-empty)."""

    gap_ms: int
    tables: list[ir.Table]
    table_origins: dict[str, Pos]
    slices: list[ir.Slice]
    slice_origins: dict[str, SliceOrigin]
    vocab: dict[str, tuple[str, ...]]
    diagnostics: list[Diagnostic]
    sources: dict[str, str]


class Loader(Protocol):
    """Reads included files: ``enter`` parses one (None when skipped), ``leave`` ends it."""

    def enter(self, includer: str, stmt: ast.Include) -> "ast.Module | None": ...

    def leave(self, module: ast.Module) -> None: ...


# ----------------------------------------------------------------------------- lowering
class Lowering:
    """One lowering run over a main module and its includes."""

    def __init__(self, vocab: Mapping[str, tuple[str, ...]], loader: Loader | None = None):
        self.vocab = {c: tuple(vocab.get(c, ())) for c in VOCAB_COLUMNS}
        self.loader = loader
        self.diagnostics: list[Diagnostic] = []
        self.sources: dict[str, str] = {}
        self.gap: tuple[int, Pos] | None = None
        self.dim: tuple[int, Pos] | None = None
        self.tables: dict[str, tuple[ir.Table, Pos]] = {}
        self.slices: list[ir.Slice] = []
        self.slice_origins: dict[str, SliceOrigin] = {}
        self.top = Scope()
        self._deferred: list[tuple[ast.SliceDecl, Scope]] = []
        self._expansions = 0

    # -- entry point ---------------------------------------------------------------------
    def run(self, module: ast.Module) -> Lowered:
        self.sources[module.path] = module.source
        self._statements(module.statements, self.top, top=True)
        for stmt, scope in self._deferred:
            try:
                self._slice(stmt, scope)
            except _Bad:
                pass
            if len(self.slices) > MAX_SLICES:
                self.error(stmt.pos, f"the spec has more than {MAX_SLICES:,} slices")
                break
        return Lowered(
            gap_ms=self.gap[0] if self.gap else DEFAULT_GAP_MS,
            tables=[t for t, _ in self.tables.values()],
            table_origins={n: p for n, (_, p) in self.tables.items()},
            slices=self.slices,
            slice_origins=self.slice_origins,
            vocab=self.vocab,
            diagnostics=self.diagnostics,
            sources=self.sources,
        )

    def error(self, pos: Pos, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(pos, message, hint))

    def fail(self, pos: Pos, message: str, hint: str | None = None) -> "_Bad":
        self.error(pos, message, hint)
        return _Bad()

    # -- statements ----------------------------------------------------------------------
    def _statements(self, statements, scope: Scope, top: bool) -> None:
        # Slices are lowered after every table, definition and include is known, so that a
        # slice may name a table declared further down; they keep their order.
        for stmt in statements:
            try:
                if isinstance(stmt, ast.Include):
                    self._include(stmt, top)
                elif isinstance(stmt, ast.Gap):
                    self._gap(stmt, top)
                elif isinstance(stmt, ast.Dim):
                    self._dim(stmt, top)
                elif isinstance(stmt, ast.Define):
                    self._define(stmt, scope)
                elif isinstance(stmt, ast.TableDecl):
                    self._table(stmt, scope)
                elif isinstance(stmt, ast.SliceDecl):
                    self._deferred.append((stmt, scope))
                elif isinstance(stmt, ast.Generator):
                    self._generator(stmt, scope)
            except _Bad:
                pass

    def _include(self, stmt: ast.Include, top: bool) -> None:
        if not top:
            raise self.fail(stmt.pos, "include must be at the top level of a file")
        if self.loader is None:
            raise self.fail(stmt.pos, "include is not available here")
        module = self.loader.enter(stmt.pos.path, stmt)
        if module is None:
            return
        self.sources[module.path] = module.source
        try:
            self._statements(module.statements, self.top, top=True)
        finally:
            self.loader.leave(module)

    def _gap(self, stmt: ast.Gap, top: bool) -> None:
        if not top:
            raise self.fail(stmt.pos, "gap must be set at the top level, not inside a for")
        if self.gap is not None:
            raise self.fail(stmt.pos, f"gap is set twice (first at {self.gap[1]})")
        ms = self._duration_ms(stmt.value, self.top, "gap", allow_zero=True)
        self.gap = (ms, stmt.pos)

    def _dim(self, stmt: ast.Dim, top: bool) -> None:
        if not top:
            raise self.fail(stmt.pos, "dim must be set at the top level, not inside a for")
        if self.dim is not None:
            raise self.fail(stmt.pos, f"dim is set twice (first at {self.dim[1]})")
        self.dim = (self._int(stmt.value, self.top, "dim", 1, MAX_DIM), stmt.pos)

    def _define(self, stmt: ast.Define, scope: Scope) -> None:
        name = stmt.name.name
        if stmt.name.is_template:
            raise self.fail(stmt.name.pos, "a defined name cannot hold placeholders")
        if name in EVENT_FIELDS:
            raise self.fail(stmt.name.pos, f"'{name}' is an event field; pick another name")
        if name in FUNCTIONS:
            raise self.fail(stmt.name.pos, f"'{name}' is a function; pick another name")
        if name in scope.names:
            raise self.fail(stmt.name.pos,
                            f"'{name}' is defined twice (first at {scope.names[name][1]})")
        if scope.loop(name) is not None:
            raise self.fail(stmt.name.pos, f"'{name}' is a for variable here")
        value = self.resolve(stmt.value, scope)
        if isinstance(value, Word):
            if value.quoted:
                raise self.fail(value.pos, "a definition must be a number, an expression or "
                                "a filter, not a string")
            raise self._unknown_name(value.text, value.pos, scope)
        scope.names[name] = (value, stmt.name.pos)

    def _generator(self, stmt: ast.Generator, scope: Scope) -> None:
        seen: dict[str, Pos] = {}
        lists = []
        for binding in stmt.bindings:
            var = binding.var.name
            if binding.var.is_template:
                raise self.fail(binding.var.pos, "a for variable cannot hold placeholders")
            if var == "window":
                raise self.fail(binding.var.pos, "'window' is reserved for the over windows")
            if var in seen:
                raise self.fail(binding.var.pos, f"for variable '{var}' is bound twice")
            seen[var] = binding.var.pos
            labels = []
            for value in binding.values:
                label = value.label.name if value.label is not None else _text_of(value.value)
                labels.append(_Binding(value.value, label, scope))
            lists.append((var, labels))
        # Nested generators multiply: bound the total number of body runs, not each for's.
        count = math.prod(len(v) for _, v in lists)
        if self._expansions > MAX_SLICES:
            raise _Bad()  # already reported; stop expanding anything
        self._expansions += count
        if self._expansions > MAX_SLICES:
            raise self.fail(stmt.pos, f"for blocks expand to more than {MAX_SLICES:,} "
                            "combinations in all")
        for combo in itertools.product(*(v for _, v in lists)):
            inner = Scope(parent=scope, loops={var: b for (var, _), b in zip(lists, combo)})
            self._statements(stmt.body, inner, top=False)

    # -- tables --------------------------------------------------------------------------
    def _table(self, stmt: ast.TableDecl, scope: Scope) -> None:
        name = self.template(stmt.name, scope, naming=True)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in keywords():
            raise self.fail(stmt.name.pos, f"table name {name!r} is not a plain name",
                            "letters, digits and _, not a keyword")
        id_column = self._id_column(stmt.id_column, scope)
        if name in self.tables:
            raise self.fail(stmt.name.pos,
                            f"table '{name}' is declared twice (first at {self.tables[name][1]})")
        for what, items in (("rows", stmt.rows), ("dim", stmt.dims), ("hashing", stmt.hashings)):
            if len(items) > 1:
                raise self.fail(items[1].pos, f"table '{name}' sets {what} twice")
        if not stmt.rows:
            raise self.fail(stmt.pos, f"table '{name}' needs rows",
                            "e.g. table media: media_id, rows 2^20")
        rows = self._int(stmt.rows[0], scope, "rows", 1, MAX_ROWS)
        if stmt.dims:
            dim = self._int(stmt.dims[0], scope, "dim", 1, MAX_DIM)
        elif self.dim is not None:
            dim = self.dim[0]
        else:
            raise self.fail(stmt.pos, f"table '{name}' needs a dim",
                            "set dim 64 at the top of the spec or ', dim 64' on the table")
        hashing = ir.Hashing()
        if stmt.hashings:
            hashing = self._hashing(stmt.hashings[0], scope)
        self.tables[name] = (ir.Table(name=name, id_column=id_column, num_rows=rows, dim=dim,
                                      hashing=hashing), stmt.name.pos)

    def _hashing(self, spec: ast.HashingSpec, scope: Scope) -> ir.Hashing:
        kind = self.template(spec.kind, scope)
        kinds = HASHINGS
        if kind not in kinds:
            raise self.fail(spec.kind.pos, f"unknown hashing '{kind}'",
                            did_you_mean(kind, kinds) or "use modulo, hash(seed) or identity")
        if kind != "hash":
            if spec.seed is not None:
                raise self.fail(spec.seed.pos, f"hashing {kind} takes no seed")
            return ir.Hashing(kind=kind)
        seed = 0 if spec.seed is None else self._int(spec.seed, scope, "seed", 0, MAX_SEED)
        return ir.Hashing(kind="hash", seed=seed)

    def _id_column(self, node: ast.Name, scope: Scope) -> str:
        column = self.template(node, scope)
        if column not in ID_COLUMNS:
            hint = did_you_mean(column, ID_COLUMNS) or f"one of {', '.join(ID_COLUMNS)}"
            raise self.fail(node.pos, f"'{column}' is not an id column", hint)
        return column

    # -- slices --------------------------------------------------------------------------
    def _slice(self, stmt: ast.SliceDecl, scope: Scope) -> None:
        by_type: dict[type, list] = {}
        for clause in stmt.clauses:
            by_type.setdefault(type(clause), []).append(clause)
        words = {ast.From: "from", ast.Where: "where", ast.Pool: "pool",
                 ast.Pooling: "pooling (mean, sum, weighted ...)", ast.Over: "over"}
        bad = False
        for kind, clauses in by_type.items():
            if len(clauses) > 1:
                self.error(clauses[1].pos, f"slice has more than one {words[kind]} clause")
                bad = True
        if ast.From not in by_type:
            self.error(stmt.name.pos, "slice needs a timeline",
                       "add 'from explicit' or 'from implicit'")
            bad = True
        if ast.Pool not in by_type:
            self.error(stmt.name.pos, "slice needs an id column and a table",
                       "add 'pool media_id into <table>'")
            bad = True
        elif by_type[ast.Pool][0].table is None:
            self.error(by_type[ast.Pool][0].pos, "slice has no table",
                       "add 'into <table>' after the id column")
            bad = True
        if bad:
            raise _Bad()

        # Each part is checked on its own so that one statement reports all its problems.
        bad = False
        over = by_type.get(ast.Over, [None])[0]
        windows: list[tuple[int | None, Pos]] = []
        for window in (over.windows if over is not None else [ast.Window(stmt.pos, None)]):
            try:
                ms = None if window.value is None else self._duration_ms(
                    window.value, scope, "window", allow_zero=False)
            except _Bad:
                bad = True
                continue
            if any(ms == w for w, _ in windows):
                self.error(window.pos, f"window {window_label(ms)} is listed twice")
                bad = True
            windows.append((ms, window.pos))

        timeline_clause: ast.From = by_type[ast.From][0]
        timeline = self.template(timeline_clause.timeline, scope)
        if timeline not in TIMELINES:
            self.error(timeline_clause.timeline.pos, f"unknown timeline '{timeline}'",
                       did_you_mean(timeline, TIMELINES) or "explicit or implicit")
            bad = True
        pool: ast.Pool = by_type[ast.Pool][0]
        try:
            id_column = self._id_column(pool.id_column, scope)
            table_name = self.template(pool.table, scope)
            if table_name not in self.tables:
                raise self.fail(pool.table.pos, f"unknown table '{table_name}'",
                                did_you_mean(table_name, self.tables) or
                                "declare it with table <name>: <id column>, rows N")
            table = self.tables[table_name][0]
            if table.id_column != id_column:
                raise self.fail(pool.id_column.pos,
                                f"slice pools {id_column} but table '{table_name}' holds "
                                f"{table.id_column}")
        except _Bad:
            bad = True

        pooling_clause: ast.Pooling | None = by_type.get(ast.Pooling, [None])[0]
        where: ast.Where | None = by_type.get(ast.Where, [None])[0]

        if not windows:  # every window was wrong: still check the rest of the statement
            windows.append((None, stmt.pos))
        for window_ms, window_pos in windows:
            inner = Scope(parent=scope, loops={
                "window": _Binding(None, window_label(window_ms), scope, window_ms)})
            try:
                name = self.template(stmt.name, inner, naming=True)
            except _Bad:
                return
            if not name.strip() or not name.isprintable():
                raise self.fail(stmt.name.pos, f"slice name {name!r} is empty or not printable")
            if name in self.slice_origins:
                first = self.slice_origins[name].name
                if first == stmt.name.pos and len(windows) > 1:
                    self.error(stmt.name.pos, f"slice name '{name}' is the same for every "
                               "window of over", "put {window} in the name")
                elif first == stmt.name.pos:
                    loops = sorted(scope.all_loops())
                    self.error(stmt.name.pos, f"slice name '{name}' is the same for several "
                               "combinations of the for", "put " + ", ".join(
                                   "{" + v + "}" for v in loops) + " in the name")
                else:
                    self.error(stmt.name.pos,
                               f"duplicate slice name '{name}' (first at {first})")
                continue
            predicate: ir.Predicate = ir.TruePred()
            weight, pooling = None, "mean"
            try:
                if where is not None:
                    predicate = self.predicate(where.predicate, inner)
            except _Bad:
                bad = True
            try:
                if pooling_clause is not None:
                    pooling = {"mean": "mean", "sum": "sum", "weighted_mean": "weighted_mean",
                               "weighted_sum": "sum"}[pooling_clause.kind]
                    if pooling_clause.weight is not None:
                        weight = self.number(pooling_clause.weight, inner, "a weight").expr
            except _Bad:
                bad = True
            if bad:
                continue
            self.slices.append(ir.Slice(
                name=name, timeline=timeline, predicate=predicate, weight=weight,
                pooling=pooling, window_ms=window_ms, id_column=id_column, table=table_name))
            self.slice_origins[name] = SliceOrigin(
                name=stmt.name.pos, statement=stmt.pos,
                where=where.pos if where is not None else None,
                pooling=pooling_clause.pos if pooling_clause is not None else None)

    # -- names and templates -------------------------------------------------------------
    def template(self, node: ast.Name, scope: Scope, naming: bool = False) -> str:
        """A name with its ``{placeholders}`` replaced.

        A placeholder standing alone where a name is *used* (``pool {id}``) is the loop
        value itself; inside a longer name, or where something is *named* (``naming``: slice
        and table names), it is the value's label (``[media = media_id]`` labels
        ``media_id`` as ``media``).
        """
        if not node.is_template:
            return node.name
        whole = _PLACEHOLDER.fullmatch(node.name)
        if whole and not naming:
            binding = scope.loop(whole.group(1))
            if binding is not None and isinstance(binding.value, ast.Name):
                return self.template(binding.value, binding.scope)
            if binding is not None and isinstance(binding.value, ast.String):
                return binding.value.value

        def sub(match: re.Match) -> str:
            var = match.group(1)
            binding = scope.loop(var)
            if binding is None:
                raise self._unknown_placeholder(var, node.pos, scope)
            return binding.label

        return _PLACEHOLDER.sub(sub, node.name)

    def _unknown_placeholder(self, var: str, pos: Pos, scope: Scope) -> _Bad:
        known = scope.all_loops()
        hint = did_you_mean(var, known) or (
            f"placeholders here: {', '.join('{' + k + '}' for k in sorted(known))}" if known
            else "placeholders come from an enclosing for, and {window} from over")
        return self.fail(pos, f"unknown placeholder {{{var}}}", hint)

    def _unknown_name(self, name: str, pos: Pos, scope: Scope) -> _Bad:
        fields = set(NUMERIC_FIELDS) | set(ID_COLUMNS) | set(VOCAB_COLUMNS)
        choices = fields | scope.all_names() | set(FUNCTIONS)
        hint = did_you_mean(name, choices)
        what = "field" if hint and hint.split("'")[1] in fields else "name"
        return self.fail(pos, f"unknown {what} '{name}'", hint)

    # -- expressions ---------------------------------------------------------------------
    def resolve(self, node: ast.Node, scope: Scope) -> Typed:
        """The typed meaning of an expression node (raises _Bad after recording an error)."""
        if isinstance(node, ast.Number):
            return Num(ir.Const(value=node.value), duration=node.unit is not None)
        if isinstance(node, ast.String):
            return Word(node.value, True, node.pos)
        if isinstance(node, ast.Name):
            return self._resolve_name(node, scope)
        if isinstance(node, ast.Call):
            return self._call(node, scope)
        if isinstance(node, ast.Neg):
            arg = self.number(node.arg, scope, "an operand of '-'")
            return Num(_fold(self, node.pos, ir.Unary(op="neg", arg=arg.expr)), arg.duration)
        if isinstance(node, ast.BinOp):
            return self._binop(node, scope)
        if isinstance(node, (ast.Compare, ast.In, ast.Not, ast.Logic)):
            return Pred(self.predicate(node, scope))
        raise self.fail(getattr(node, "pos", Pos("<spec>", 1, 1)), "unsupported expression")

    def _resolve_name(self, node: ast.Name, scope: Scope) -> Typed:
        whole = _PLACEHOLDER.fullmatch(node.name)
        if whole:
            binding = scope.loop(whole.group(1))
            if binding is None:
                raise self._unknown_placeholder(whole.group(1), node.pos, scope)
            if binding.value is None:  # {window}
                if binding.window_ms is None:
                    raise self.fail(node.pos, "{window} is all time here, not a duration")
                return Num(ir.Const(value=binding.window_ms / 1000), duration=True)
            return self.resolve(binding.value, binding.scope)
        name = self.template(node, scope)
        found = scope.lookup(name)
        if found is not None:
            return found[0]
        if name in NUMERIC_FIELDS:
            return Num(ir.FieldRef(field=name))
        if name in ID_COLUMNS:
            return Column(name, "id")
        if name in VOCAB_COLUMNS:
            return Column(name, "enum")
        if name == "timeline":
            raise self.fail(node.pos, "filter on the timeline with 'from explicit' or "
                            "'from implicit', not in where")
        if name == "ts":
            raise self.fail(node.pos, "event time is selected with windows ('over 7d'), "
                            "not in where")
        if name == "user_id":
            raise self.fail(node.pos, "a slice cannot filter on user_id")
        return Word(name, False, node.pos)

    def _call(self, node: ast.Call, scope: Scope) -> Num:
        func = node.func.name
        if func not in FUNCTIONS:
            raise self.fail(node.func.pos, f"unknown function '{func}'",
                            did_you_mean(func, FUNCTIONS) or f"functions: {', '.join(FUNCTIONS)}")
        if len(node.args) != 1:
            raise self.fail(node.pos, f"{func} takes one argument, got {len(node.args)}")
        arg = self.number(node.args[0], scope, f"the argument of {func}")
        return Num(_fold(self, node.pos, ir.Unary(op=func, arg=arg.expr)))

    def _binop(self, node: ast.BinOp, scope: Scope) -> Num:
        left = self.number(node.left, scope, f"an operand of '{node.op}'")
        right = self.number(node.right, scope, f"an operand of '{node.op}'")
        duration = (left.duration and right.duration and node.op in "+-") or (
            (left.duration != right.duration) and node.op == "*") or (
            left.duration and not right.duration and node.op == "/")
        expr = ir.Binary(op=node.op, left=left.expr, right=right.expr)
        return Num(_fold(self, node.pos, expr), duration)

    def number(self, node: ast.Node, scope: Scope, what: str) -> Num:
        value = self.resolve(node, scope)
        if isinstance(value, Num):
            return value
        pos = _pos(node)
        if isinstance(value, Word) and not value.quoted:
            raise self._unknown_name(value.text, value.pos, scope)
        raise self.fail(pos, f"{what} must be a number, not {_describe(value)}")

    # -- predicates ----------------------------------------------------------------------
    def predicate(self, node: ast.Node, scope: Scope) -> ir.Predicate:
        if isinstance(node, ast.Logic):
            args, failed = [], False
            for arg in node.args:
                try:
                    args.append(self.predicate(arg, scope))
                except _Bad:
                    failed = True
            if failed:
                raise _Bad()
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
            raise self._unknown_name(value.text, value.pos, scope)
        raise self.fail(_pos(node), f"expected a filter (a comparison), not {_describe(value)}")

    def _compare(self, node: ast.Compare, scope: Scope) -> ir.Predicate:
        operands = [self.resolve(o, scope) for o in node.operands]
        leaves = []
        for i, op in enumerate(node.ops):
            leaves.append(self._pair(operands[i], op, operands[i + 1], node.operands[i],
                                     node.operands[i + 1], node.pos, scope))
        return make_and(leaves)

    def _pair(self, left: Typed, op: str, right: Typed, lnode, rnode, pos: Pos,
              scope: Scope) -> ir.Predicate:
        # Put the field (or the non-constant side) on the left.
        if isinstance(right, Column) or (isinstance(left, Num) and isinstance(right, Num)
                                         and left.const is not None and right.const is None):
            left, right, lnode, rnode, op = right, left, rnode, lnode, FLIPPED[op]
        for side, node in ((left, lnode), (right, rnode)):
            if isinstance(side, Pred):
                raise self.fail(_pos(node), "a filter cannot be compared; combine filters "
                                "with and / or")
        if isinstance(left, Column):
            if op not in ("==", "!="):
                raise self.fail(pos, f"{left.name} compares only with ==, != or in, not {op}")
            values = self._member_values(left, [(right, rnode)], scope)
            return ir.Member(field=left.name, values=values, negated=op == "!=")
        if isinstance(left, Num) and isinstance(right, Num):
            if left.const is not None and right.const is not None:
                raise self.fail(pos, "this comparison has a constant on both sides")
            if right.const is not None:
                return ir.Compare(expr=left.expr, op=op, value=right.const)
            return ir.Compare(expr=_fold(self, pos, ir.Binary(op="-", left=left.expr,
                                                               right=right.expr)),
                              op=op, value=0.0)
        for side, node in ((left, lnode), (right, rnode)):
            if isinstance(side, Word) and not side.quoted:
                raise self._unknown_name(side.text, side.pos, scope)
        raise self.fail(pos, f"cannot compare {_describe(left)} with {_describe(right)}")

    def _in(self, node: ast.In, scope: Scope) -> ir.Predicate:
        left = self.resolve(node.left, scope)
        target = node.target
        if isinstance(target, ast.Range):
            if not isinstance(left, Num) or left.const is not None:
                if isinstance(left, Word) and not left.quoted:
                    raise self._unknown_name(left.text, left.pos, scope)
                raise self.fail(_pos(node.left), f"a range needs a numeric expression on the "
                                f"left, not {_describe(left)}")
            if target.lo is None and target.hi is None:
                raise self.fail(target.pos, "a range needs at least one end (lo.., ..hi)")
            lo = self._const(target.lo, scope, "a range end") if target.lo is not None else None
            hi = self._const(target.hi, scope, "a range end") if target.hi is not None else None
            if lo is not None and hi is not None and lo >= hi:
                raise self.fail(target.pos, f"empty range {_num(lo)}..{_num(hi)}",
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
                raise self._unknown_name(left.text, left.pos, scope)
            raise self.fail(_pos(node.left), f"'in [...]' needs an id or enumerated field on "
                            f"the left, not {_describe(left)}",
                            "for numbers use a range: dwell_time in 3s..15s")
        if not target.items:
            raise self.fail(target.pos, "empty set: this filter can never be true")
        items = [(self.resolve(i, scope), i) for i in target.items]
        return ir.Member(field=left.name, values=self._member_values(left, items, scope),
                         negated=node.negated)

    def _member_values(self, column: Column, items, scope: Scope) -> tuple:
        if column.kind == "enum":
            allowed = self.vocab[column.name]
            chosen, failed = set(), False
            for value, node in items:
                if isinstance(value, Num):
                    self.error(_pos(node), f"{column.name} is compared with "
                               f"{'a duration' if value.duration else 'a number'}; its "
                               f"values are names like {_sample(allowed)}")
                    failed = True
                elif isinstance(value, Word):
                    if value.text not in allowed:
                        hint = did_you_mean(value.text, allowed) or \
                            f"{column.name} is one of {_sample(allowed, 12)}"
                        self.error(value.pos, f"unknown {column.name} '{value.text}'", hint)
                        failed = True
                    chosen.add(value.text)
                else:
                    self.error(_pos(node), f"{column.name} cannot be compared with "
                               f"{_describe(value)}")
                    failed = True
            if failed:
                raise _Bad()
            return tuple(v for v in allowed if v in chosen)
        ids, failed = set(), False
        for value, node in items:
            if isinstance(value, Num) and value.const is not None and not value.duration:
                v = value.const
                if v != int(v) or abs(v) >= 2**63:
                    self.error(_pos(node), f"{column.name} values are integers, not {_num(v)}")
                    failed = True
                else:
                    ids.add(int(v))
            elif isinstance(value, Num) and value.duration:
                self.error(_pos(node), f"cannot compare id {column.name} with a duration")
                failed = True
            elif isinstance(value, Word) and not value.quoted:
                raise self._unknown_name(value.text, value.pos, scope)
            else:
                self.error(_pos(node), f"cannot compare id {column.name} with "
                           f"{_describe(value)}")
                failed = True
        if failed:
            raise _Bad()
        return tuple(sorted(ids))

    # -- constants -----------------------------------------------------------------------
    def _const(self, node: ast.Node, scope: Scope, what: str) -> float:
        value = self.number(node, scope, what)
        if value.const is None:
            raise self.fail(_pos(node), f"{what} must be a constant")
        return value.const

    def _int(self, node: ast.Node, scope: Scope, what: str, lo: int, hi: int) -> int:
        value = self.number(node, scope, what)
        if value.const is None or value.duration:
            raise self.fail(_pos(node), f"{what} must be a constant integer")
        v = value.const
        if v != int(v):
            raise self.fail(_pos(node), f"{what} must be an integer, not {_num(v)}")
        if not lo <= v <= hi:
            raise self.fail(_pos(node), f"{what} must be between {lo:,} and {hi:,}, not "
                            f"{_num(v)}")
        return int(v)

    def _duration_ms(self, node: ast.Node, scope: Scope, what: str, allow_zero: bool) -> int:
        value = self.number(node, scope, what)
        if value.const is None:
            raise self.fail(_pos(node), f"{what} must be a constant duration")
        seconds = value.const
        if not value.duration and seconds != 0:
            raise self.fail(_pos(node), f"{what} needs a unit", f"e.g. {_num(seconds)}d or "
                            f"{_num(seconds)}h")
        ms = round(seconds * 1000)
        if abs(seconds * 1000 - ms) > 1e-6 * max(1.0, abs(ms)):
            raise self.fail(_pos(node), f"{what} is not a whole number of milliseconds")
        if ms > MAX_GAP_OR_WINDOW_MS:
            raise self.fail(_pos(node), f"{what} is longer than 100 years")
        if ms < 0 or (ms == 0 and not allow_zero):
            shown = ("-" if ms < 0 else "") + duration_text(abs(ms))
            raise self.fail(_pos(node), f"{what} must be positive, not {shown}"
                            if not allow_zero else f"{what} cannot be negative ({shown})")
        return ms


# ----------------------------------------------------------------------------- IR helpers
def make_and(args) -> ir.Predicate:
    """``and`` of predicates, flattened (an and never directly holds an and)."""
    flat = []
    for arg in args:
        flat.extend(arg.args if isinstance(arg, ir.And) else (arg,))
    return flat[0] if len(flat) == 1 else ir.And(args=tuple(flat))


def make_or(args) -> ir.Predicate:
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


def _fold(lowering: Lowering, pos: Pos, expr: ir.Expr) -> ir.Expr:
    """Fold an operation whose operands are all constants into one constant."""
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
        raise lowering.fail(pos, "this constant expression is not a finite number")
    return ir.Const(value=float(value) + 0.0)  # + 0.0: no -0.0, which would print as 0


def _pos(node) -> Pos:
    return getattr(node, "pos", Pos("<spec>", 1, 1))


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(v)


def _sample(values, n: int = 4) -> str:
    values = list(values)
    shown = ", ".join(values[:n])
    return shown + (", ..." if len(values) > n else "") if values else "(none declared)"


def _describe(value: Typed) -> str:
    if isinstance(value, Num):
        if value.duration:
            return "a duration"
        return "a number" if value.const is not None else "a numeric expression"
    if isinstance(value, Pred):
        return "a filter"
    if isinstance(value, Column):
        return f"the {'id' if value.kind == 'id' else 'enumerated'} field {value.name}"
    return f"the string '{value.text}'" if value.quoted else f"the name '{value.text}'"


def _text_of(node: ast.Node) -> str:
    """How a loop value reads inside a name template (``like``, ``media_id``, ``7d``)."""
    if isinstance(node, ast.Name):
        return node.name
    if isinstance(node, ast.Number):
        return node.text
    if isinstance(node, ast.String):
        return node.value
    if isinstance(node, ast.Neg) and isinstance(node.arg, ast.Number):
        return "minus" + node.arg.text
    return "expr"


def lower(module: ast.Module, vocab: Mapping[str, tuple[str, ...]],
          loader: Loader | None = None) -> Lowered:
    """Lower a parsed main module (and, through ``loader``, its includes)."""
    return Lowering(vocab, loader).run(module)
