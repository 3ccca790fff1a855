"""The reference semantics: properties over random specs and timelines, and the edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dv365.data.schema import DEFAULT_VOCAB, DatasetMeta
from dv365.data.vocabulary import Vocabulary
from dv365.errors import DataError
from dv365.slices import reference
from dv365.slices.hashing import rows_of
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
    Unary,
)
from tests.strategies import (
    DAY_MS,
    T0_MS,
    compounds,
    embedding_tables,
    leaves,
    request_times,
    spec_irs,
    store_of,
    timeline_stores,
    user_timelines,
    watch_ratio,
)

PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])

VOCAB = DEFAULT_VOCAB
FLIP = {"<": ">=", ">=": "<", "<=": ">", ">": "<=", "==": "!=", "!=": "=="}


def negate(pred):
    """``not pred`` pushed into the leaves (how the front end elaborates ``not``)."""
    if isinstance(pred, Compare):
        return pred.model_copy(update={"op": FLIP[pred.op]})
    if isinstance(pred, Member):
        return pred.model_copy(update={"negated": not pred.negated})
    if isinstance(pred, And):
        return Or(args=tuple(negate(a) for a in pred.args))
    if isinstance(pred, Or):
        return And(args=tuple(negate(a) for a in pred.args))
    raise TypeError(pred)


def leaves_of(pred):
    if isinstance(pred, (And, Or)):
        return [leaf for arg in pred.args for leaf in leaves_of(arg)]
    return [pred]


def defined(leaf, events) -> np.ndarray:
    """Events where the leaf's value is not null."""
    if isinstance(leaf, Compare):
        return ~np.isnan(reference.evaluate(leaf.expr, events))
    if leaf.field in ("media_type", "surface", "action"):
        return events.column(leaf.field) != -1
    return np.ones(events.n, dtype=bool)


def mask_of(pred, events):
    return reference.holds(pred, events, Vocabulary.of(VOCAB))


# ------------------------------------------------------------------------------ properties
@PROPERTY
@given(spec_irs(max_slices=1), user_timelines(), st.data())
def test_windows_are_nested(ir, events, data):
    base = ir.slices[0]
    short, long_ = sorted(data.draw(st.lists(st.integers(1, 10 * DAY_MS), min_size=2,
                                             max_size=2)))
    variants = tuple(base.model_copy(update={"name": f"w{i}", "window_ms": w})
                     for i, w in enumerate([short, long_, None]))
    nested = ir.model_copy(update={"slices": variants})
    request = data.draw(request_times(nested, events))
    sets = [set(s.indices.tolist()) for s in reference.select(nested, events, VOCAB, request)]
    assert sets[0] <= sets[1] <= sets[2]


@PROPERTY
@given(spec_irs(), user_timelines(), st.data())
def test_selected_events_lie_in_their_window_and_never_in_the_gap(ir, events, data):
    request = data.draw(request_times(ir, events))
    for selection in reference.select(ir, events, VOCAB, request):
        ts = events["ts"][selection.indices]
        assert (ts < request - ir.gap_ms).all()
        if selection.slice.window_ms is not None:
            assert (ts >= request - selection.slice.window_ms).all()
        timeline = 0 if selection.slice.timeline == "explicit" else 1
        assert (events["timeline"][selection.indices] == timeline).all()
        assert len(set(selection.indices.tolist())) == selection.count


@PROPERTY
@given(compounds(VOCAB), compounds(VOCAB), user_timelines())
def test_and_or_are_intersection_and_union(p, q, raw):
    events = reference.Events(raw)
    a, b = mask_of(p, events), mask_of(q, events)
    assert (mask_of(And(args=(p, q)), events) == (a & b)).all()
    assert (mask_of(Or(args=(p, q)), events) == (a | b)).all()


@PROPERTY
@given(leaves(VOCAB), user_timelines())
def test_negated_leaf_is_the_complement_among_non_null_events(leaf, raw):
    events = reference.Events(raw)
    known = defined(leaf, events)
    assert (mask_of(negate(leaf), events) == (known & ~mask_of(leaf, events))).all()


