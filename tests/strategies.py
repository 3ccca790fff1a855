"""Hypothesis strategies for slice IRs, user timelines, stores and request times.

Shared by the reference tests, the round-trip tests of the front end and the kernels' parity
tests. Everything here is *valid* input:

* :func:`spec_irs` builds random :class:`~dv365.slices.ir.SpecIR` from every construct of the
  IR: tables with modulo/hash/identity hashing, NNF predicates (``and`` / ``or`` / ``in`` /
  ``not in`` / comparisons, including watch-ratio ``dwell_time / video_duration ^ beta`` and
  the debiased score), positive weights (a weighted slice's predicate contains
  ``weight > c`` with ``c >= 0``, which is how a spec proves its weight positive), windows,
  a gap of 0 or more, every pooling. Predicates are in the front end's normal form: ``and`` /
  ``or`` have at least two arguments and never directly nest in themselves, ``in`` sets are
  non-empty, without repeats, in vocabulary (enums) or ascending (ids) order.
* :func:`user_timelines` builds one user's events in the TimelineStore column layout with the
  hard cases made likely: ties in time, photos (``video_duration`` NaN), null actions on
  implicit rows, null dwell times on explicit rows, thresholds hit exactly.
* :func:`request_times` draws a request time relative to the events, often exactly at a
  window edge or the gap edge (or one millisecond off).
* :func:`timeline_stores` builds a real (in-memory) TimelineStore of several users;
  :func:`store_of` makes one from given timelines; :func:`embedding_tables` gives tables
  that fit an IR.

Ids are drawn from ``[0, ID_RANGE)`` and identity tables have at least ``ID_RANGE`` rows, so
every IR of :func:`spec_irs` accepts every timeline of :func:`user_timelines`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from hypothesis import strategies as st

from dv365.data.schema import (DEFAULT_VOCAB, EVENT_COLUMN_DTYPES, ID_COLUMNS, TIMELINES,
                               VOCAB_COLUMNS, DatasetMeta)
from dv365.data.timeline import TimelineStore
from dv365.data.vocabulary import Vocabulary
from dv365.durations import DAY_MS, HOUR_MS
from dv365.slices.ir import (
    And,
    Binary,
    Compare,
    Const,
    FieldRef,
    Hashing,
    Member,
    Or,
    Slice,
    SpecIR,
    Table,
    TruePred,
    Unary,
)

T0_MS = 1_750_000_000_000  # mid 2025: inside the schema's sane range
ID_RANGE = 48

# Values that slices compare with, so that events sit exactly on thresholds often.
THRESHOLDS = (0.0, 0.5, 1.0, 3.0, 15.0, 30.0)
DURATIONS = (0.25, 1.0, 3.0, 10.0, 15.0, 30.0, 60.0)
WINDOWS = (HOUR_MS, DAY_MS, 3 * DAY_MS, 7 * DAY_MS)


# ----------------------------------------------------------------------------- numbers
def quarters(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Multiples of 0.25 in [lo, hi]: exact in float32, so thresholds can be hit exactly."""
    return st.integers(int(lo * 4), int(hi * 4)).map(lambda q: q / 4)


def thresholds() -> st.SearchStrategy[float]:
    return st.one_of(st.sampled_from(THRESHOLDS), quarters(0, 100))


# ----------------------------------------------------------------------------- expressions
DWELL = FieldRef(field="dwell_time")
DURATION = FieldRef(field="video_duration")


def watch_ratio(beta: float) -> Binary:
    """``dwell_time / video_duration ^ beta``."""
    return Binary(op="/", left=DWELL, right=Binary(op="^", left=DURATION, right=Const(value=beta)))


