"""compile_spec: includes, the vocabulary, and the shipped specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from dv365.data.schema import DEFAULT_VOCAB, DatasetMeta
from dv365.errors import NotFoundError
from dv365.slices.compile import compile_spec
from dv365.slices.errors import SpecError
from dv365.slices.printer import describe, print_spec

REPO = Path(__file__).resolve().parents[2]
HEAD = "table media: media_id, rows 100, dim 8\n"


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


def test_paths_in_messages_are_normalized(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "x.slice").write_text(
        'include "lib.slice"\n' + HEAD +
        "slice a: from implicit where dwel_time > 3 pool media_id into media mean\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PWD", raising=False)
    with pytest.raises(SpecError) as info:
        compile_spec(Path("configs/../specs/x.slice"))
    assert info.value.messages == [
        "specs/x.slice:1:1: error: included file 'specs/lib.slice' does not exist",
        "specs/x.slice:3:30: error: unknown field 'dwel_time' (did you mean 'dwell_time'?)"]
    with pytest.raises(NotFoundError) as missing:
        compile_spec(tmp_path / "configs" / ".." / "specs" / "nope.slice")
    assert missing.value.render() == \
        "specs/nope.slice: error: spec file 'specs/nope.slice' does not exist"
