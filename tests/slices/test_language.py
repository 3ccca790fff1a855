"""The language's constants: one list of functions and numeric fields, two duration limits."""

from __future__ import annotations

from typing import get_args

import pytest

from dv365.data.schema import EVENT_FIELDS
from dv365.slices import ir
from dv365.slices.compile import compile_spec
from dv365.slices.errors import SpecError
from dv365.slices.language import FLIPPED, FUNCTIONS, NEGATED, NUMERIC_FIELDS, keywords

HEAD = "table media: media_id, rows 100, dim 8\n"


def test_the_ir_unary_ops_are_neg_and_the_functions():
    assert get_args(ir.Unary.model_fields["op"].annotation) == ("neg", *FUNCTIONS)


def test_the_numeric_fields_are_the_events_seconds_fields():
    assert NUMERIC_FIELDS == ("dwell_time", "video_duration")
    assert set(NUMERIC_FIELDS) == {n for n, f in EVENT_FIELDS.items() if f.kind == "seconds"}


def test_flipping_and_negating_a_comparison_twice_gives_it_back():
    assert set(FLIPPED) == set(NEGATED) == {"<", "<=", ">", ">=", "==", "!="}
    assert all(FLIPPED[FLIPPED[op]] == op and NEGATED[NEGATED[op]] == op for op in FLIPPED)


def test_a_duration_literal_may_be_longer_than_a_gap_or_window():
    def message(source: str) -> str:
        with pytest.raises(SpecError) as info:
            compile_spec(source + "\n" + HEAD + "slice a: from implicit pool media_id into media")
        return info.value.diagnostics[0].message

    assert message("gap 73200d") == "gap is longer than 100 years"  # about 200 years
    assert message("gap 400000d") == "duration 400000d is out of range"  # past 1000 years


def test_keywords_are_read_from_the_grammar():
    assert {"slice", "table", "for", "over", "weighted", "include", "not"} <= keywords()
    assert not {"dwell_time", "ln", "like"} & keywords()