def debiased_score(gamma: float) -> Binary:
    """``ln(dwell_time + 1) / ln(gamma * video_duration + 1)`` (the paper's debiased score)."""
    numerator = Unary(op="ln", arg=Binary(op="+", left=DWELL, right=Const(value=1.0)))
    denominator = Unary(op="ln", arg=Binary(
        op="+", left=Binary(op="*", left=Const(value=gamma), right=DURATION),
        right=Const(value=1.0)))
    return Binary(op="/", left=numerator, right=denominator)


def numeric_exprs() -> st.SearchStrategy:
    """Expressions a slice filters on: fields, watch ratios, debiased scores, and a few more."""
    fields = st.sampled_from([DWELL, DURATION])
    return st.one_of(
        fields,
        st.sampled_from([1.0, 0.5]).map(watch_ratio),
        st.sampled_from([0.5, 0.8, 1.0]).map(debiased_score),
        fields.map(lambda f: Unary(op="log1p", arg=f)),
        st.builds(lambda f, c: Binary(op="*", left=f, right=Const(value=c)), fields,
                  st.sampled_from([0.5, 2.0])),
        st.builds(lambda a, b: Binary(op="-", left=a, right=b), fields, fields),
    )


def weight_exprs() -> st.SearchStrategy:
    """Weights that are finite on every event of :func:`user_timelines` where not NaN."""
    return st.one_of(
        st.sampled_from([0.5, 1.0, 2.0]).map(lambda c: Const(value=c)),
        st.just(DWELL),
        st.just(Unary(op="log1p", arg=DWELL)),
        st.just(Binary(op="^", left=DWELL, right=Const(value=0.5))),
        st.sampled_from([0.5, 0.8, 1.0]).map(debiased_score),
        st.just(watch_ratio(1.0)),
    )


# ----------------------------------------------------------------------------- predicates
def leaves(vocab: Mapping[str, Sequence[str]] | DatasetMeta = DEFAULT_VOCAB
           ) -> st.SearchStrategy:
    """Comparisons and memberships (enum and id) with either polarity."""
    values = Vocabulary.of(vocab).as_dict()
    enum_members = [
        st.builds(
            lambda subset, negated, column=column, order=order: Member(
                field=column, values=tuple(v for v in order if v in subset), negated=negated),
            st.sets(st.sampled_from(order), min_size=1, max_size=min(3, len(order))),
            st.booleans(),
        )
        for column, order in values.items() if order
    ]
    id_members = st.builds(
        lambda column, ids, negated: Member(field=column, values=tuple(sorted(ids)),
                                            negated=negated),
        st.sampled_from(ID_COLUMNS),
        st.sets(st.integers(0, ID_RANGE - 1), min_size=1, max_size=4),
        st.booleans(),
    )
    compares = st.builds(
        lambda expr, op, value: Compare(expr=expr, op=op, value=value),
        numeric_exprs(),
        st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
        thresholds(),
    )
    return st.one_of(compares, id_members, *enum_members)


def _combine(kind, args):
    """``kind(args)`` flattened so that an and never holds an and (or an or an or)."""
    flat = []
    for arg in args:
        flat.extend(arg.args if isinstance(arg, kind) else (arg,))
    return flat[0] if len(flat) == 1 else kind(args=tuple(flat))


def compounds(vocab: Mapping[str, Sequence[str]] | DatasetMeta = DEFAULT_VOCAB,
              max_depth: int = 2) -> st.SearchStrategy:
    """NNF predicates of leaves under and/or, at most ``max_depth`` connectives deep."""
    base = leaves(vocab)
    if max_depth <= 0:
        return base
    inner = compounds(vocab, max_depth - 1)
    return st.one_of(
        base,
        st.builds(lambda args: _combine(And, args), st.lists(inner, min_size=2, max_size=3)),
        st.builds(lambda args: _combine(Or, args), st.lists(inner, min_size=2, max_size=3)),
    )


def predicates(vocab: Mapping[str, Sequence[str]] | DatasetMeta = DEFAULT_VOCAB,
               max_depth: int = 2) -> st.SearchStrategy:
    """A slice's predicate: often ``true`` (select the whole timeline), else a compound."""
    return st.one_of(st.just(TruePred()), compounds(vocab, max_depth))


