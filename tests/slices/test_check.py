"""Semantic checks: filters that can never hold, weights not provably positive, tables."""

from __future__ import annotations

import math

import pytest

from dv365.data.schema import DEFAULT_VOCAB
from dv365.slices.check import Interval, contradiction, interval_of, weight_problem
from dv365.slices.compile import compile_spec
from dv365.slices.errors import SpecError
from dv365.slices.ir import (
    And, Binary, Compare, Const, FieldRef, Member, Or, Slice, Unary,
)

DWELL, DURATION = FieldRef(field="dwell_time"), FieldRef(field="video_duration")
HEAD = "table media: media_id, rows 100, dim 8\n"


def gt(expr, v, op=">"):
    return Compare(expr=expr, op=op, value=v)


@pytest.mark.parametrize("pred, empty", [
    (And(args=(gt(DWELL, 30), gt(DWELL, 3, "<"))), True),
    (And(args=(gt(DWELL, 3), gt(DWELL, 3, "<="))), True),
    (And(args=(gt(DWELL, 3, ">="), gt(DWELL, 3, "<="))), False),  # exactly 3
    (And(args=(gt(DWELL, 3, "=="), gt(DWELL, 3, "!="))), True),
    (And(args=(gt(DWELL, 3, "=="), gt(DWELL, 4, "!="))), False),
    (And(args=(gt(DWELL, 30), gt(DURATION, 3, "<"))), False),  # different expressions
    (And(args=(Member(field="action", values=("like",)),
               Member(field="action", values=("share",)))), True),
    (And(args=(Member(field="action", values=("like", "share")),
               Member(field="action", values=("like",), negated=True))), False),
    (Member(field="media_type", values=tuple(DEFAULT_VOCAB["media_type"]), negated=True), True),
    (Member(field="media_id", values=(1, 2), negated=True), False),
    (And(args=(Member(field="media_id", values=(1,)),
               Member(field="media_id", values=(1,), negated=True))), True),
    (Or(args=(And(args=(gt(DWELL, 5), gt(DWELL, 1, "<"))), gt(DWELL, 2))), False),
    (Or(args=(And(args=(gt(DWELL, 5), gt(DWELL, 1, "<"))),
              And(args=(gt(DURATION, 5), gt(DURATION, 1, "<"))))), True),
])
def test_contradictions_by_interval_reasoning(pred, empty):
    assert bool(contradiction(pred, DEFAULT_VOCAB)) is empty


SCORE = Binary(op="/",
               left=Unary(op="ln", arg=Binary(op="+", left=DWELL, right=Const(value=1.0))),
               right=Unary(op="ln", arg=Binary(op="+", left=Binary(
                   op="*", left=Const(value=0.8), right=DURATION), right=Const(value=1.0))))


def weighted(weight, predicate):
    return Slice(name="s", timeline="implicit", predicate=predicate, weight=weight,
                 pooling="weighted_mean", id_column="media_id", table="t")


@pytest.mark.parametrize("weight, predicate, ok", [
    (SCORE, And(args=(gt(DWELL, 0), gt(DURATION, 0))), True),  # the paper's debiased score
    (SCORE, gt(SCORE, 0.5), True),  # the score bounds itself
    (SCORE, And(args=(gt(DWELL, 0, ">="), gt(DURATION, 0))), False),  # dwell 0 -> score 0
    (SCORE, gt(DWELL, 0), False),  # video_duration may be null (photos)
    (DWELL, gt(DWELL, 0), True),
    (DWELL, gt(DWELL, 0, ">="), False),
    (Unary(op="ln", arg=DWELL), gt(DWELL, 1), True),
    (Unary(op="ln", arg=DWELL), gt(DWELL, 0.5), False),
    (Unary(op="exp", arg=DWELL), gt(DWELL, -1, "!="), True),
    (Binary(op="^", left=DWELL, right=Const(value=0.5)), gt(DWELL, 0), True),
    (Binary(op="^", left=DURATION, right=Const(value=-1.0)), gt(DURATION, 2, "<"), False),
    (Binary(op="^", left=DURATION, right=Const(value=-1.0)),
     And(args=(gt(DURATION, 0), gt(DURATION, 2, "<"))), True),
    (Binary(op="-", left=DWELL, right=Const(value=1.0)), gt(DWELL, 1), True),
    (Binary(op="/", left=DWELL, right=DURATION), And(args=(gt(DWELL, 0), gt(DURATION, 0))),
     True),
    (Binary(op="/", left=DWELL, right=DURATION),
     Or(args=(And(args=(gt(DWELL, 1), gt(DURATION, 1))),
              And(args=(gt(DWELL, 2), gt(DURATION, 5))))), True),
    (Const(value=2.0), gt(DWELL, 1), True),
    (Const(value=-2.0), gt(DWELL, 1), False),
    (Unary(op="neg", arg=DWELL), gt(DWELL, 1), False),
])
def test_weights_must_be_provably_positive_and_non_null(weight, predicate, ok):
    assert (weight_problem(weighted(weight, predicate)) is None) is ok


def test_interval_arithmetic_keeps_strictness_at_zero():
    known = {DWELL: Interval(0.0, math.inf, True, True)}
    iv = interval_of(Unary(op="log1p", arg=DWELL), known)
    assert iv.lo == 0 and iv.lo_open and iv.positive
    assert not interval_of(Unary(op="log1p", arg=DWELL), {}).positive


def errors(src: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        compile_spec(src, path_for_messages="t.slice")
    return [d.message for d in info.value.diagnostics]


def test_every_problem_is_reported_not_only_the_first():
    got = errors(HEAD + "table au: author_id, rows 10, dim 4\n"
                 "slice a: from implict where dwel_time > 3 and action == lik "
                 "pool author_id into media mean over 0s\n"
                 "slice b: from explicit pool author_id into au mean\n")
    assert len(got) == 6, got


def test_a_spec_needs_slices_and_every_table_needs_one():
    assert errors("") == ["the spec declares no slices"]
    assert errors(HEAD + "table t: topic_id, rows 5, dim 8\n"
                  "slice a: from explicit pool media_id into media mean") == [
        "table 't' has no slices"]


def test_a_weight_proven_by_its_own_guard_compiles():
    ir = compile_spec(HEAD + "score = ln(dwell_time + 1) / ln(0.8 * video_duration + 1)\n"
                      "slice a: from implicit where score > 1 pool media_id into media "
                      "weighted mean by score")
    assert ir.slices[0].weight is not None


def test_generated_names_must_differ():
    assert errors(HEAD + "for a in [like, share] { slice x: from explicit where action == {a} "
                  "pool media_id into media mean }") == [
        "slice name 'x' is the same for several combinations of the for"]
    assert errors(HEAD + "slice x: from explicit pool media_id into media mean over 7d, 3d") == [
        "slice name 'x' is the same for every window of over"]
