"""Lowering: what a spec means as IR (folding, normal form, expansion, includes, vocab).

That printing any valid IR compiles back to it is a property test in test_roundtrip.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dv365.data.schema import DEFAULT_VOCAB, DatasetMeta
from dv365.slices.compile import compile_spec
from dv365.slices.errors import SpecError
from dv365.slices.ir import (
    And, Binary, Compare, Const, FieldRef, Member, Or, TruePred, Unary,
)
from dv365.slices.printer import describe, print_spec

REPO = Path(__file__).resolve().parents[2]
HEAD = "table media: media_id, rows 100, dim 8\n"
DWELL, DURATION = FieldRef(field="dwell_time"), FieldRef(field="video_duration")


def one(where: str, timeline: str = "implicit", extra: str = "") -> "Slice":  # noqa: F821
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


def test_windows_expand_one_slice_each_in_order():
    ir = compile_spec(HEAD + "slice v_{window}: from implicit pool media_id into media "
                      "mean over all, 7d, 36h")
    assert [(s.name, s.window_ms) for s in ir.slices] == [
        ("v_all", None), ("v_7d", 7 * 86_400_000), ("v_36h", 36 * 3_600_000)]


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


def test_gap_tables_and_hashing():
    ir = compile_spec("gap 0\ndim 16\ntable a: media_id, rows 2^20, hashing hash(9)\n"
                      "table b: topic_id, rows 100, dim 16, hashing identity\n"
                      "slice x: from explicit pool media_id into a mean\n"
                      "slice y: from explicit pool topic_id into b mean\n")
    assert ir.gap_ms == 0
    a, b = ir.tables
    assert (a.num_rows, a.dim, a.hashing.kind, a.hashing.seed) == (2**20, 16, "hash", 9)
    assert (b.hashing.kind, b.id_column) == ("identity", "topic_id")
    assert compile_spec(HEAD + "slice x: from explicit pool media_id into media").gap_ms == \
        24 * 3_600_000


def test_the_vocabulary_is_the_given_one_and_recorded():
    meta = DatasetMeta(kind="events", vocab={"media_type": ["clip"], "surface": ["home"],
                                             "action": ["upvote"]})
    src = HEAD + "slice x: from explicit where action == upvote pool media_id into media mean"
    ir = compile_spec(src, vocab=meta)
    assert ir.vocab == {"media_type": ("clip",), "surface": ("home",), "action": ("upvote",)}
    with pytest.raises(SpecError, match="unknown action 'upvote'"):
        compile_spec(src)
    assert compile_spec(HEAD + "slice x: from explicit pool media_id into media").vocab == {
        c: tuple(v) for c, v in DEFAULT_VOCAB.items()}


def test_includes_resolve_relative_to_the_including_file(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "common.slice").write_text(
        'include "tables.slice"\nlong = dwell_time > 15s\n')
    (tmp_path / "lib" / "tables.slice").write_text(HEAD)
    main = tmp_path / "main.slice"
    main.write_text('include "lib/common.slice"\ninclude "lib/tables.slice"\n'
                    "slice x: from implicit where long pool media_id into media mean\n")
    ir = compile_spec(main)
    assert [t.name for t in ir.tables] == ["media"]  # included twice, read once
    assert ir.origins["x"] == f"{main}:3:7"


def test_include_cycles_and_missing_files_are_errors(tmp_path):
    (tmp_path / "a.slice").write_text('include "b.slice"\n')
    (tmp_path / "b.slice").write_text('include "a.slice"\n' + HEAD +
                                      "slice x: from implicit pool media_id into media mean\n")
    with pytest.raises(SpecError, match="include cycle: a.slice -> b.slice -> a.slice"):
        compile_spec(tmp_path / "a.slice")
    (tmp_path / "c.slice").write_text('include "nope.slice"\n')
    with pytest.raises(SpecError, match="does not exist"):
        compile_spec(tmp_path / "c.slice")


@pytest.mark.parametrize("name, count", [("reels", 205), ("minimal", 6)])
def test_shipped_specs_compile_and_print_back(name, count):
    ir = compile_spec(REPO / "slices" / f"{name}.slice")
    assert len(ir.slices) == count
    assert len({t.dim for t in ir.tables}) == 1
    again = compile_spec(print_spec(ir))
    assert again.content_hash() == ir.content_hash()
    assert all(describe(s, ir.gap_ms) for s in ir.slices)


def test_reels_has_the_paper_families():
    ir = compile_spec(REPO / "slices" / "reels.slice")
    names = set(ir.slice_names)
    for action in DEFAULT_VOCAB["action"]:
        for id_ in ("media", "author", "topic"):
            assert {f"{action}_{id_}_{w}" for w in ("all", "7d", "3d")} <= names
    assert sum(s.weight is not None for s in ir.slices) == 18
    assert sum(s.timeline == "explicit" for s in ir.slices) == 72


def test_errors_inside_an_included_file_point_into_it(tmp_path):
    (tmp_path / "common.slice").write_text("long = dwel_time > 15s\n")
    main = tmp_path / "main.slice"
    main.write_text('include "common.slice"\n' + HEAD +
                    "slice x: from implicit pool media_id into media mean\n")
    with pytest.raises(SpecError) as info:
        compile_spec(main)
    text = info.value.render()
    assert text.startswith(f"{tmp_path / 'common.slice'}:1:8: error: unknown field 'dwel_time'")
    assert "    long = dwel_time > 15s\n           ^^^^^^^^^" in text
