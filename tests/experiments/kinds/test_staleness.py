"""staleness: per held-out day, the refreshed and the frozen serving's deltas and the cosine
of a user's frozen embedding with that day's; the bar is the share of the refreshed gain the
frozen one keeps on the last day."""

from __future__ import annotations

import numpy as np
import pytest

from dv365.experiments.kinds.options import StalenessOptions
from dv365.experiments.kinds.staleness import ARM, Staleness, cosine
from tests.experiments.kinds.outcomes import SETTING, WrittenOutcome, average, vectors


def test_one_arm_trains_on_the_daily_store_and_is_evaluated_both_ways():
    (arm,) = Staleness(StalenessOptions(), name="s").arms(SETTING)
    assert arm.train_serving == "daily" and arm.eval_serving == ("daily", "held_out_start")


def _outcome(refreshed_last: float, frozen_last: float, noise: float) -> WrittenOutcome:
    base = vectors(0)
    deltas, vecs = {}, {(ARM, 0): base}
    for day in (1, 2, 3):
        last = day == 3
        deltas[(ARM, "ranking", 0, day, None)] = average(refreshed_last if last else -0.01)
        deltas[(ARM, "ranking", 1, day, None)] = average(frozen_last if last else -0.01)
        vecs[(ARM, day)] = vectors(day, noise * day, base)
    return WrittenOutcome(deltas_by=deltas, vectors_by=vecs)


@pytest.mark.parametrize("refreshed, frozen, kept, passed", [
    (-0.010, -0.009, 90, True), (-0.010, -0.005, 50, False)])
def test_the_bar_is_the_share_of_the_refreshed_gain_kept_on_the_last_day(refreshed, frozen,
                                                                         kept, passed):
    doc = Staleness(StalenessOptions(), name="staleness").document(
        _outcome(refreshed, frozen, 0.05))
    assert doc["axis"]["values"] == [1.0, 2.0, 3.0]
    assert doc["bars"][0]["passed"] is passed and doc["bars"][0]["value"] == f"{kept}%"
    frozen_points = [s for s in doc["series"] if s["arm"] == "frozen"]
    assert [s["x"] for s in frozen_points] == [1, 2, 3]
    cos = [s["metrics"]["cosine"]["estimate"] for s in frozen_points]
    assert cos == sorted(cos, reverse=True) and cos[-1] > 0.9  # drifts as it ages
    assert doc["bars"][1]["passed"] is True


def test_no_refreshed_gain_leaves_the_share_undefined():
    doc = Staleness(StalenessOptions(), name="staleness").document(
        _outcome(0.002, -0.001, 0.0))
    assert doc["bars"][0]["passed"] is None and "no gain" in doc["reading"]


def test_cosine_is_the_mean_over_users_with_the_10th_and_90th_percentiles():
    a = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    b = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    c = cosine(a, b)  # the zero vector is left out
    assert c["estimate"] == pytest.approx(0.5)
    assert c["low"] == pytest.approx(0.1) and c["high"] == pytest.approx(0.9)
