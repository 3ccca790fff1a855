"""Golden error messages: the exact text users see for a dozen common mistakes.

Each case is a one-table spec (``table media: media_id, rows 100, dim 8``) plus the lines
shown; the expected text is the full rendering: ``file:line:col: error: message (hint)``, the
source line and a caret under the culprit. Change a message here only on purpose.
"""

from __future__ import annotations

import pytest

from dv365.cli import app as cli_app
from dv365.slices.compile import compile_spec
from dv365.slices.errors import Diagnostic, Pos, SpecError

HEAD = "table media: media_id, rows 100, dim 8\n"

GOLDEN = [
    pytest.param(
        'slice a: from implicit where dwel_time > 15s pool media_id into media mean',
        "spec.slice:2:30: error: unknown field 'dwel_time' (did you mean 'dwell_time'?)\n    slice a: from implicit where dwel_time > 15s pool media_id into media mean\n                                 ^^^^^^^^^",
        id='misspelled_field'),
    pytest.param(
        'slice a: from explicit where action == lik pool media_id into media mean',
        "spec.slice:2:40: error: unknown action 'lik' (did you mean 'like'?)\n    slice a: from explicit where action == lik pool media_id into media mean\n                                           ^^^",
        id='unknown_action'),
    pytest.param(
        'slice a: from explicit where media_id == 3s pool media_id into media mean',
        'spec.slice:2:42: error: cannot compare id media_id with a duration\n    slice a: from explicit where media_id == 3s pool media_id into media mean\n                                             ^^',
        id='duration_vs_id'),
    pytest.param(
        'slice a: from explicit where surface == 3 pool media_id into media mean',
        'spec.slice:2:41: error: surface is compared with a number; its values are names like reels, feed, stories, explore\n    slice a: from explicit where surface == 3 pool media_id into media mean\n                                            ^',
        id='enum_vs_number'),
    pytest.param(
        'slice a: from implicit where dwell_time in 15s..3s pool media_id into media mean',
        'spec.slice:2:44: error: empty range 15..3 (a range lo..hi holds lo <= x < hi)\n    slice a: from implicit where dwell_time in 15s..3s pool media_id into media mean\n                                               ^^^^^^^',
        id='empty_range'),
    pytest.param(
        'slice a: from implicit where dwell_time > 30s and dwell_time < 3s pool media_id into media mean',
        "spec.slice:2:24: error: slice 'a' can never select an event: dwell_time > 30 and dwell_time < 3 contradict\n    slice a: from implicit where dwell_time > 30s and dwell_time < 3s pool media_id into media mean\n                           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
        id='contradictory_range'),
    pytest.param(
        'slice a: from implicit pool media_id into media mean over 0s',
        'spec.slice:2:59: error: window must be positive, not 0s\n    slice a: from implicit pool media_id into media mean over 0s\n                                                              ^^',
        id='window_not_positive'),
    pytest.param(
        'slice a: from implicit pool media_id into media mean\nslice a: from explicit pool media_id into media mean',
        "spec.slice:3:7: error: duplicate slice name 'a' (first at spec.slice:2:7)\n    slice a: from explicit pool media_id into media mean\n          ^",
        id='duplicate_slice_name'),
    pytest.param(
        'slice a: from implicit where dwell_time >= 0 pool media_id into media weighted mean by log1p(dwell_time)',
        "spec.slice:2:71: error: slice 'a': weight log1p(dwell_time) can be zero or negative over the filter (it lies in [0, inf)); bound it in where, e.g. 'log1p(dwell_time) > 0'\n    slice a: from implicit where dwell_time >= 0 pool media_id into media weighted mean by log1p(dwell_time)\n                                                                          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
        id='weight_not_positive'),
    pytest.param(
        'table au: author_id, rows 10, dim 8\nslice a: from implicit pool media_id into media mean',
        "spec.slice:2:7: error: table 'au' has no slices (pool a slice into it or remove it)\n    table au: author_id, rows 10, dim 8\n          ^^",
        id='table_without_slices'),
    pytest.param(
        'slice a: from implicit pool media_id mean',
        "spec.slice:2:24: error: slice has no table (add 'into <table>' after the id column)\n    slice a: from implicit pool media_id mean\n                           ^^^^^^^^^^^^^",
        id='slice_without_table'),
    pytest.param(
        'slice a: from implicit pool author_id into media mean',
        "spec.slice:2:29: error: slice pools author_id but table 'media' holds media_id\n    slice a: from implicit pool author_id into media mean\n                                ^^^^^^^^^",
        id='id_column_mismatch'),
    pytest.param(
        'slice a: from explicit where surface == "reels pool media_id into media mean',
        'spec.slice:2:41: error: unterminated string (close it with " on the same line)\n    slice a: from explicit where surface == "reels pool media_id into media mean\n                                            ^',
        id='unterminated_string'),
    pytest.param(
        'slice a: from explicit pool media_id into media mean over all 7d',
        "spec.slice:2:63: error: unexpected '7d': separate windows with commas: over all, 7d, 3d\n    slice a: from explicit pool media_id into media mean over all 7d\n                                                                  ^^",
        id='unexpected_token'),
    pytest.param(
        'slice a: from explicit where action in [like, share pool media_id into media mean',
        "spec.slice:2:53: error: unexpected 'pool': missing ']' ('[' opened at 2:40)\n    slice a: from explicit where action in [like, share pool media_id into media mean\n                                                        ^^^^",
        id='missing_bracket'),
]


@pytest.mark.parametrize("source, expected", GOLDEN)
def test_golden_message(source, expected):
    with pytest.raises(SpecError) as info:
        compile_spec(HEAD + source, path_for_messages="spec.slice")
    assert info.value.render() == expected


def test_the_cli_prints_the_same_text_and_exits_2(tmp_path, capsys):
    source, expected = GOLDEN[0].values
    spec = tmp_path / "spec.slice"
    spec.write_text(HEAD + source)
    assert cli_app.main(["compile", str(spec), "-o", str(tmp_path / "build")]) == 2
    err = capsys.readouterr().err
    assert expected.split("\n")[0].replace("spec.slice", str(spec)) in err
    assert not (tmp_path / "build").exists()


def test_several_mistakes_are_all_rendered_with_a_count():
    source = ("slice a: from implicit where dwel_time > 3 pool media_id into media mean\n"
              "slice b: from explict pool media_id into media mean\n")
    with pytest.raises(SpecError) as info:
        compile_spec(HEAD + source, path_for_messages="spec.slice")
    text = info.value.render()
    assert text.count(": error: ") == 2 and text.endswith("2 errors")


def test_positions_name_their_file_as_display_path_spells_it(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PWD", raising=False)
    diagnostic = Diagnostic(Pos("configs/../specs/x.slice", 2, 3), "oops")
    assert diagnostic.render() == "specs/x.slice:2:3: error: oops"
    assert str(Pos(str(tmp_path / "specs" / "x.slice"), 1, 1)) == "specs/x.slice:1:1"
    assert str(Pos("<spec>", 1, 1)) == "<spec>:1:1"
