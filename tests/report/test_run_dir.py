"""Reading a run directory: every file optional, what is absent or damaged named, never an
exception (except for a folder that is no run directory at all)."""

from __future__ import annotations

import json

import pytest

from dv365.errors import UsageError
from dv365.report.run_dir import Interval, Missing, read_run_dir
from tests.report.run_dirs import experiments, write_complete, write_json


def test_a_complete_run_directory_is_read_whole(tmp_path):
    run = read_run_dir(write_complete(tmp_path / "run"))
    assert run.missing == []
    assert run.provenance.command == "dv365 eval configs/eval-demo.yaml"
    assert run.provenance.spec_hash == "3f2a9c01" and run.provenance.checkpoint_step == 150
    assert run.provenance.snapshots["refreshed"] == "20261201-174055-cd34"
    assert run.data_summary.histogram.log and len(run.data_summary.histogram.counts) == 12
    assert run.data_summary.label_rates["watch_time"] is None
    assert run.periods["eval_users"] == 180 and run.snapshot["codec"] == "int4"
    ranking = run.families["ranking"]
    assert [v.name for v in ranking.variants] == ["control", "linear", "gatenet"]
    assert ranking.average_binary_ne["gatenet"] == pytest.approx(-0.0045 * 1.6)
    assert "average_binary_ne" not in ranking.deltas["gatenet"]
    retrieval = run.families["retrieval"]
    assert retrieval.deltas["linear"]["follow/hr@1"].control_hits == 4.0
    assert [e.name for e in run.experiments] == list(experiments())
    staleness = next(e for e in run.experiments if e.kind == "staleness")
    assert staleness.axis.values == [1, 2, 3, 4, 5, 6, 7]
    assert staleness.arms == ["frozen", "refreshed"]
    assert staleness.metric_names == ["like/ne", "average_binary_ne", "cosine"]
    quantization = next(e for e in run.experiments if e.kind == "quantization")
    assert quantization.axis is None and quantization.columns == ["bytes per user",
                                                                  "reconstruction error"]
    assert quantization.bars[1].passed is False


def test_without_results_json_the_finished_experiments_are_still_read(tmp_path):
    root = write_complete(tmp_path / "run")
    (root / "results.json").unlink()
    run = read_run_dir(root)
    assert [str(m) for m in run.missing] == [
        "results.json: not written yet (the evaluation did not finish)"]
    assert run.families == {}
    assert sorted(e.name for e in run.experiments) == sorted(experiments())
    assert run.periods["eval_users"] == 180  # its own file


def test_a_corrupt_experiment_file_is_named_with_its_line(tmp_path):
    root = write_complete(tmp_path / "run")
    write_json(root / "results.json", {"ranking": {"seeds": [], "variants": {}, "deltas": {}},
                                       "retrieval": {"seeds": [], "variants": {},
                                                     "deltas": {}}})
    (root / "experiments" / "staleness" / "result.json").write_text('{\n  "name": "s",\n  x\n')
    run = read_run_dir(root)
    assert [str(m) for m in run.missing] == [
        "experiments/staleness/result.json: not valid JSON at line 3 "
        "(Expecting property name enclosed in double quotes)"]
    assert "staleness" not in [e.name for e in run.experiments]
    assert run.families["ranking"].empty


def test_a_corrupt_experiment_file_falls_back_to_its_copy_in_results_json(tmp_path):
    root = write_complete(tmp_path / "run")
    (root / "experiments" / "gap" / "result.json").write_text("")
    run = read_run_dir(root)
    assert run.missing == [Missing("experiments/gap/result.json",
                                   "empty (its writer was stopped); the copy in results.json "
                                   "is shown")]
    assert "gap" in [e.name for e in run.experiments]


def test_an_unfinished_experiment_names_its_missing_arms(tmp_path):
    root = write_complete(tmp_path / "run")
    doc = experiments()["gap"] | {"missing": ["gap 24h seed 2"]}
    write_json(root / "experiments" / "gap" / "result.json", doc)
    run = read_run_dir(root)
    assert [str(m) for m in run.missing] == ["experiment gap: gap 24h seed 2 not finished"]


def test_an_experiment_folder_without_its_result_is_not_written_yet(tmp_path):
    root = tmp_path / "run"
    write_json(root / "provenance.json", {"command": "dv365 eval x.yaml"})
    (root / "experiments" / "staleness").mkdir(parents=True)
    run = read_run_dir(root)
    assert "experiments/staleness/result.json: not written yet (the experiment did not " \
           "finish)" in [str(m) for m in run.missing]
    assert run.experiments == []


def test_a_document_of_the_wrong_shape_is_named_where_it_breaks(tmp_path):
    root = write_complete(tmp_path / "run")
    results = json.loads((root / "results.json").read_text())
    results["ranking"]["variants"]["control"] = [1, 2]
    write_json(root / "results.json", results)
    write_json(root / "data_summary.json", {"events_per_user": {"histogram": {
        "edges": [1, 2], "counts": [1, 2, 3]}}})
    run = read_run_dir(root)
    assert [str(m) for m in run.missing] == [
        "data_summary.json: not in the expected shape (events_per_user.histogram: expected "
        "one more finite edge than counts)",
        "results.json: ranking: not in the expected shape (ranking.variants.control: expected "
        "an object)"]
    assert "retrieval" in run.families and "ranking" not in run.families


def test_non_finite_numbers_written_as_null_read_as_none(tmp_path):
    root = tmp_path / "run"
    doc = experiments()["gap"]
    doc["series"][0]["metrics"]["like/ne"] = {"estimate": None, "low": None, "high": None}
    write_json(root / "experiments" / "gap" / "result.json", doc)
    run = read_run_dir(root)
    assert run.experiments[0].series[0].metrics["like/ne"] == Interval(None, None, None)
    assert "eval.json: not written (the evaluation did not start)" in map(str, run.missing)


@pytest.mark.parametrize("make", ["absent", "file", "empty"])
def test_a_folder_that_is_no_run_directory_is_a_one_line_usage_error(tmp_path, make):
    path = tmp_path / "run"
    if make == "file":
        path.write_text("x")
    elif make == "empty":
        path.mkdir()
        (path / "notes.txt").write_text("x")
    with pytest.raises(UsageError) as caught:
        read_run_dir(path)
    text = caught.value.render()
    assert len(text.splitlines()) == 1 and str(path) in text
    assert {"absent": "does not exist", "file": "is not a folder",
            "empty": "holds no file of a dv365 eval run"}[make] in text


def _leaves(doc, path=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(doc, list):
        for k, v in enumerate(doc):
            yield from _leaves(v, (*path, k))
    yield path


def _replaced(doc, path, value):
    if not path:
        return value
    doc = json.loads(json.dumps(doc))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


@pytest.mark.parametrize("value", [None, "x", [1], {"a": 1}, -1.5, True])
def test_any_value_of_the_wrong_type_anywhere_is_a_missing_part_never_an_exception(
        tmp_path, value):
    from tests.report.run_dirs import ranking, retrieval

    docs = {"experiments/staleness/result.json": experiments()["staleness"],
            "experiments/quantization/result.json": experiments()["quantization"],
            "results.json": {"ranking": ranking(), "retrieval": retrieval()}}
    runs = 0
    for name, doc in docs.items():
        for path in _leaves(doc):
            runs += 1
            root = tmp_path / f"run-{runs}"
            write_json(root / name, _replaced(doc, path, value))
            run = read_run_dir(root)  # never raises
            assert all(m.part and m.reason for m in run.missing)
