"""Training on several ranks under torchrec's DMP (CPU, gloo): the same losses as one device on
the same batches, checkpoints that cross world sizes, the CLI end to end.

Each 2-rank run spawns two processes (one thread each); the tiny data and few steps keep a
test well under a minute on a loaded 2-core machine.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.distributed as dist

from dv365.cli import app as cli_app
from dv365.errors import ConfigError
from dv365.model.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from dv365.model.config import load_config
from dv365.model.foundation import load_foundation_model
from dv365.model.ranks import Ranks, free_port
from dv365.model.train import Trainer, train
from tests.model.conftest import write_config

TWO = {"devices": ["cpu", "cpu"]}
# A fixed plan with one table of each type the CPU shards (column-wise needs element-wise
# Adagrad to be the single-device optimizer).
MIXED = {"sharding": {"plan": {"media": "table_wise", "author": "column_wise",
                               "topic": "data_parallel"}},
         "optimizer": {"sparse": {"type": "adagrad"}}}


def _config(folder, tiny_data, tiny_spec_file, **overrides):
    options = dict(steps=4, eval_every=1, checkpoint_every=2, threads=1)
    options.update(overrides)
    return write_config(folder, tiny_data, tiny_spec_file, **options)


def _losses(folder):
    lines = (folder / "run" / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["train/loss"], r["eval/loss"]) for r in map(json.loads, lines)]


def _assert_same_losses(a, b):
    assert [s for s, _, _ in a] == [s for s, _, _ in b]
    for (_, train_a, eval_a), (_, train_b, eval_b) in zip(a, b):
        assert train_a == pytest.approx(train_b, rel=1e-5, abs=1e-6)
        assert eval_a == pytest.approx(eval_b, rel=1e-5, abs=1e-6)


def test_two_ranks_train_like_one_table_column_and_data_parallel(tmp_path, tiny_data,
                                                                tiny_spec_file):
    one = _config(tmp_path / "one", tiny_data, tiny_spec_file, **MIXED)
    two = _config(tmp_path / "two", tiny_data, tiny_spec_file, **MIXED, **TWO)
    train(load_config(one))
    result = train(load_config(two))
    assert result.step == 4
    _assert_same_losses(_losses(tmp_path / "one"), _losses(tmp_path / "two"))
    # The gathered checkpoint holds the single-device weights and table optimizer state.
    a = load_checkpoint(latest_checkpoint(tmp_path / "one" / "run"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "two" / "run"))
    assert a.model.keys() == b.model.keys()
    for key in a.model:
        torch.testing.assert_close(a.model[key], b.model[key], rtol=1e-4, atol=1e-5)
    sums = [{i: s["sum"] for i, s in c.optimizers["sparse"]["state"].items()} for c in (a, b)]
    assert sums[0].keys() == sums[1].keys()
    for i in sums[0]:
        torch.testing.assert_close(sums[0][i], sums[1][i], rtol=1e-4, atol=1e-7)


def _resume_on_other_world(tmp_path, tiny_data, tiny_spec_file, first, then):
    """Train 4 steps on ``first``'s ranks (checkpoints at 2 and 4), drop the step-4
    checkpoint, resume steps 3-4 on ``then``'s: the records of both runs' steps 3-4."""
    config = _config(tmp_path / "a", tiny_data, tiny_spec_file, **first)
    train(load_config(config))
    before = _losses(tmp_path / "a")
    latest_checkpoint(tmp_path / "a" / "run").unlink()
    assert load_checkpoint(latest_checkpoint(tmp_path / "a" / "run")).step == 2
    resumed = _config(tmp_path / "a", tiny_data, tiny_spec_file, **then)
    result = train(load_config(resumed))
    assert result.resumed_from == 2 and result.step == 4
    return before, _losses(tmp_path / "a")


def test_a_checkpoint_of_two_ranks_resumes_on_one(tmp_path, tiny_data, tiny_spec_file):
    before, after = _resume_on_other_world(tmp_path, tiny_data, tiny_spec_file, TWO, {})
    _assert_same_losses(before, after)


def test_a_checkpoint_of_one_rank_resumes_on_two(tmp_path, tiny_data, tiny_spec_file):
    before, after = _resume_on_other_world(tmp_path, tiny_data, tiny_spec_file, MIXED,
                                           {**MIXED, **TWO})
    _assert_same_losses(before, after)


def test_dv365_train_on_two_cpus_writes_a_rebuildable_checkpoint(tmp_path, tiny_data,
                                                                 tiny_spec_file, capsys):
    config = _config(tmp_path, tiny_data, tiny_spec_file, steps=2, eval_every=2, **TWO)
    assert cli_app.main(["train", str(config)]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    run = tmp_path / "run"
    assert [p.name for p in list_checkpoints(run)] == ["step-000000002.pt"]
    trained = load_foundation_model(latest_checkpoint(run))
    assert trained.step == 2 and trained.config.devices == ("cpu", "cpu")
    weights = trained.model.state_dict()
    saved = load_checkpoint(latest_checkpoint(run)).model
    assert all(torch.equal(weights[k], saved[k]) for k in saved)
    shutil.rmtree(run)


@pytest.fixture
def one_rank_group():
    """This process as the only rank of a gloo group."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0,
                            world_size=1)
    yield Ranks(0, 1, torch.device("cpu"))
    dist.destroy_process_group()


def test_a_plan_naming_a_table_the_spec_lacks_is_refused_at_its_key(tmp_path, tiny_data,
                                                                   tiny_spec_file,
                                                                   one_rank_group):
    config = _config(tmp_path, tiny_data, tiny_spec_file,
                     sharding={"plan": {"medai": "table_wise"}})
    with pytest.raises(ConfigError) as info:
        Trainer(load_config(config), ranks=one_rank_group)
    assert info.value.where.endswith("sharding.plan.medai")
    assert "its tables: media, author, topic" in info.value.render()


@pytest.mark.parametrize("encoder", [{"type": "fsa"}, None], ids=["fsa", "no-user-tower"])
def test_one_rank_under_dmp_steps_like_the_plain_model(tmp_path, tiny_data, tiny_spec_file,
                                                       one_rank_group, encoder):
    config = load_config(_config(tmp_path, tiny_data, tiny_spec_file, encoder=encoder))
    plain, sharded = Trainer(config), Trainer(config, ranks=one_rank_group)
    rows = plain._batches_of_epoch(0)[0]
    for _ in range(3):
        a, b = plain.train_step(rows), sharded.train_step(rows)
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
