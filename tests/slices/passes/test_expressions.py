"""Expressions: names resolve, constants fold, comparisons and filters take the normal form."""

from __future__ import annotations

from dv365.slices.compile import compile_spec
from dv365.slices.ir import And, Binary, Compare, Const, FieldRef, Member, Or, Slice, Unary

HEAD = "table media: media_id, rows 100, dim 8\n"
DWELL, DURATION = FieldRef(field="dwell_time"), FieldRef(field="video_duration")


def one(where: str, timeline: str = "implicit", extra: str = "") -> Slice:
    ir = compile_spec(HEAD + extra + f"slice s: from {timeline} where {where} "
                      "pool media_id into media mean")
    (s,) = ir.slices
    return s


def test_constants_fold_but_stay_on_their_side():
    s = one("dwell_time + 2 * 3 > ln(1) + 4", extra="")
    assert s.predicate == Compare(expr=Binary(op="+", left=DWELL, right=Const(value=6.0)),
                                  op=">", value=4.0)


def test_named_constants_and_expressions_are_inlined():
    s = one("score > s0", extra="gamma = 0.5\ns0 = 2 * gamma\n"
            "score = ln(dwell_time + 1) / ln(gamma * video_duration + 1)\n")
    num = Unary(op="ln", arg=Binary(op="+", left=DWELL, right=Const(value=1.0)))
    den = Unary(op="ln", arg=Binary(op="+", left=Binary(op="*", left=Const(value=0.5),
                                                          right=DURATION),
                                    right=Const(value=1.0)))
    assert s.predicate == Compare(expr=Binary(op="/", left=num, right=den), op=">", value=1.0)


def test_the_field_goes_left_and_two_sided_comparisons_subtract():
    assert one("15s < dwell_time").predicate == Compare(expr=DWELL, op=">", value=15.0)
    assert one("dwell_time >= video_duration").predicate == Compare(
        expr=Binary(op="-", left=DWELL, right=DURATION), op=">=", value=0.0)


def test_ranges_and_chains_are_half_open_conjunctions():
    expected = And(args=(Compare(expr=DWELL, op=">=", value=3.0),
                         Compare(expr=DWELL, op="<", value=15.0)))
    assert one("dwell_time in 3s..15s").predicate == expected
    assert one("3s <= dwell_time < 15s").predicate == expected
    assert one("dwell_time in 500ms..").predicate == Compare(expr=DWELL, op=">=", value=0.5)


def test_not_is_pushed_into_the_leaves():
    s = one("not (dwell_time > 3 and (surface == feed or media_id in [3, 1, 3]))")
    assert s.predicate == Or(args=(
        Compare(expr=DWELL, op="<=", value=3.0),
        And(args=(Member(field="surface", values=("feed",), negated=True),
                  Member(field="media_id", values=(1, 3), negated=True))),
    ))
    assert one("not dwell_time in 3s..15s").predicate == Or(args=(
        Compare(expr=DWELL, op="<", value=3.0), Compare(expr=DWELL, op=">=", value=15.0)))


def test_sets_follow_vocabulary_order_without_repeats():
    s = one("action in [save, like, save] and action != hide", timeline="explicit")
    assert s.predicate == And(args=(Member(field="action", values=("like", "save")),
                                    Member(field="action", values=("hide",), negated=True)))


def test_named_filters_combine():
    s = one("long and not skip", extra="long = dwell_time > 15s\nskip = surface == feed\n")
    assert s.predicate == And(args=(Compare(expr=DWELL, op=">", value=15.0),
                                    Member(field="surface", values=("feed",), negated=True)))
