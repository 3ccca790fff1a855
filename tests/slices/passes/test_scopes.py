"""Scopes and expansion: for blocks run once per combination, includes are read in place."""

from __future__ import annotations

from dv365.slices.compile import compile_spec
from dv365.slices.ir import Binary, Compare, Const, FieldRef, Member
from dv365.slices.parse import parse
from dv365.slices.passes.report import Reporter
from dv365.slices.passes.scopes import expand

HEAD = "table media: media_id, rows 100, dim 8\n"
DWELL, DURATION = FieldRef(field="dwell_time"), FieldRef(field="video_duration")


def test_generators_are_a_cross_product_with_labels_and_values():
    ir = compile_spec(
        "for id in [media = media_id, author = author_id] {\n"
        "  table {id}_t: {id}, rows 10, dim 4\n}\n"
        "for a in [like, share], id in [media = media_id, author = author_id] {\n"
        "  slice {a}_{id}: from explicit where action == {a} pool {id} into {id}_t mean\n}\n")
    assert [t.name for t in ir.tables] == ["media_t", "author_t"]
    assert [(s.name, s.id_column, s.table) for s in ir.slices] == [
        ("like_media", "media_id", "media_t"), ("like_author", "author_id", "author_t"),
        ("share_media", "media_id", "media_t"), ("share_author", "author_id", "author_t")]
    assert ir.slices[2].predicate == Member(field="action", values=("share",))


def test_nested_generators_see_outer_placeholders():
    ir = compile_spec(HEAD + "for beta in [r1 = 1, r05 = 0.5] {\n"
                      "  for b in [hi = dwell_time / video_duration ^ {beta} >= 1] {\n"
                      "    slice {beta}_{b}: from implicit where {b} "
                      "pool media_id into media mean } }")
    assert [s.name for s in ir.slices] == ["r1_hi", "r05_hi"]
    ratio = Binary(op="/", left=DWELL, right=Binary(op="^", left=DURATION,
                                                    right=Const(value=0.5)))
    assert ir.slices[1].predicate == Compare(expr=ratio, op=">=", value=1.0)


def test_expansion_places_each_declaration_once_per_combination_in_source_order():
    module = parse("x = 1\nfor a in [p = 1, q = 2], b in [u, v] { y = {a}\n"
                   "  slice s_{a}_{b}: from implicit pool media_id into t mean }\ngap 1d\n")
    report = Reporter()
    expansion = expand(module, None, report)
    assert report.diagnostics == []
    placed = [(type(p.stmt).__name__, {v: p.scope.loop(v).label for v in p.scope.loop_names()})
              for p in expansion.statements]
    assert placed == [("Define", {}),
                      ("Define", {"a": "p", "b": "u"}), ("SliceDecl", {"a": "p", "b": "u"}),
                      ("Define", {"a": "p", "b": "v"}), ("SliceDecl", {"a": "p", "b": "v"}),
                      ("Define", {"a": "q", "b": "u"}), ("SliceDecl", {"a": "q", "b": "u"}),
                      ("Define", {"a": "q", "b": "v"}), ("SliceDecl", {"a": "q", "b": "v"}),
                      ("Gap", {})]
    assert expansion.statements[0].scope is expansion.top
    assert dict(expansion.sources) == {module.path: module.source}


def test_what_may_not_stand_inside_a_for_is_reported_by_the_expansion():
    report = Reporter()
    expansion = expand(parse('for a in [1] { gap 1d\ndim 8\ninclude "x.slice" }\n'
                             'include "y.slice"\nfor window in [1] { }'), None, report)
    assert [d.message for d in report.diagnostics] == [
        "gap must be set at the top level, not inside a for",
        "dim must be set at the top level, not inside a for",
        "include must be at the top level of a file",
        "include is not available here",  # no loader: a spec given as text
        "'window' is reserved for the over windows"]
    assert expansion.statements == ()
