"""Declarations: definitions, gap and dim, in source order, each seeing what is above it."""

from __future__ import annotations

import pytest

from dv365.data.vocabulary import Vocabulary
from dv365.slices.compile import compile_spec
from dv365.slices.errors import SpecError
from dv365.slices.ir import Compare, Const, FieldRef
from dv365.slices.parse import parse
from dv365.slices.passes.declarations import declare
from dv365.slices.passes.expressions import Expressions
from dv365.slices.passes.report import Reporter
from dv365.slices.passes.scopes import Definitions, expand
from dv365.slices.passes.values import Num, Pred

HEAD = "table media: media_id, rows 100, dim 8\n"
SLICE = "slice x: from explicit pool media_id into media mean\n"


def messages(source: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        compile_spec(source)
    return [d.message for d in info.value.diagnostics]


def test_gap_and_dim_are_set_at_the_top_with_defaults():
    ir = compile_spec("gap 0\ndim 16\ntable a: media_id, rows 10\n"
                      "slice x: from explicit pool media_id into a mean\n")
    assert ir.gap_ms == 0
    assert ir.tables[0].dim == 16
    assert compile_spec(HEAD + "slice x: from explicit pool media_id into media").gap_ms == \
        24 * 3_600_000
    assert messages("gap 1d\ngap 2d\n" + HEAD + SLICE) == [
        "gap is set twice (first at <spec>:1:1)"]


def test_a_declaration_sees_only_what_is_declared_above_it():
    assert messages(HEAD + "x = y + 1\ny = 2\n" + SLICE) == ["unknown name 'y'"]
    assert messages("gap g\ng = 1d\n" + HEAD + SLICE) == ["unknown name 'g'"]
    assert messages("table t: media_id, rows 3\ndim 8\n") == ["table 't' needs a dim"]


def test_a_definition_binds_its_name_to_a_typed_value_in_its_scope():
    report = Reporter()
    expansion = expand(parse("gamma = 0.5\nlong = dwell_time > 15s\n"
                             "for a in [1] { inner = {a} * gamma }\n"), None, report)
    expressions = Expressions(Vocabulary.of(None).as_dict(), Definitions(), report)
    definitions = declare(expansion, expressions, report).definitions
    assert report.diagnostics == []
    top, body = expansion.top, expansion.statements[2].scope
    assert definitions.lookup(top, "gamma") == Num(Const(value=0.5))
    assert definitions.lookup(top, "long") == Pred(Compare(expr=FieldRef(field="dwell_time"),
                                                           op=">", value=15.0))  # seconds
    assert definitions.lookup(body, "inner") == Num(Const(value=0.5))
    assert definitions.lookup(body, "gamma") == Num(Const(value=0.5))  # read from around it
    assert definitions.lookup(top, "inner") is None
    assert definitions.in_scope(body, "gamma") is None
    assert definitions.visible(body) == {"gamma", "long", "inner"}
    assert definitions.visible(top) == {"gamma", "long"}
