"""The figures: inline SVG that names no URL, is the same for the same input, and draws
every experiment from its generic shape."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from dv365.report import figures
from dv365.report.run_dir import read_run_dir
from tests.report.run_dirs import experiments, point, write_complete, write_json


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return read_run_dir(write_complete(tmp_path_factory.mktemp("fig") / "run"))


def assert_inline_svg(svg: str, key: str) -> None:
    assert svg.startswith("<svg ") and svg.endswith("</svg>")
    assert "http" not in svg and "<?xml" not in svg and "<metadata" not in svg
    ids = re.findall(r'\bid="([^"]+)"', svg)
    assert ids and all(i.startswith(f"{key}-") for i in ids)
    assert all(ref.startswith(f"#{key}-") for ref in re.findall(r'href="([^"]+)"', svg))
    assert all(ref.startswith(f"#{key}-") for ref in re.findall(r"url\(([^)]+)\)", svg))


def test_the_family_figures_are_inline_svg(run):
    for draw, family, key in ((figures.ranking_deltas, "ranking", "ranking-deltas"),
                              (figures.retrieval_hits, "retrieval", "retrieval-hits"),
                              (figures.retrieval_deltas, "retrieval", "retrieval-deltas")):
        assert_inline_svg(draw(run.families[family]), key)
    assert_inline_svg(figures.history_lengths(run.data_summary), "data-history")
    assert_inline_svg(figures.label_rates(run.data_summary), "data-labels")


def test_the_same_input_draws_the_same_svg(run):
    assert figures.ranking_deltas(run.families["ranking"]) == \
        figures.ranking_deltas(run.families["ranking"])
    staleness = next(e for e in run.experiments if e.kind == "staleness")
    assert figures.experiment_figures(staleness, "s") == figures.experiment_figures(staleness,
                                                                                    "s")


def test_a_retrieval_delta_with_too_few_hits_is_marked_not_estimable(run):
    svg = figures.retrieval_deltas(run.families["retrieval"])
    assert "not estimable (4 hits)" in svg  # matplotlib keeps each text as a comment


def test_an_experiment_with_an_axis_draws_a_panel_per_metric(run):
    staleness = next(e for e in run.experiments if e.kind == "staleness")
    panels = figures.experiment_figures(staleness, "experiment-staleness")
    assert len(panels) == 3  # like/ne, average_binary_ne, cosine
    for k, svg in enumerate(panels):
        assert_inline_svg(svg, f"experiment-staleness-{k}")
    assert "days since export" in panels[0] and "frozen" in panels[0] \
        and "refreshed" in panels[0]
    assert "refreshed" not in panels[2]  # the cosine curve is the frozen arm's only


def test_an_experiment_without_an_axis_draws_grouped_bars(run):
    quantization = next(e for e in run.experiments if e.kind == "quantization")
    panels = figures.experiment_figures(quantization, "q")
    assert len(panels) == 1 and "int4" in panels[0] and "vs fp32" in panels[0]


def test_an_unknown_kind_with_any_metric_is_drawn(tmp_path):
    doc = experiments()["gap"] | {"kind": "my_plugin", "name": "mine"}
    doc["series"] = [point("a", None, {"recall": {"estimate": 0.5, "low": 0.4, "high": 0.6}}),
                     point("b", None, {"recall": {"estimate": 0.6, "low": None,
                                                  "high": None}})]
    write_json(tmp_path / "run" / "experiments" / "mine" / "result.json", doc)
    exp = read_run_dir(tmp_path / "run").experiments[0]
    (svg,) = figures.experiment_figures(exp, "mine")
    assert "recall" in svg and "<!-- value -->" in svg


def test_the_word_all_is_drawn_at_the_data_maximum():
    where, log = figures._positions([1000, 5000, 20000, "all"], 62000.0)
    assert log and where["all"] == 62000.0
    where, log = figures._positions([1, 2, 3, "all"], None)
    assert not log and where["all"] == 4.0


def test_hostile_names_are_drawn_literally_and_never_as_markup(tmp_path):
    doc = experiments()["gap"]
    doc["series"] = [point("$\\frac{a}{$", None, {"like/ne": {"estimate": 0.001}},
                           label="<script>alert(1)</script> $x$")]
    doc["baseline"] = "--><script>"
    write_json(tmp_path / "run" / "experiments" / "gap" / "result.json", doc)
    exp = read_run_dir(tmp_path / "run").experiments[0]
    (svg,) = figures.experiment_figures(exp, "gap")
    assert "<script" not in svg and "&lt;script&gt;" in svg


def test_nothing_to_draw_is_none(run):
    assert figures.ranking_deltas(replace(run.families["ranking"], deltas={})) is None
    assert figures.experiment_figures(replace(run.experiments[0], series=[]), "e") == []
    summary = replace(run.data_summary, histogram=None, label_rates={"watch_time": None})
    assert figures.history_lengths(summary) is None and figures.label_rates(summary) is None
