"""quantization: bytes per user, reconstruction error against the reference codec, and the
bar on the first codec's paired NE cost against it."""

from __future__ import annotations

import pytest

from dv365.experiments.kinds.options import QuantizationOptions
from dv365.experiments.kinds.quantization import Quantization
from tests.experiments.kinds.outcomes import SETTING, WrittenOutcome, average, vectors


def test_the_arms_are_one_snapshot_per_codec_and_the_reference():
    arms = Quantization(QuantizationOptions(codecs=("int4",)), name="q").arms(SETTING)
    assert [(a.name, a.codec, a.foundation) for a in arms] == [("int4", "int4", {}),
                                                               ("fp32", "fp32", {})]


@pytest.mark.parametrize("cost, passed", [(0.0003, True), (0.0008, False), (-0.001, True)])
def test_the_bar_is_the_first_codecs_paired_cost_against_the_reference(cost, passed):
    exact = vectors(1)
    outcome = WrittenOutcome(
        deltas_by={("int4", "ranking", 0, None, None): average(-0.004),
                   ("fp32", "ranking", 0, None, None): average(-0.0045),
                   ("fp16", "ranking", 0, None, None): average(-0.0045),
                   ("int4", "ranking", 0, None, "fp32"): average(cost)},
        vectors_by={("fp32", 0): exact, ("int4", 0): exact * 1.01, ("fp16", 0): exact},
        snapshots={"int4": {"bytes": 2000, "users": 10}, "fp32": {"bytes": 16000,
                                                               "users": 10}})
    doc = Quantization(QuantizationOptions(), name="quantization").document(outcome)
    assert doc["bars"][0]["passed"] is passed
    rows = {r["arm"]: r for r in doc["table"]}
    assert rows["int4"]["bytes per user"] == 200 and rows["fp32"]["bytes per user"] == 1600
    assert rows["int4"]["reconstruction error"] == pytest.approx(0.01)
    assert rows["fp16"]["reconstruction error"] == 0.0 and rows["fp16"]["bytes per user"] is None
    assert [s["arm"] for s in doc["series"]] == ["int4", "fp16", "fp32"]


def test_without_the_runs_the_bar_is_not_decided():
    doc = Quantization(QuantizationOptions(), name="quantization").document(
        WrittenOutcome(missing=["int4 (ranking) seed 0"]))
    assert doc["bars"][0]["passed"] is None and doc["series"] == []
    assert doc["missing"] == ["int4 (ranking) seed 0"]