# ----------------------------------------------------------------------------- IRs
def hashings() -> st.SearchStrategy[Hashing]:
    return st.one_of(
        st.just(Hashing(kind="modulo")),
        st.builds(lambda seed: Hashing(kind="hash", seed=seed), st.integers(0, 2**32)),
        st.just(Hashing(kind="identity")),
    )


def windows() -> st.SearchStrategy[int | None]:
    """All time, a usual window, or any length (mostly hours to days, rarely tiny)."""
    return st.one_of(st.none(), st.sampled_from(WINDOWS), st.integers(HOUR_MS, 10 * DAY_MS),
                     st.integers(1, HOUR_MS))


def gaps() -> st.SearchStrategy[int]:
    return st.one_of(st.just(0), st.sampled_from([HOUR_MS, DAY_MS]), st.integers(1, 2 * DAY_MS))


@st.composite
def tables(draw, name: str, dim: int) -> Table:
    """One embedding table (identity tables are big enough for every generated id)."""
    hashing = draw(hashings())
    low = ID_RANGE if hashing.kind == "identity" else 1
    return Table(name=name, id_column=draw(st.sampled_from(ID_COLUMNS)),
                 num_rows=draw(st.integers(low, low + 40)), dim=dim, hashing=hashing)


@st.composite
def slices(draw, name: str, table: Table, vocab=DEFAULT_VOCAB, max_depth: int = 2,
           weighted: bool = True) -> Slice:
    """One slice on ``table``; weighted ones guard their weight positive in the predicate."""
    predicate = draw(predicates(vocab, max_depth))
    weight = draw(weight_exprs()) if weighted and draw(st.booleans()) else None
    if weight is None:
        pooling = draw(st.sampled_from(["mean", "sum"]))
    else:
        pooling = draw(st.sampled_from(["weighted_mean", "sum"]))
        if not isinstance(weight, Const):
            guard = Compare(expr=weight, op=">", value=draw(st.sampled_from([0.0, 0.1, 1.0])))
            predicate = guard if isinstance(predicate, TruePred) else _combine(
                And, [guard, predicate])
    return Slice(name=name, timeline=draw(st.sampled_from(TIMELINES)), predicate=predicate,
                 weight=weight, pooling=pooling, window_ms=draw(windows()),
                 id_column=table.id_column, table=table.name)


# Words that collide with the spec language: keywords, fields, functions, units, literals.
AWKWARD_WORDS = ("in", "not", "and", "or", "from", "where", "pool", "into", "mean", "sum",
                 "weighted", "by", "over", "all", "true", "slice", "table", "gap", "dim",
                 "for", "include", "rows", "hashing", "dwell_time", "video_duration",
                 "action", "media_id", "ln", "log1p", "exp", "3d", "15s", "1e3", "-1",
                 "profile visit", "café", 'say "hi"', "back\\slash", "")


def awkward_vocabs() -> st.SearchStrategy[dict[str, tuple[str, ...]]]:
    """Vocabularies whose values read as keywords, fields, numbers or are not words at all."""
    # Printable only: the spec language spells no control characters (\n and \t aside).
    value = st.one_of(st.sampled_from(AWKWARD_WORDS[:-1]),
                      st.text(min_size=1, max_size=6).filter(str.isprintable))
    values = st.lists(value, min_size=1, max_size=6, unique=True).map(tuple)
    return st.fixed_dictionaries({c: values for c in VOCAB_COLUMNS})


def awkward_names() -> st.SearchStrategy[str]:
    """Slice names that need quoting: keywords, spaces, unicode, quotes (never ``{...}``,
    which a spec reads as a generator placeholder)."""
    return st.one_of(st.sampled_from([w for w in AWKWARD_WORDS if w]),
                     st.text(min_size=1, max_size=8).filter(
                         lambda t: "{" not in t and t.strip() and t.isprintable()))


