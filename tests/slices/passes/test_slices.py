"""Slices and windows: one IR slice per window, after every declaration is known."""

from __future__ import annotations

from dv365.slices.compile import compile_spec
from dv365.slices.ir import Compare, FieldRef, TruePred, Unary

HEAD = "table media: media_id, rows 100, dim 8\n"
DWELL = FieldRef(field="dwell_time")


def test_windows_expand_one_slice_each_in_order():
    ir = compile_spec(HEAD + "slice v_{window}: from implicit pool media_id into media "
                      "mean over all, 7d, 36h")
    assert [(s.name, s.window_ms) for s in ir.slices] == [
        ("v_all", None), ("v_7d", 7 * 86_400_000), ("v_36h", 36 * 3_600_000)]


def test_pooling_kinds_and_weights():
    ir = compile_spec(HEAD + "w = log1p(dwell_time)\n"
                      "slice a: from implicit pool media_id into media sum\n"
                      "slice b: from implicit where w > 0 pool media_id into media "
                      "weighted mean by w\n"
                      "slice c: from implicit where w > 0 pool media_id into media "
                      "weighted sum by w\n"
                      "slice d: from implicit pool media_id into media\n")
    got = [(s.pooling, s.weight) for s in ir.slices]
    w = Unary(op="log1p", arg=DWELL)
    assert got == [("sum", None), ("weighted_mean", w), ("sum", w), ("mean", None)]
    assert ir.slices[3].predicate == TruePred()


def test_a_slice_may_use_tables_and_definitions_declared_below_it():
    ir = compile_spec("slice s: from implicit where long pool media_id into media mean\n"
                      "long = dwell_time > 15s\n" + HEAD)
    assert ir.slices[0].predicate == Compare(expr=DWELL, op=">", value=15.0)
    assert ir.slices[0].table == "media"
