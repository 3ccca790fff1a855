"""The experiment suite end to end on a small generated dataset: every built-in kind runs
through ``dv365 eval``, arms equal to a main model share its runs, each experiment writes its
document, a rerun resumes, a removed run is named missing, and ``dv365 report`` draws every
experiment."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from dv365.cli.app import main
from dv365.experiments.eval_config import load_eval_config
from dv365.experiments.evaluation import Evaluation
from dv365.experiments.experiment_tables import write_experiments
from tests.downstream.conftest import downstream_data
from tests.experiments.test_evaluation import _config, _write

SHARED_FIXTURES = (downstream_data,)

EXPERIMENTS = [
    {"type": "encoder_ablation", "encoders": [{"type": "fsa"}, {"type": "lce"}]},
    {"type": "backbone", "retrieval_adapter": {"type": "gatenet", "hidden": [16]}},
    {"type": "quantization", "codecs": ["int4", "fp32"]},
    {"type": "staleness"},
    {"type": "history_length", "lengths": [5, None]},
    {"type": "gap", "hours": [0, 24]},
]


@pytest.fixture(scope="module")
def suite(downstream_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("suite")
    raw = _config(tmp, downstream_data[0], experiments=EXPERIMENTS)
    raw["foundation"]["train"]["gap_hours"] = 24
    path = _write(tmp, raw)
    mp = pytest.MonkeyPatch()
    mp.setenv("DV365_CACHE_DIR", str(tmp / "cache"))
    assert main(["eval", path]) == 0
    yield tmp / "eval", path, mp
    mp.undo()


def test_every_experiment_writes_its_document_with_every_arm(suite):
    run, _, _ = suite
    doc = json.loads((run / "results.json").read_text())
    assert list(doc["experiments"]) == [e["type"] for e in EXPERIMENTS]
    for name, experiment in doc["experiments"].items():
        assert experiment["seeds"] == [0, 1] and experiment["missing"] == [], name
        assert experiment["series"], name
        saved = json.loads((run / "experiments" / name / "result.json").read_text())
        assert saved == experiment
        assert (run / "experiments" / name / "result.md").read_text().startswith("### ")
    ablation = doc["experiments"]["encoder_ablation"]
    assert {s["arm"] for s in ablation["series"]} == {"fsa", "lce"}
    assert all(r["encoder parameters"] for r in ablation["table"])
    backbone = doc["experiments"]["backbone"]
    assert {(s["arm"], s["family"]) for s in backbone["series"]} == {
        ("dlrm", "ranking"), ("dlrm", "retrieval"), ("siamese", "ranking"),
        ("siamese", "retrieval")}
    quantization = doc["experiments"]["quantization"]
    rows = {r["arm"]: r for r in quantization["table"]}
    assert rows["int4"]["bytes per user"] < rows["fp32"]["bytes per user"] / 4
    assert 0 < rows["int4"]["reconstruction error"] < 0.2
    assert quantization["bars"][0]["passed"] in (True, False)
    staleness = doc["experiments"]["staleness"]
    assert staleness["axis"]["values"] == [1.0, 2.0]
    frozen = [s for s in staleness["series"] if s["arm"] == "frozen"]
    assert [s["x"] for s in frozen] == [1, 2]
    assert 0.5 < frozen[0]["metrics"]["cosine"]["estimate"] <= 1.0
    history = doc["experiments"]["history_length"]
    assert [s["arm"] for s in history["series"]] == ["5", "all"]
    assert history["series"][1]["x"] > 5
    # the main tables hold the main comparison's models only
    assert set(doc["ranking"]["variants"]) == {"control", "linear"}


def test_arms_share_runs_and_foundations_by_content(suite):
    run, _, _ = suite
    ranking = sorted(p.name for p in (run / "runs" / "ranking").iterdir())
    # fsa, int4, all, gap 24h and dlrm are the main linear model; lce, siamese, fp32, the
    # daily store, the last 5 events and gap 0h are their own
    assert ranking.count("linear") == 1 and len(ranking) == 2 + 6
    assert sorted(p.name.split("-")[0] for p in (run / "foundations").iterdir()) == [
        "backbone", "encoder_ablation", "gap"]
    daily = sorted((run / "snapshots").glob("foundation-int4-all-*.json"))
    # every day after T (T's is snapshot.json) through the last example's, refreshed
    assert len(daily) >= 4 - 1
    assert all(json.loads(p.read_text())["recomputed"] is not None for p in daily)


def test_a_rerun_resumes_and_a_missing_run_is_named(suite, capsys):
    run, path, _ = suite
    result = next((run / "runs" / "ranking").glob("quantization-fp32-*")) / "seed-1"
    stamp = (run / "runs" / "ranking" / "linear" / "seed-0" / "result.json").stat().st_mtime
    shutil.rmtree(result)
    assert main(["eval", path]) == 0
    assert (run / "runs" / "ranking" / "linear" / "seed-0" / "result.json").stat().st_mtime \
        == stamp
    assert (result / "result.json").exists()  # the removed run was trained again
    shutil.rmtree(result)
    evaluation = Evaluation(load_eval_config(path))
    docs = write_experiments(evaluation, dict(np.load(run / "held_out.npz")), 100)
    assert docs["quantization"]["missing"] == ["fp32 (ranking) seed 1"]
    assert docs["quantization"]["seeds"] == [0]
    assert main(["report", str(run), "-o", str(run / "partial.html")]) == 0
    html = (run / "partial.html").read_text()
    assert "fp32 (ranking) seed 1" in html


def test_the_report_draws_every_experiment(suite, capsys):
    run, _, _ = suite
    assert main(["report", str(run), "-o", str(run / "report.html")]) == 0
    html = (run / "report.html").read_text()
    for name in (e["type"] for e in EXPERIMENTS):
        start = html.index(f'id="experiment-{name.replace("_", "-")}"')
        assert "<svg" in html[start:html.index("</section>", start)], name
    assert "http://" not in html and "https://" not in html
