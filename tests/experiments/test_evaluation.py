"""``dv365 eval`` end to end on a small generated dataset: the production protocol (the
foundation before T, one snapshot at T, downstream models after it), the paired tables, a
run directory that resumes, and one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pydantic import BaseModel, ConfigDict

import dv365

from dv365.cli.app import main
from dv365.durations import DAY_MS
from dv365.errors import ConfigError
from dv365.downstream.adapters.base import Adapter
from dv365.experiments.eval_config import load_eval_config, parse_eval_config
from dv365.experiments.eval_tables import write_tables
from dv365.experiments.evaluation import Evaluation, periods
from dv365.plugins import get_plugins, load_plugins
from tests.downstream.conftest import downstream_data

SHARED_FIXTURES = (downstream_data,)  # the generated data of tests/downstream

REPO = Path(__file__).parents[2]
pytestmark = pytest.mark.skipif("lmdb" not in get_plugins().stores.names(),
                                reason="the lmdb store is not registered in this checkout")


def _config(tmp_path, data, **changes) -> dict:
    raw = {
        "data": str(data), "out": str(tmp_path / "eval"), "seeds": [0, 1],
        "export_days": 4, "eval_days": 2,
        "foundation": {"validation_days": 1, "train": {
            "spec": str(REPO / "slices" / "minimal.slice"), "encoder": {"type": "fsa"},
            "backbone": {"type": "dlrm", "embedding_dim": 8},
            "item_features": ["author_id", "topic_id"], "steps": 4, "eval_every": 4,
            "checkpoint_every": 4}},
        "downstream": {"recent": 12, "hstu": {"dim": 8, "layers": 1}, "batch_size": 128,
                       "item_tables": {"media_id": 4096, "author_id": 1024, "topic_id": 256},
                       "threads": 1},
        "ranking": {"adapters": [{"type": "linear"}]},
        "retrieval": {"adapters": [{"type": "gatenet", "hidden": [16]}],
                      "tasks": ["like", "complete"]},
        "bootstrap_replicates": 100,
    }
    raw.update(changes)
    return raw


def _write(tmp_path, raw) -> str:
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DV365_CACHE_DIR", str(tmp_path / "cache"))


def test_eval_runs_the_protocol_and_prints_paired_tables(downstream_data, tmp_path, cache,
                                                         capsys):
    data = downstream_data[0]
    path = _write(tmp_path, _config(tmp_path, data))
    assert main(["eval", path]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "### Ranking" in out and "### Retrieval" in out and "average NE" in out
    run = tmp_path / "eval"
    doc = json.loads((run / "results.json").read_text())
    # The snapshot was exported at T and every downstream example is after it.
    snapshot = json.loads((run / "snapshot.json").read_text())
    p = json.loads((run / "periods.json").read_text())
    assert snapshot["at_ms"] == p["export_ms"] and snapshot["codec"] == "int4"
    assert p["export_ms"] < p["held_out_ms"]
    # The foundation trained only on examples before T.
    foundation = json.loads((run / "foundation" / "config.json").read_text())
    assert foundation["data"]["until"].startswith(
        np.datetime_as_string(np.datetime64(p["export_ms"], "ms"), "D"))
    ranking = doc["ranking"]
    assert ranking["seeds"] == [0, 1] and set(ranking["variants"]) == {"control", "linear"}
    like = ranking["deltas"]["linear"]["like/ne"]
    assert like["low"] <= like["estimate"] <= like["high"]
    assert "watch_time/mse" in ranking["deltas"]["linear"]
    retrieval = doc["retrieval"]
    assert set(retrieval["variants"]) == {"control", "gatenet"}
    assert set(retrieval["deltas"]["gatenet"]) == {"like/hr@1", "like/hr@10",
                                                    "complete/hr@1", "complete/hr@10"}
    result = json.loads((run / "runs" / "ranking" / "linear" / "seed-1" / "result.json")
                        .read_text())
    assert result["snapshots"] == {"at_export": snapshot["id"]} and result["examples_per_s"] > 0
    assert (run / "results.md").read_text().startswith("### Ranking")

    # Again: nothing is retrained or re-exported, and the tables are the same.
    stamps = {f: f.stat().st_mtime_ns for f in run.glob("runs/*/*/*/result.json")}
    assert main(["eval", path]) == 0, capsys.readouterr().err
    assert "exported" not in capsys.readouterr().err
    assert {f: f.stat().st_mtime_ns for f in run.glob("runs/*/*/*/result.json")} == stamps
    assert json.loads((run / "snapshot.json").read_text())["id"] == snapshot["id"]

    # A changed config is refused in one line; a new seed only adds its runs.
    changed = _write(tmp_path, _config(tmp_path, data, eval_days=3))
    assert main(["eval", changed]) == 2
    err = capsys.readouterr().err
    assert "different config (changed: eval_days)" in err and "Traceback" not in err
    more = _write(tmp_path, _config(tmp_path, data, seeds=[0, 1, 2]))
    assert main(["eval", more]) == 0, capsys.readouterr().err
    assert json.loads((run / "results.json").read_text())["ranking"]["seeds"] == [0, 1, 2]


def test_the_periods_must_leave_examples_on_every_side(downstream_data, tmp_path):
    data = downstream_data[0]
    config = load_eval_config(_write(tmp_path, _config(tmp_path, data, export_days=2)))
    ts = np.array([10 * DAY_MS + 5, 15 * DAY_MS + 5])
    with pytest.raises(ConfigError) as err:
        periods(config, ts)
    assert "not before the held-out days" in str(err.value)
    assert err.value.where.endswith("eval.yaml: export_days")
    config = load_eval_config(_write(tmp_path, _config(tmp_path, data, export_days=30)))
    with pytest.raises(ConfigError, match="leaves no example before it"):
        periods(config, ts)


def test_a_foundation_checkpoint_that_saw_the_downstream_period_is_refused(
        downstream_data, tmp_path, cache, capsys):
    from dv365.model.checkpoint import BEST, checkpoint_dir
    from dv365.model.config import parse_config
    from dv365.model.train import train

    data = downstream_data[0]
    raw = _config(tmp_path, data)
    train_raw = {**raw["foundation"]["train"], "out": str(tmp_path / "f"),
                 "data": {"path": str(data), "validation_days": 1}}
    train(parse_config(train_raw))
    capsys.readouterr()
    raw["foundation"] = {"checkpoint": str(checkpoint_dir(tmp_path / "f") / BEST)}
    assert main(["eval", _write(tmp_path, raw)]) == 2
    err = capsys.readouterr().err
    assert "foundation.checkpoint" in err and "after the export time" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("change, where", [
    ({"seeds": [1, 1]}, "eval.yaml: seeds: error: a seed repeats"),
    ({"export_at": "2025-12-01", "export_days": 3}, "eval.yaml: (top level)"),
    ({"ranking": {"adapters": [{"type": "linaer"}]}}, "eval.yaml: ranking.adapters.0.type"),
    ({"ranking": {"adapters": [{"type": "linear", "outputz": 2}]}},
     "eval.yaml: ranking.adapters.0.outputz"),
    ({"downstream": {"recent": 5000}}, "eval.yaml: downstream.recent"),
])
def test_a_bad_config_is_one_line_at_its_key(tmp_path, change, where, capsys):
    raw = _config(tmp_path, tmp_path / "data", **change)
    assert main(["eval", _write(tmp_path, raw)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{tmp_path}/{where}") and len(err.splitlines()) == 1, err


def test_the_splits_are_the_periods_of_the_protocol(downstream_data, tmp_path, cache):
    data = downstream_data[0]
    evaluation = Evaluation(load_eval_config(_write(tmp_path, _config(tmp_path, data))))
    p = evaluation.periods
    assert (evaluation.train_set.request_ts >= p.export_ms).all()
    assert (evaluation.train_set.request_ts < p.held_out_ms).all()
    assert (evaluation.eval_set.request_ts >= p.held_out_ms).all()
    assert (np.diff(evaluation.eval_set.request_ts) >= 0).all()


class _PooledOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scale: float = 1.0


class _Pooled(Adapter):
    """A third-party adapter: the mean DV365 vector, projected, as one extra feature."""

    def __init__(self, options, *, num_vectors, dim, out_dim):
        super().__init__(num_vectors=num_vectors, dim=dim, out_dim=out_dim)
        self.scale = options.scale
        self.linear = torch.nn.Linear(dim, out_dim)

    def forward(self, vectors, found):
        return self.scale * self.linear(self.fill_missing(vectors, found).mean(1, keepdim=True))


class _Plugin:
    @dv365.hookimpl
    def dv365_register_adapters(self, register):
        register("pooled", _Pooled, options=_PooledOptions, doc="mean, projected (test)")


def test_a_third_party_adapter_trains_by_name_from_the_eval_config(downstream_data, tmp_path,
                                                                   cache):
    plugins = load_plugins(extra=(_Plugin(),), autoload=False)
    raw = _config(tmp_path, downstream_data[0], seeds=[0],
                  ranking={"adapters": [{"type": "pooled", "scale": 0.5}]},
                  retrieval={"adapters": [{"type": "pooled"}], "tasks": ["complete"]})
    config = parse_eval_config(raw, plugins=plugins)
    out = Evaluation(config, plugins=plugins).run()
    doc = write_tables(out, 100)
    assert set(doc["ranking"]["variants"]) == {"control", "pooled"}
    assert set(doc["retrieval"]["variants"]) == {"control", "pooled"}
    result = json.loads((out / "runs" / "ranking" / "pooled" / "seed-0" / "result.json")
                        .read_text())
    assert result["adapter"] == {"type": "pooled", "scale": 0.5} and result["steps"] > 0
    with pytest.raises(ConfigError) as err:
        parse_eval_config({**raw, "ranking": {"adapters": [{"type": "pooled", "scal": 1}]}},
                          plugins=plugins)
    assert err.value.where == "ranking.adapters.0.scal"


@pytest.mark.parametrize("change, where", [
    ({"export_days": 10**9}, "export_days"),
    ({"eval_days": 2**70}, "eval_days"),
    ({"retrieval": {"ks": [0]}}, "retrieval.ks.0"),
    ({"retrieval": {"hidden": [2**40]}}, "retrieval.hidden.0"),
])
def test_out_of_range_counts_are_refused_at_their_key(tmp_path, change, where):
    with pytest.raises(ConfigError) as err:
        parse_eval_config(_config(tmp_path, tmp_path / "data", **change))
    assert err.value.where == where
