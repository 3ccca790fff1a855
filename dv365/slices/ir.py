"""The slice IR: what a compiled spec means, independent of its syntax.

The IR is the contract between the language front end (parse -> elaborate -> check), the
reference semantics (:mod:`dv365.slices.reference`), the kernels and the model. It is a tree
of frozen pydantic models: hashable, JSON-serializable, with a content hash that names
compiled artifacts and kernel caches.

Semantics, for one user, one request time ``R`` (ms) and one slice:

* **Timeline**: only events of the slice's timeline (explicit or implicit).
* **Gap and window**: an event at time ``t`` is eligible when ``t < R - gap_ms`` (strictly:
  the distant-interest cutoff is exclusive, as in :meth:`TimelineStore.range_before`) and, for
  a windowed slice, ``t >= R - window_ms`` (``dt = R - t`` lies in ``(gap, window]``). A window
  never reaches into the gap; ``window_ms=None`` means all time.
* **Predicate** (negation normal form, see :class:`Predicate`): leaves compare a numeric
  expression with a constant or test an enum/id field for membership. A leaf whose value is
  null (NaN: a photo's ``video_duration``; a null ``action``) is **false**, whatever the
  operator, and ``not`` has been pushed into the leaves by flipping them (``not x > 3`` is
  ``x <= 3``), so a null never satisfies a predicate or its negation (SQL semantics).
* **Weight**: unweighted slices weigh every selected event 1. Weighted slices evaluate
  ``weight`` per event; the front end proves it positive over the predicate.
* **Row**: the event's ``id_column`` value is mapped to a row of ``table`` by the table's
  :class:`Hashing` (:func:`dv365.slices.hashing.rows_of`, identical on every backend).
* **Pooling**: ``mean`` = sum(v) / count; ``weighted_mean`` = sum(w v) / sum(w); ``sum`` =
  sum(w v) (w = 1 when unweighted). An empty slice pools to the zero vector with count 0.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dv365.durations import DEFAULT_GAP_MS

IR_VERSION = 1


class _Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ----------------------------------------------------------------------------- expressions
class Const(_Node):
    """A numeric constant (named constants of the spec are folded into these)."""

    kind: Literal["const"] = "const"
    value: float


class FieldRef(_Node):
    """A numeric event field: ``dwell_time`` or ``video_duration`` (seconds, NaN = null)."""

    kind: Literal["field"] = "field"
    field: str


class Unary(_Node):
    """``neg`` (-x), ``ln`` (natural log), ``log1p``, ``exp``, ``sqrt``, ``abs``."""

    kind: Literal["unary"] = "unary"
    op: Literal["neg", "ln", "log1p", "exp", "sqrt", "abs"]
    arg: "Expr"


class Binary(_Node):
    """Arithmetic: ``+ - * /`` and ``^`` (power). Division by zero gives inf/NaN as IEEE."""

    kind: Literal["binary"] = "binary"
    op: Literal["+", "-", "*", "/", "^"]
    left: "Expr"
    right: "Expr"


Expr = Annotated[Union[Const, FieldRef, Unary, Binary], Field(discriminator="kind")]


# ------------------------------------------------------------------------------ predicates
class Compare(_Node):
    """``expr <op> value``; false when ``expr`` is NaN (null)."""

    kind: Literal["compare"] = "compare"
    expr: Expr
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    value: float


class Member(_Node):
    """``field in values`` (or ``not in`` when ``negated``); false when the field is null.

    ``field`` is an enumerated column (values are vocabulary strings) or an id column
    (values are integers).
    """

    kind: Literal["member"] = "member"
    field: str
    values: tuple[Union[str, int], ...]
    negated: bool = False


class And(_Node):
    kind: Literal["and"] = "and"
    args: tuple["Predicate", ...]


class Or(_Node):
    kind: Literal["or"] = "or"
    args: tuple["Predicate", ...]


class TruePred(_Node):
    """Selects every event (of the slice's timeline, window and gap)."""

    kind: Literal["true"] = "true"


Predicate = Annotated[Union[Compare, Member, And, Or, TruePred], Field(discriminator="kind")]

Unary.model_rebuild()
Binary.model_rebuild()
And.model_rebuild()
Or.model_rebuild()


# ------------------------------------------------------------------------- tables, slices
class Hashing(_Node):
    """How a raw id becomes a table row.

    * ``modulo``: ``row = id mod num_rows`` (mathematical modulo, so negative ids work).
    * ``hash``: ``row = splitmix64(id xor seed) mod num_rows``; spreads structured ids.
    * ``identity``: ``row = id``; ids outside ``[0, num_rows)`` are an input error.
    """

    kind: Literal["modulo", "hash", "identity"] = "modulo"
    seed: int = 0


class Table(_Node):
    """An embedding table shared by a group of slices."""

    name: str
    id_column: str
    num_rows: int = Field(gt=0)
    dim: int = Field(gt=0)
    hashing: Hashing = Hashing()


class Slice(_Node):
    """One sub-sequence of a timeline, pooled into one vector."""

    name: str
    timeline: Literal["explicit", "implicit"]
    predicate: Predicate = TruePred()
    weight: Expr | None = None
    pooling: Literal["mean", "weighted_mean", "sum"] = "mean"
    window_ms: int | None = Field(default=None, gt=0)
    id_column: str
    table: str

    @model_validator(mode="after")
    def _weighted_pooling_needs_weight(self) -> "Slice":
        if self.pooling == "weighted_mean" and self.weight is None:
            raise ValueError(f"slice {self.name!r}: weighted_mean pooling needs a weight")
        return self


class SpecIR(_Node):
    """A compiled slice spec: the gap, the tables and the slices (in output order)."""

    version: int = IR_VERSION
    gap_ms: int = Field(default=DEFAULT_GAP_MS, ge=0)
    tables: tuple[Table, ...]
    slices: tuple[Slice, ...]
    # Where each slice came from ("file:line:col"); for messages only, not part of the hash.
    origins: dict[str, str] = Field(default_factory=dict)
    # The vocabulary enum values were checked against (column -> values), part of the hash:
    # kernels map strings to codes with the vocabulary of the data they run on.
    vocab: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    def __hash__(self) -> int:  # dicts inside make the default frozen hash fail
        return hash(self.content_hash())

    @model_validator(mode="after")
    def _consistent(self) -> "SpecIR":
        tables = {t.name: t for t in self.tables}
        if len(tables) != len(self.tables):
            raise ValueError("duplicate table names")
        names = [s.name for s in self.slices]
        if len(set(names)) != len(names):
            raise ValueError("duplicate slice names")
        for s in self.slices:
            table = tables.get(s.table)
            if table is None:
                raise ValueError(f"slice {s.name!r}: unknown table {s.table!r}")
            if table.id_column != s.id_column:
                raise ValueError(
                    f"slice {s.name!r} pools {s.id_column} but table {table.name!r} holds "
                    f"{table.id_column}"
                )
        return self

    # -- derived views -------------------------------------------------------------------
    def table(self, name: str) -> Table:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def slice_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.slices)

    @property
    def dim(self) -> int:
        """The common embedding dimension (the pooled output is [batch, slices, dim])."""
        dims = {t.dim for t in self.tables}
        if len(dims) != 1:
            raise ValueError(f"tables have different dims {sorted(dims)}")
        return dims.pop()

    def slices_of_table(self, name: str) -> tuple[Slice, ...]:
        return tuple(s for s in self.slices if s.table == name)

    # -- identity ------------------------------------------------------------------------
    def semantic_dict(self) -> dict:
        """The JSON-able content that defines the meaning (no source positions)."""
        return self.model_dump(mode="json", exclude={"origins"})

    def content_hash(self) -> str:
        """A stable hex digest of the meaning; names compiled artifacts and kernel caches."""
        canonical = json.dumps(self.semantic_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> "SpecIR":
        return cls.model_validate_json(text)