@st.composite
def spec_irs(draw, max_slices: int = 6, dim: int = 4, max_tables: int = 3,
             vocab: Mapping[str, Sequence[str]] | DatasetMeta = DEFAULT_VOCAB,
             max_depth: int = 2, weighted: bool = True, gap_ms: int | None = None,
             names: st.SearchStrategy[str] | None = None) -> SpecIR:
    """A valid SpecIR: every table has a slice, all tables share ``dim``.

    ``gap_ms`` fixes the gap (else drawn, 0 included); ``weighted=False`` keeps every slice
    unweighted; ``max_depth`` bounds and/or nesting; ``names`` draws slice names (default
    ``s0``, ``s1``, ...). Table names are plain (``t0``, ...): the language allows no other.
    """
    n_tables = draw(st.integers(1, max(1, min(max_tables, max_slices))))
    table_list = [draw(tables(f"t{i}", dim)) for i in range(n_tables)]
    n_slices = draw(st.integers(n_tables, max(n_tables, max_slices)))
    slice_names = [f"s{i}" for i in range(n_slices)] if names is None else draw(
        st.lists(names, min_size=n_slices, max_size=n_slices, unique=True))
    slice_list = []
    for i in range(n_slices):
        table = table_list[i] if i < n_tables else draw(st.sampled_from(table_list))
        slice_list.append(draw(slices(slice_names[i], table, vocab, max_depth, weighted)))
    gap = draw(gaps()) if gap_ms is None else gap_ms
    return SpecIR(gap_ms=gap, tables=tuple(table_list), slices=tuple(slice_list),
                  vocab=Vocabulary.of(vocab).as_dict())


