"""history_length: one snapshot per limit, limits past the longest history left out, the
whole history drawn at the longest history on a log axis."""

from __future__ import annotations

from dv365.experiments.kinds.history_length import HistoryLength
from dv365.experiments.kinds.options import HistoryLengthOptions
from tests.experiments.kinds.outcomes import SETTING, WrittenOutcome, average


def test_limits_past_the_longest_history_are_left_out_and_all_is_always_run():
    kind = HistoryLength(HistoryLengthOptions(lengths=(1000, 5000)), name="h")
    arms = kind.arms(SETTING)  # max_history 4000
    assert [(a.name, a.history) for a in arms] == [("1000", 1000), ("all", None)]
    doc = kind.document(WrittenOutcome(deltas_by={
        ("1000", "ranking", 0, None, None): average(-0.001),
        ("all", "ranking", 0, None, None): average(-0.003)}))
    assert doc["axis"]["values"] == [1000.0, 4000.0] and doc["axis"]["log"] is True
    assert [(s["arm"], s["x"]) for s in doc["series"]] == [("1000", 1000.0), ("all", 4000.0)]
    assert "5000 are not run" in doc["reading"]
