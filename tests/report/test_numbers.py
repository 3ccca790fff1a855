"""How the report spells metrics: direction, names, intervals in percent, table cells."""

from __future__ import annotations

import pytest

from dv365.report.numbers import (better, interval_text, is_relative, mean_sd, metric_label,
                                  significant, value_text)
from dv365.report.run_dir import Interval, Spread


@pytest.mark.parametrize("metric, direction", [
    ("like/ne", "lower"), ("watch_time/mse", "lower"), ("average_binary_ne", "lower"),
    ("like/hr@10", "higher"), ("cosine", None), ("like/nes", None)])
def test_the_direction_of_a_metric(metric, direction):
    assert better(metric) == direction
    assert is_relative(metric) == (direction is not None)


def test_metric_labels():
    assert [metric_label(m) for m in ("like/ne", "watch_time/mse", "follow/hr@10",
                                      "average_binary_ne", "cosine")] == [
        "like NE", "watch_time MSE", "follow HR@10", "average NE", "cosine"]


def test_a_relative_delta_reads_in_percent_and_another_metric_as_it_is():
    assert interval_text(Interval(-0.003, -0.0045, -0.0015), "like/ne") == \
        "-0.30% [-0.45, -0.15]"
    assert interval_text(Interval(-0.003), "average_binary_ne") == "-0.30%"
    assert interval_text(Interval(0.931, 0.92, 0.94), "cosine") == "0.931 [0.92, 0.94]"
    assert interval_text(Interval(None), "like/ne") == "-"


def test_significant_means_the_whole_interval_on_the_better_side():
    assert significant(Interval(-0.003, -0.004, -0.001), "lower")
    assert not significant(Interval(-0.003, -0.004, 0.001), "lower")
    assert significant(Interval(0.03, 0.01, 0.05), "higher")
    assert not significant(Interval(0.03, None, None), "higher")
    assert not significant(Interval(0.5, 0.4, 0.6), None)


def test_table_cells():
    assert mean_sd(Spread(0.98123, 0.00104)) == "0.9812 ± 0.0010"
    assert mean_sd(Spread(0.98123, None)) == "0.9812"
    assert [value_text(v) for v in (136, 1234567, 0.0123456, 62000.0, None, True, "int4",
                                    [1, 2])] == [
        "136", "1,234,567", "0.01235", "62,000", "-", "yes", "int4", "1, 2"]