@PROPERTY
@given(compounds(VOCAB), user_timelines())
def test_not_is_the_complement_where_nothing_is_null(p, raw):
    events = reference.Events(raw)
    selected, rejected = mask_of(p, events), mask_of(negate(p), events)
    assert not (selected & rejected).any()  # a null never satisfies p and not p
    known = np.logical_and.reduce([defined(leaf, events) for leaf in leaves_of(p)])
    assert ((selected | rejected) | ~known).all()


@PROPERTY
@given(spec_irs(), user_timelines(), st.data())
def test_means_lie_between_the_min_and_max_of_the_selected_vectors(ir, events, data):
    request = data.draw(request_times(ir, events))
    tables = embedding_tables(ir, seed=data.draw(st.integers(0, 9)))
    for selection in reference.select(ir, events, VOCAB, request):
        if selection.count == 0:
            continue
        vectors = tables[selection.slice.table][selection.rows].astype(np.float64)
        pooled = selection.pooled(tables[selection.slice.table])
        if selection.slice.pooling in ("mean", "weighted_mean"):
            assert (pooled >= vectors.min(axis=0) - 1e-9).all()
            assert (pooled <= vectors.max(axis=0) + 1e-9).all()
            assert np.isclose(selection.bag_weights.sum(), 1.0)
        else:
            assert np.allclose(selection.bag_weights, selection.weights)
        assert (selection.weights > 0).all()


@PROPERTY
@given(spec_irs(), user_timelines(), st.data())
def test_results_do_not_depend_on_storage_order(ir, events, data):
    request = data.draw(request_times(ir, events))
    perm = np.asarray(data.draw(st.permutations(range(len(events["ts"])))), dtype=np.int64)
    shuffled = {name: column[perm] for name, column in events.items()}
    tables = embedding_tables(ir)
    for a, b in zip(reference.select(ir, events, VOCAB, request),
                    reference.select(ir, shuffled, VOCAB, request)):
        assert np.array_equal(a.rows, b.rows)
        assert np.array_equal(a.weights, b.weights, equal_nan=True)
        assert np.array_equal(a.bag_weights, b.bag_weights)
        for name, column in events.items():  # the same events, found at their new places
            assert np.array_equal(column[a.indices], shuffled[name][b.indices], equal_nan=True)
    pooled, counts = reference.pool(ir, events, VOCAB, request, tables)
    pooled_shuffled, counts_shuffled = reference.pool(ir, shuffled, VOCAB, request, tables)
    assert np.array_equal(pooled, pooled_shuffled) and np.array_equal(counts, counts_shuffled)


@PROPERTY
@given(spec_irs(), timeline_stores(max_users=4), st.data())
def test_batches_equal_users_alone_and_sum_pooling_of_the_jagged_form(ir, store, data):
    n_users = len(store.user_ids)
    users = data.draw(st.lists(st.integers(0, n_users - 1), min_size=1, max_size=5))
    times = [T0_MS + data.draw(st.integers(0, 12 * DAY_MS)) for _ in users]
    tables = embedding_tables(ir, seed=1)
    pooled, counts = reference.pool_batch(ir, store, users, times, tables)
    for b, (u, t) in enumerate(zip(users, times)):
        alone, alone_counts = reference.pool(ir, reference.user_events(store, u), store.meta,
                                             t, tables)
        assert np.array_equal(pooled[b], alone) and np.array_equal(counts[b], alone_counts)

    jagged = reference.jagged_batch(ir, store, users, times)
    batch, n_slices = len(users), len(ir.slices)
    assert jagged.lengths.shape == (n_slices * batch,) and jagged.lengths.dtype == np.int64
    assert np.array_equal(jagged.counts, counts)
    assert len(jagged.values) == len(jagged.weights) == jagged.lengths.sum()
    # A SUM EmbeddingBag over the key-major jagged rows with the bag weights is the pooling.
    ends = np.cumsum(jagged.lengths)
    for s, slice_ in enumerate(ir.slices):
        table = tables[slice_.table].astype(np.float64)
        for b in range(batch):
            k = s * batch + b
            rows = jagged.values[ends[k] - jagged.lengths[k]:ends[k]]
            weights = jagged.weights[ends[k] - jagged.lengths[k]:ends[k]].astype(np.float64)
            summed = (weights[:, None] * table[rows]).sum(axis=0)
            assert np.allclose(summed, pooled[b, s], rtol=1e-5, atol=1e-5)


