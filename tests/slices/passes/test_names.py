"""Name templates: a lone placeholder is the loop value, a name gets the value's label."""

from __future__ import annotations

import pytest

from dv365.slices import ast
from dv365.slices.errors import Pos
from dv365.slices.passes.names import expand_template
from dv365.slices.passes.report import Reporter, Skip
from dv365.slices.passes.scopes import LoopBinding, Scope

AT = Pos("t.slice", 1, 1)
TOP = Scope()
INNER = Scope(parent=TOP, loops={"id": LoopBinding(ast.Name(AT, "media_id"), "media", TOP)})


def name(text: str) -> ast.Name:
    return ast.Name(AT, text)


def test_a_lone_placeholder_is_the_value_and_a_name_gets_the_label():
    report = Reporter()
    assert expand_template(name("{id}"), INNER, report) == "media_id"  # pool {id}
    assert expand_template(name("{id}"), INNER, report, naming=True) == "media"  # table {id}
    assert expand_template(name("{id}_t"), INNER, report) == "media_t"
    assert expand_template(name("plain"), TOP, report) == "plain"
    assert report.diagnostics == []


def test_an_unknown_placeholder_is_reported_with_the_known_ones():
    report = Reporter()
    with pytest.raises(Skip):
        expand_template(name("{ie}"), INNER, report)
    with pytest.raises(Skip):
        expand_template(name("x_{a}"), TOP, report)
    assert [(d.message, d.hint) for d in report.diagnostics] == [
        ("unknown placeholder {ie}", "placeholders here: {id}"),
        ("unknown placeholder {a}",
         "placeholders come from an enclosing for, and {window} from over")]