# ----------------------------------------------------------------------------- timelines
@st.composite
def user_timelines(draw, vocab: Mapping[str, Sequence[str]] | DatasetMeta = DEFAULT_VOCAB,
                   n_max: int = 40, n_min: int = 0, span_ms: int = 10 * DAY_MS,
                   sort: bool = True) -> dict[str, np.ndarray]:
    """One user's events as column arrays (the TimelineStore layout), by default time-sorted.

    Times come from a small set of instants (ties) on an hour grid or anywhere in
    ``[T0_MS, T0_MS + span_ms)``; photos have no video duration; implicit rows have no
    action; explicit rows sometimes no dwell time.
    """
    values = Vocabulary.of(vocab).as_dict()
    n_media_types = max(1, len(values["media_type"]))
    photo = values["media_type"].index("photo") if "photo" in values["media_type"] else -2
    n = draw(st.integers(n_min, n_max))
    instants = draw(st.lists(
        st.one_of(st.integers(0, span_ms // HOUR_MS).map(lambda h: h * HOUR_MS),
                  st.integers(0, span_ms - 1)),
        min_size=1, max_size=max(1, n)))
    ids = st.integers(0, ID_RANGE - 1)
    rows = draw(st.lists(st.tuples(
        st.sampled_from(instants), st.integers(0, 1), ids, ids, ids,
        st.integers(0, n_media_types - 1),
        st.integers(0, max(0, len(values["surface"]) - 1)),
        st.integers(0, max(0, len(values["action"]) - 1)),
        st.one_of(st.sampled_from(DURATIONS), quarters(0.25, 300)),
        st.one_of(st.sampled_from(THRESHOLDS), quarters(0, 600)),
        st.booleans(),
    ), min_size=n, max_size=n))
    if sort:
        rows.sort(key=lambda r: r[0])
    columns = list(zip(*rows)) if rows else [()] * 11
    timeline = np.asarray(columns[1], dtype=np.int8)
    media_type = np.asarray(columns[5], dtype=np.int8)
    explicit = timeline == 0
    video_duration = np.asarray(columns[8], dtype=np.float32)
    video_duration[media_type == photo] = np.nan
    dwell_time = np.asarray(columns[9], dtype=np.float32)
    dwell_time[explicit & np.asarray(columns[10], dtype=bool)] = np.nan
    action = np.where(explicit, np.asarray(columns[7], dtype=np.int8), -1).astype(np.int8)
    return {
        "ts": T0_MS + np.asarray(columns[0], dtype=np.int64),
        "timeline": timeline,
        "media_id": np.asarray(columns[2], dtype=np.int64),
        "author_id": np.asarray(columns[3], dtype=np.int64),
        "topic_id": np.asarray(columns[4], dtype=np.int64),
        "media_type": media_type,
        "surface": np.asarray(columns[6], dtype=np.int8),
        "action": action,
        "video_duration": video_duration,
        "dwell_time": dwell_time,
    }


def request_times(ir: SpecIR, events: Mapping[str, np.ndarray],
                  span_ms: int = 10 * DAY_MS) -> st.SearchStrategy[int]:
    """Request times that often put an event exactly on a window edge or the gap edge."""
    anywhere = st.integers(T0_MS, T0_MS + span_ms + ir.gap_ms + 2 * DAY_MS)
    ts = np.asarray(events["ts"])
    if len(ts) == 0:
        return anywhere
    offsets = {ir.gap_ms, ir.gap_ms + 1}
    for s in ir.slices:
        if s.window_ms is not None:
            offsets |= {s.window_ms, s.window_ms + 1, s.window_ms - 1}
    on_edge = st.builds(lambda t, dt: int(t) + dt, st.sampled_from(sorted(set(ts.tolist()))),
                        st.sampled_from(sorted(offsets)))
    return st.one_of(on_edge, on_edge, anywhere)


# ----------------------------------------------------------------------------- stores
def store_of(users: Sequence[Mapping[str, np.ndarray]], user_ids: Sequence[int] | None = None,
             vocab: Mapping[str, Sequence[str]] | DatasetMeta = DEFAULT_VOCAB) -> TimelineStore:
    """A real in-memory :class:`TimelineStore` holding ``users`` (each time-sorted)."""
    lengths = [len(u["ts"]) for u in users]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    columns = {c: np.concatenate([np.asarray(u[c], dtype=dtype) for u in users]) if users
               else np.zeros(0, dtype) for c, dtype in EVENT_COLUMN_DTYPES.items()}
    ids = np.arange(len(users), dtype=np.int64) if user_ids is None else np.asarray(
        user_ids, dtype=np.int64)
    meta = vocab if isinstance(vocab, DatasetMeta) else DatasetMeta(
        kind="events", vocab={c: list(v) for c, v in Vocabulary.of(vocab).as_dict().items()})
    return TimelineStore(ids, offsets, columns, meta)


class ColumnStore:
    """The first name of :func:`store_of`, kept for callers that build stores with it."""

    @staticmethod
    def from_users(users: Sequence[Mapping[str, np.ndarray]],
                   user_ids: Sequence[int] | None = None,
                   meta: DatasetMeta | None = None) -> TimelineStore:
        return store_of(users, user_ids, DEFAULT_VOCAB if meta is None else meta)


@st.composite
def timeline_stores(draw, vocab: Mapping[str, Sequence[str]] = DEFAULT_VOCAB,
                    max_users: int = 4, n_max: int = 30) -> TimelineStore:
    """A TimelineStore of 1..``max_users`` users (ids ascending from 100), time-sorted."""
    users = draw(st.lists(user_timelines(vocab, n_max=n_max), min_size=1, max_size=max_users))
    return store_of(users, user_ids=range(100, 100 + len(users)), vocab=vocab)


def embedding_tables(ir: SpecIR, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 tables of the IR's shapes (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    return {t.name: rng.standard_normal((t.num_rows, t.dim)).astype(np.float32)
            for t in ir.tables}