def _compiled_filters(*filters: str):
    """The predicates the front end builds for ``where`` clauses (None if it rejects one)."""
    from dv365.errors import Dv365Error
    from dv365.slices.compile import compile_spec

    text = "table media: media_id, rows 100, dim 2\n" + "".join(
        f"slice s{i}: from implicit where {f} pool media_id into media mean\n"
        for i, f in enumerate(filters))
    try:
        return [s.predicate for s in compile_spec(text).slices]
    except Dv365Error:  # a filter the checker proves empty
        return None


@PROPERTY
@given(compounds(VOCAB), compounds(VOCAB), user_timelines())
def test_the_languages_and_or_not_mean_intersection_union_complement(p, q, raw):
    from dv365.slices.printer import format_predicate

    a, b = f"({format_predicate(p)})", f"({format_predicate(q)})"
    compiled = _compiled_filters(a, b, f"{a} and {b}", f"{a} or {b}", f"not {a}")
    assume(compiled is not None)
    events = reference.Events(raw)
    sel_p, sel_q, sel_and, sel_or, sel_not = (mask_of(c, events) for c in compiled)
    assert (sel_and == (sel_p & sel_q)).all() and (sel_or == (sel_p | sel_q)).all()
    assert not (sel_p & sel_not).any()
    known = np.logical_and.reduce([defined(leaf, events) for leaf in leaves_of(p)])
    assert ((sel_p | sel_not) | ~known).all()


# ------------------------------------------------------------------------------ edge cases
MEDIA = Table(name="media", id_column="media_id", num_rows=100, dim=2, hashing=Hashing())


def _events(*rows):
    """Events from (ts offset ms, timeline, media_id, media_type, action, duration, dwell)."""
    cols = list(zip(*rows))
    n = len(rows)
    return {
        "ts": T0_MS + np.asarray(cols[0], dtype=np.int64),
        "timeline": np.asarray(cols[1], dtype=np.int8),
        "media_id": np.asarray(cols[2], dtype=np.int64),
        "author_id": np.zeros(n, dtype=np.int64),
        "topic_id": np.zeros(n, dtype=np.int64),
        "media_type": np.asarray(cols[3], dtype=np.int8),
        "surface": np.zeros(n, dtype=np.int8),
        "action": np.asarray(cols[4], dtype=np.int8),
        "video_duration": np.asarray(cols[5], dtype=np.float32),
        "dwell_time": np.asarray(cols[6], dtype=np.float32),
    }


def _ir(*slices, gap_ms=DAY_MS, tables=(MEDIA,)):
    return SpecIR(gap_ms=gap_ms, tables=tables, slices=slices)


def _slice(name="s", timeline="implicit", **kw):
    return Slice(name=name, timeline=timeline, id_column="media_id", table="media", **kw)


LIKE, SHARE = 0, 1
VIDEO, PHOTO = 0, 1
NAN = float("nan")


def test_window_edge_is_included_and_gap_edge_excluded():
    events = _events(
        (0, 1, 1, VIDEO, -1, 10, 5),           # exactly at R - window: included
        (DAY_MS - 1, 1, 2, VIDEO, -1, 10, 5),  # just inside the window
        (2 * DAY_MS, 1, 3, VIDEO, -1, 10, 5),  # exactly at R - gap: excluded
        (2 * DAY_MS - 1, 1, 4, VIDEO, -1, 10, 5),  # one ms before the gap: included
    )
    request = T0_MS + 3 * DAY_MS
    ir = _ir(_slice(window_ms=3 * DAY_MS), _slice("older", window_ms=3 * DAY_MS - 1))
    edge, inside = reference.select(ir, events, VOCAB, request)
    assert sorted(events["media_id"][edge.indices].tolist()) == [1, 2, 4]
    assert sorted(events["media_id"][inside.indices].tolist()) == [2, 4]


def test_without_gap_an_event_at_the_request_time_is_not_history():
    events = _events((0, 1, 1, VIDEO, -1, 10, 5), (5, 1, 2, VIDEO, -1, 10, 5))
    (selection,) = reference.select(_ir(_slice(), gap_ms=0), events, VOCAB, T0_MS + 5)
    assert events["media_id"][selection.indices].tolist() == [1]


