"""Checkpoints: round trip, safe loading, spec hash check, newest kept, the best apart."""

import pytest
import torch

from dv365.errors import ConfigError, DataError
from dv365.model.checkpoint import (
    best_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from dv365.slices.ir import Slice, SpecIR, Table


def spec(gap_ms=86_400_000):
    return SpecIR(gap_ms=gap_ms,
                  tables=(Table(name="media", id_column="media_id", num_rows=10, dim=4),),
                  slices=(Slice(name="all", timeline="implicit", id_column="media_id",
                                table="media"),))


def test_round_trip_restores_weights_and_optimizer(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path, step=7, epoch=1, spec=spec(), config_json='{"a": 1}',
                           model_inputs_json='{"b": 2}', model=model,
                           optimizers={"dense": opt}, extra={"seen": 12})
    ckpt = load_checkpoint(path, spec=spec())
    assert (ckpt.step, ckpt.epoch, ckpt.config_json, ckpt.extra) == (7, 1, '{"a": 1}',
                                                                       {"seen": 12})
    assert (ckpt.version, ckpt.model_inputs_json) == (2, '{"b": 2}')
    clone = torch.nn.Linear(3, 2)
    clone.load_state_dict(ckpt.model)
    torch.testing.assert_close(clone.weight, model.weight)
    opt2 = torch.optim.Adam(clone.parameters())
    opt2.load_state_dict(ckpt.optimizers["dense"])
    assert opt2.state_dict()["state"][0]["step"] == 1
    assert ckpt.spec == spec()


def test_a_different_spec_is_refused(tmp_path):
    model = torch.nn.Linear(1, 1)
    path = save_checkpoint(tmp_path, step=1, epoch=0, spec=spec(), config_json="{}",
                           model_inputs_json="{}", model=model, optimizers={})
    with pytest.raises(ConfigError, match="trained with spec"):
        load_checkpoint(path, spec=spec(gap_ms=0))


def test_a_version_1_checkpoint_loads_without_model_inputs_and_a_newer_one_is_refused(
        tmp_path):
    path = save_checkpoint(tmp_path, step=3, epoch=0, spec=spec(), config_json="{}",
                           model_inputs_json="{}", model=torch.nn.Linear(1, 1), optimizers={})
    raw = torch.load(path, weights_only=True)
    del raw["model_inputs_json"]
    torch.save({**raw, "version": 1}, path)
    old = load_checkpoint(path, spec=spec())
    assert (old.version, old.step, old.model_inputs_json) == (1, 3, None)
    torch.save({**raw, "version": 3}, path)
    with pytest.raises(DataError, match="checkpoint format version 3, this dv365 reads 1, 2"):
        load_checkpoint(path)


class Evil:
    """Any class: weights_only loading must refuse to construct it."""


def test_pickled_objects_are_not_loaded(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "dv365-checkpoint", "obj": Evil()}, path)
    with pytest.raises(DataError, match="not a loadable dv365 checkpoint"):
        load_checkpoint(path)
    other = tmp_path / "other.pt"
    torch.save({"x": torch.zeros(1)}, other)
    with pytest.raises(DataError, match="not a dv365 checkpoint"):
        load_checkpoint(other)


def test_only_the_newest_are_kept(tmp_path):
    model = torch.nn.Linear(1, 1)
    for step in (5, 10, 15):
        save_checkpoint(tmp_path, step=step, epoch=0, spec=spec(), config_json="{}",
                        model_inputs_json="{}", model=model, optimizers={}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000000010.pt",
                                                            "step-000000015.pt"]
    assert latest_checkpoint(tmp_path).name == "step-000000015.pt"
    assert latest_checkpoint(tmp_path / "none") is None


def test_the_best_checkpoint_is_kept_apart_from_the_rolling_ones(tmp_path):
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.Adam(model.parameters())
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 ** step)
    opt.step()
    schedule.step()

    def save(step, **kw):
        return save_checkpoint(tmp_path, step=step, epoch=0, spec=spec(), config_json="{}",
                               model_inputs_json="{}", model=model, optimizers={"dense": opt},
                               schedulers={"dense": schedule}, keep=1, **kw)

    assert best_checkpoint(tmp_path) is None
    best = save(4, best=True, extra={"eval_loss": 0.5})
    for step in (4, 8, 12):
        save(step)
    assert best == best_checkpoint(tmp_path) and best.name == "best.pt"
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000000012.pt"]
    ckpt = load_checkpoint(best)
    assert (ckpt.step, ckpt.extra) == (4, {"eval_loss": 0.5})
    assert ckpt.schedulers["dense"]["last_epoch"] == 1
    save(16, best=True)  # a later best replaces it
    assert load_checkpoint(best_checkpoint(tmp_path)).step == 16
    assert latest_checkpoint(tmp_path).name == "step-000000012.pt"


def _saved(tmp_path, **kw):
    return save_checkpoint(tmp_path, step=3, epoch=0, spec=spec(), config_json="{}",
                           model_inputs_json="{}", model=torch.nn.Linear(2, 1), optimizers={},
                           **kw)


@pytest.mark.parametrize("change, message", [
    (lambda raw: {"format": raw["format"], "version": raw["version"]},
     "no step, epoch, spec_hash, spec_json, config_json, model, optimizers, extra"),
    (lambda raw: {**raw, "step": "3"}, "step is '3', not a whole number"),
    (lambda raw: {**raw, "step": True}, "step is True, not a whole number"),
    (lambda raw: {**raw, "step": -1}, r"step is -1, not a count \(0 or more\)"),
    (lambda raw: {**raw, "model": [1, 2]}, "model is a list, not a mapping"),
    (lambda raw: {**raw, "model": {**raw["model"], "weight": [[1.0, 2.0]]}},
     "model\\['weight'\\] is a list, not a tensor"),
    (lambda raw: {**raw, "optimizers": {"dense": 1}}, r"optimizers\['dense'\] is 1, not a "
                                                      "mapping"),
    (lambda raw: {**raw, "rng_states": {"torch_cpu": 5}}, r"rng_states\['torch_cpu'\] is 5"),
    (lambda raw: {**raw, "spec_json": "{}"}, "spec_json is no compiled spec"),
    (lambda raw: {**raw, "spec_hash": "0" * 64}, "spec_json does not hash to spec_hash"),
])
def test_a_malformed_checkpoint_is_one_data_error_naming_the_file(tmp_path, change, message):
    path = _saved(tmp_path)
    torch.save(change(torch.load(path, weights_only=True)), path)
    with pytest.raises(DataError, match=f"a malformed checkpoint: {message}") as info:
        load_checkpoint(path)
    assert info.value.where == str(path) and "\n" not in info.value.render()


def test_the_random_generators_states_round_trip(tmp_path):
    state = torch.Generator().manual_seed(5).get_state()
    path = _saved(tmp_path, rng_states={"torch_cpu": state})
    assert torch.equal(load_checkpoint(path).rng_states["torch_cpu"], state)
    raw = torch.load(path, weights_only=True)
    del raw["rng_states"]  # a checkpoint written before they were recorded
    torch.save(raw, path)
    assert load_checkpoint(path).rng_states == {}
