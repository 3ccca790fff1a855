"""IR constructors: flat and / or, negation normal form, folding of constants only."""

from __future__ import annotations

import math

import pytest

from dv365.slices.ir import And, Binary, Compare, Const, FieldRef, Member, Or, TruePred, Unary
from dv365.slices.passes.normal_form import fold, make_and, make_or, negate

DWELL = FieldRef(field="dwell_time")
A = Compare(expr=DWELL, op=">", value=1.0)
B = Compare(expr=DWELL, op="<=", value=9.0)
LIKE = Member(field="action", values=("like",))


def test_and_and_or_are_flat():
    assert make_and([A, And(args=(B, LIKE))]) == And(args=(A, B, LIKE))
    assert make_or([Or(args=(A, B)), LIKE]) == Or(args=(A, B, LIKE))
    assert make_and([A]) == A and make_or([LIKE]) == LIKE
    assert make_and([A, Or(args=(B, LIKE))]) == And(args=(A, Or(args=(B, LIKE))))


def test_negation_flips_the_leaves_and_swaps_and_with_or():
    assert negate(And(args=(A, Or(args=(B, LIKE))))) == Or(args=(
        Compare(expr=DWELL, op="<=", value=1.0),
        And(args=(Compare(expr=DWELL, op=">", value=9.0),
                  Member(field="action", values=("like",), negated=True)))))
    pred = Or(args=(A, And(args=(B, LIKE))))
    assert negate(negate(pred)) == pred
    with pytest.raises(ValueError):
        negate(TruePred())


def test_folding_touches_operations_on_constants_only():
    assert fold(Binary(op="*", left=Const(value=2.0), right=Const(value=3.0))) == Const(value=6.0)
    kept = Binary(op="+", left=DWELL, right=Const(value=1.0))
    assert fold(kept) == kept
    assert math.copysign(1.0, fold(Unary(op="neg", arg=Const(value=0.0))).value) == 1.0
    for not_finite in (Binary(op="/", left=Const(value=1.0), right=Const(value=0.0)),
                       Unary(op="ln", arg=Const(value=-1.0)),
                       Binary(op="^", left=Const(value=-8.0), right=Const(value=0.5)),
                       Unary(op="exp", arg=Const(value=1e6))):
        assert fold(not_finite) is None