def test_window_inside_the_gap_selects_nothing():
    events = _events((0, 1, 1, VIDEO, -1, 10, 5))
    (selection,) = reference.select(_ir(_slice(window_ms=DAY_MS)), events, VOCAB,
                                    T0_MS + DAY_MS // 2)
    assert selection.count == 0


def test_empty_slice_pools_to_zero_with_count_zero():
    events = _events((0, 0, 7, VIDEO, LIKE, 10, NAN))
    ir = _ir(_slice("implicit_none"),
             _slice("weighted", weight=FieldRef(field="dwell_time"), pooling="weighted_mean",
                    predicate=Compare(expr=FieldRef(field="dwell_time"), op=">", value=0)))
    tables = {"media": np.ones((100, 2), dtype=np.float32)}
    pooled, counts = reference.pool(ir, events, VOCAB, T0_MS + 2 * DAY_MS, tables)
    assert counts.tolist() == [0, 0] and (pooled == 0).all() and pooled.shape == (2, 2)
    empty = reference.select(ir, _no_events(), VOCAB, T0_MS)
    assert [s.count for s in empty] == [0, 0]


def _no_events():
    return {name: column[:0] for name, column in _events((0, 0, 0, 0, 0, 1, 1)).items()}


@pytest.mark.parametrize("op", ["<", "<=", ">", ">=", "==", "!="])
def test_photos_never_match_watch_ratio_or_debiased_predicates(op):
    from tests.strategies import debiased_score

    events = _events((0, 1, 1, PHOTO, -1, NAN, 4), (0, 1, 2, VIDEO, -1, 8, 4))
    ir = _ir(_slice("ratio", predicate=Compare(expr=watch_ratio(1.0), op=op, value=0.5)),
             _slice("debiased", predicate=Compare(expr=debiased_score(0.8), op=op, value=0.7)))
    for selection in reference.select(ir, events, VOCAB, T0_MS + 2 * DAY_MS):
        assert 1 not in events["media_id"][selection.indices].tolist()


def test_null_action_matches_neither_in_nor_not_in():
    events = _events((0, 1, 1, VIDEO, -1, 10, 5), (0, 1, 2, VIDEO, LIKE, 10, 5))
    ir = _ir(_slice("liked", predicate=Member(field="action", values=("like",))),
             _slice("not_liked", predicate=Member(field="action", values=("like",),
                                                  negated=True)))
    liked, not_liked = reference.select(ir, events, VOCAB, T0_MS + 2 * DAY_MS)
    assert events["media_id"][liked.indices].tolist() == [2]
    assert not_liked.count == 0


def test_ties_in_time_are_all_selected_in_a_canonical_order():
    events = _events((10, 0, 9, VIDEO, LIKE, 10, NAN), (10, 0, 3, VIDEO, SHARE, 10, NAN),
                     (5, 0, 4, VIDEO, LIKE, 10, NAN))
    (selection,) = reference.select(_ir(_slice(timeline="explicit")), events, VOCAB,
                                    T0_MS + 2 * DAY_MS)
    assert selection.rows.tolist() == [4, 3, 9]  # by time, then by the other columns


def test_bag_weights_per_pooling():
    events = _events((0, 1, 1, VIDEO, -1, 10, 1), (1, 1, 2, VIDEO, -1, 10, 3))
    dwell = FieldRef(field="dwell_time")
    ir = _ir(_slice("mean"), _slice("wmean", weight=dwell, pooling="weighted_mean"),
             _slice("sum_w", weight=dwell, pooling="sum"), _slice("sum", pooling="sum"))
    mean, wmean, sum_w, plain_sum = reference.select(ir, events, VOCAB, T0_MS + 2 * DAY_MS)
    assert mean.bag_weights.tolist() == [0.5, 0.5]
    assert wmean.bag_weights.tolist() == [0.25, 0.75] and wmean.weight_sum == 4
    assert sum_w.bag_weights.tolist() == [1, 3]
    assert plain_sum.bag_weights.tolist() == [1, 1]
    table = np.arange(200, dtype=np.float32).reshape(100, 2)
    assert wmean.pooled(table).tolist() == (0.25 * table[1] + 0.75 * table[2]).tolist()


def test_debiased_weight_matches_the_formula():
    events = _events((0, 1, 1, VIDEO, -1, 20, 6))
    score = Binary(op="/",
                   left=Unary(op="ln", arg=Binary(op="+", left=FieldRef(field="dwell_time"),
                                                  right=Const(value=1))),
                   right=Unary(op="ln", arg=Binary(op="+", left=Binary(
                       op="*", left=Const(value=0.8), right=FieldRef(field="video_duration")),
                       right=Const(value=1))))
    ir = _ir(_slice(weight=score, pooling="sum"))
    (selection,) = reference.select(ir, events, VOCAB, T0_MS + 2 * DAY_MS)
    assert selection.weights[0] == pytest.approx(np.log(7) / np.log(17))


def test_hashing_follows_rows_of():
    table = Table(name="media", id_column="media_id", num_rows=7, dim=2,
                  hashing=Hashing(kind="hash", seed=42))
    events = _events(*[(i, 1, 1000 + i, VIDEO, -1, 10, 5) for i in range(5)])
    (selection,) = reference.select(_ir(_slice(), tables=(table,)), events, VOCAB,
                                    T0_MS + 2 * DAY_MS)
    assert selection.rows.tolist() == rows_of(events["media_id"], table).tolist()


def test_vocabulary_codes_come_from_the_data():
    # The same spec on data whose vocabulary orders actions differently.
    meta = DatasetMeta(kind="events", vocab={"action": ["share", "like"]})
    events = _events((0, 0, 1, VIDEO, 0, 10, NAN), (0, 0, 2, VIDEO, 1, 10, NAN))
    ir = _ir(_slice(timeline="explicit", predicate=Member(field="action", values=("like",))))
    (selection,) = reference.select(ir, events, meta, T0_MS + 2 * DAY_MS)
    assert selection.rows.tolist() == [2]


def test_value_missing_from_the_data_vocabulary_is_a_clear_error():
    ir = _ir(_slice(timeline="explicit", predicate=Member(field="action", values=("likes",))))
    ir = ir.model_copy(update={"origins": {"s": "slices/x.slice:3:7"}})
    with pytest.raises(DataError) as info:
        reference.select(ir, _events((0, 0, 1, VIDEO, 0, 10, NAN)), VOCAB, T0_MS + 2 * DAY_MS)
    assert info.value.render() == (
        "slices/x.slice:3:7: error: slice 's': action value 'likes' is not in the data's "
        "vocabulary (did you mean 'like'?)")


def test_non_positive_weight_is_a_clear_error():
    ir = _ir(_slice(weight=FieldRef(field="dwell_time"), pooling="weighted_mean"))
    with pytest.raises(DataError, match="slice 's': weight 0.0 .* not finite and positive"):
        reference.select(ir, _events((0, 1, 1, VIDEO, -1, 10, 0)), VOCAB, T0_MS + 2 * DAY_MS)


def test_tables_must_match_the_spec():
    ir = _ir(_slice())
    with pytest.raises(DataError, match="table 'media' has shape"):
        reference.pool(ir, _no_events(), VOCAB, T0_MS, {"media": np.zeros((3, 2))})
    with pytest.raises(DataError, match="no embedding table 'media'"):
        reference.pool(ir, _no_events(), VOCAB, T0_MS, {})


def test_jagged_layout_is_slice_major():
    users = [_events((0, 1, 1, VIDEO, -1, 10, 5)),
             _events((0, 1, 2, VIDEO, -1, 10, 5), (1, 1, 3, VIDEO, -1, 10, 5))]
    store = store_of(users)
    ir = _ir(_slice("a"), _slice("b", predicate=Member(field="media_id", values=(3,))))
    jagged = reference.jagged_batch(ir, store, [0, 1], T0_MS + 2 * DAY_MS)
    assert jagged.lengths.tolist() == [1, 2, 0, 1]  # a: users 0, 1; then b: users 0, 1
    assert jagged.values.tolist() == [1, 2, 3, 3]
    assert jagged.weights.dtype == np.float32
    assert jagged.weights.tolist() == [1.0, 0.5, 0.5, 1.0]
    assert jagged.counts.tolist() == [[1, 0], [2, 1]]
