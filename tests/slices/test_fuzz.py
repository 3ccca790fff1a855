"""Fuzzing the front end: whatever the bytes, only a SpecError (or a valid IR) comes out.

Random bytes and text, binary garbage, huge numbers, deep nesting, unicode, and valid specs
mutated by deleting, duplicating, swapping and inserting pieces. Every input must finish fast.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dv365.slices.compile import compile_spec
from dv365.slices.errors import SpecError
from dv365.slices.ir import SpecIR

REPO = Path(__file__).resolve().parents[2]
SPECS = [(REPO / "slices" / n).read_text() for n in ("minimal.slice", "reels.slice")]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
PIECES = ["(", ")", "[", "]", "{", "}", ",", ":", "..", "=", "==", "<", "not", "and", "or",
          "in", "slice", "for", "table", "over", "all", "weighted", "by", '"', "#", "\n", "-",
          "^", "1e308", "9" * 40, "0", "0s", "-3d", "{window}", "{x}", "é", "\x00", "\ufeff",
          "dwell_time", "action", "like", "media_id", "ln(", "include \"x.slice\""]


def outcome(source) -> str:
    start = time.perf_counter()
    try:
        result = compile_spec(source, path_for_messages="<fuzz>")
        assert isinstance(result, SpecIR)
        kind = "ok"
    except SpecError as exc:
        text = exc.render()  # rendering must not fail either
        assert text and exc.exit_code == 2
        kind = "error"
    assert time.perf_counter() - start < 5.0
    return kind


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(data):
    outcome(data)


@FUZZ
@given(st.text(max_size=300))
def test_random_text(text):
    outcome(text)


@FUZZ
@given(st.lists(st.sampled_from(PIECES), max_size=60).map(" ".join))
def test_random_token_soup(text):
    outcome(text)


@st.composite
def mutated_specs(draw):
    text = draw(st.sampled_from(SPECS))
    for _ in range(draw(st.integers(1, 4))):
        n = len(text)
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + 40)))
        action = draw(st.sampled_from(["delete", "duplicate", "insert", "swap"]))
        if action == "delete":
            text = text[:i] + text[j:]
        elif action == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        elif action == "insert":
            text = text[:i] + draw(st.sampled_from(PIECES)) + text[i:]
        else:
            k = draw(st.integers(0, n))
            text = text[:i] + text[k:k + (j - i)] + text[j:]
    return text


@FUZZ
@given(mutated_specs())
def test_mutated_valid_specs(text):
    outcome(text)


@pytest.mark.parametrize("source", [
    "", " ", "\n\n\n", "#", "\x00" * 100, b"\xff\xfe\x00\x01", bytes(range(256)),
    "x = " + "(" * 10_000 + "1" + ")" * 10_000,
    "x = " + "(" * 10_000,
    "f = " + "not " * 10_000 + "dwell_time > 1",
    "f = " + " and ".join(["dwell_time > 1"] * 5_000),
    "x = " + "1" * 5_000,
    "x = 1e308 * 1e308",
    "table t: media_id, rows " + "9" * 400 + ", dim 4",
    "slice a: from implicit pool media_id into t mean over " + "9" * 400 + "d",
    "gap 10000000000000d",
    "x = 2 ^ 2 ^ 2 ^ 2 ^ 2 ^ 2",
    "slice 🎬: from implicit pool media_id into t mean",
    'slice "\u202e": from implicit pool media_id into t mean',
    "for a in [" + ", ".join(str(i) for i in range(400)) + "], b in [" +
    ", ".join(str(i) for i in range(400)) + "] { slice s_{a}_{b}: from implicit "
    "pool media_id into t mean }",
    "for " + ", ".join(f"v{i} in [a, b]" for i in range(30)) + " { }",
    "for a in [" + ", ".join(["1"] * 100) + "] { for b in [" + ", ".join(["1"] * 100) +
    "] { for c in [" + ", ".join(["1"] * 100) + "] { slice s: from implicit "
    "pool media_id into t mean } } }",
    "{" * 5_000,
    "slice a: " * 3_000,
])
def test_pathological_inputs(source):
    outcome(source)
