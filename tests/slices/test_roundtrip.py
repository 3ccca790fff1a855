"""Printing an IR and compiling the text gives the same IR back, for any valid IR.

The IRs come from the shared strategies (every construct of the IR), including vocabularies
and slice names that collide with the language (keywords, field and function names, numbers,
spaces, quotes, unicode). Restrictions, because the language cannot say these and the front
end never produces them: table names are plain identifiers, slice names hold no ``{...}``
(a generator placeholder), and filters the checker proves empty are skipped.
"""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dv365.slices.check import contradiction, weight_problem
from dv365.slices.compile import compile_spec
from dv365.slices.printer import print_spec
from tests.strategies import awkward_names, awkward_vocabs, spec_irs

ROUND_TRIP = settings(max_examples=30, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                             HealthCheck.data_too_large])


def _accepted(ir) -> bool:
    return not any(contradiction(s.predicate, ir.vocab) or weight_problem(s)
                   for s in ir.slices)


@ROUND_TRIP
@given(spec_irs(max_slices=8, max_depth=3))
def test_parse_of_print_is_identity(ir):
    assume(_accepted(ir))
    text = print_spec(ir)
    again = compile_spec(text, vocab=ir.vocab)
    assert again.semantic_dict() == ir.semantic_dict()
    assert again.content_hash() == ir.content_hash()
    assert print_spec(again) == text  # and printing is a fixed point


@ROUND_TRIP
@given(st.data())
def test_round_trip_with_names_and_values_that_collide_with_the_language(data):
    vocab = data.draw(awkward_vocabs())
    ir = data.draw(spec_irs(max_slices=5, vocab=vocab, names=awkward_names()))
    assume(_accepted(ir))
    again = compile_spec(print_spec(ir), vocab=vocab)
    assert again.semantic_dict() == ir.semantic_dict()


def test_every_weighted_slice_of_the_strategy_passes_the_weight_check():
    # The kernels' parity tests rely on strategy weights being positive where selected.
    @settings(max_examples=30, deadline=None)
    @given(spec_irs(max_slices=6))
    def check(ir):
        assert [weight_problem(s) for s in ir.slices] == [None] * len(ir.slices)

    check()
