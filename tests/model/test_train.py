"""End to end: ``dv365 train`` on a tiny generated data set; resume; refusals."""

from __future__ import annotations

import json

import pytest
import torch

import dv365
from dv365.cli import app as cli_app
from dv365.errors import ConfigError, DataError, UsageError
from dv365.model.checkpoint import latest_checkpoint, load_checkpoint
from dv365.model.config import load_config
from dv365.model.tasks import task_losses
from dv365.model.train import Trainer, train
from dv365.plugins import load_plugins
from dv365.slices.ir import SpecIR
from tests.model.conftest import write_config

PLUGINS = load_plugins(autoload=False)


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_writes_metrics_and_checkpoints(tmp_path, tiny_data, tiny_spec_file, capsys):
    config_path = write_config(tmp_path, tiny_data, tiny_spec_file)
    assert cli_app.main(["train", str(config_path)]) == 0
    assert "trained 6 steps" in capsys.readouterr().out
    run = tmp_path / "run"
    records = _records(run)
    assert [r["step"] for r in records] == [3, 6]
    last = records[-1]
    for key in ("skip/ne", "skip/auc", "watch_time/mse", "eval/loss", "train/samples_per_s"):
        assert key in last
    assert last["skip/ne"] > 0 and 0 <= last["skip/auc"] <= 1
    ckpt = load_checkpoint(latest_checkpoint(run))
    spec = SpecIR.from_json(tiny_spec_file.read_text())
    assert ckpt.step == 6 and ckpt.spec_hash == spec.content_hash()
    assert "fsa" in ckpt.config_json


def test_history_stops_a_gap_before_the_groups_first_request(tmp_path, tiny_data,
                                                            tiny_spec_file):
    trainer = Trainer(load_config(write_config(tmp_path, tiny_data, tiny_spec_file,
                                               gap_hours=24)), plugins=PLUGINS)
    ex = trainer.train_set
    # One history per user-day: fewer groups than examples.
    assert ex.num_groups < len(ex)
    from dv365.kernels.jagged import slice_jagged

    users, times = ex.group_user[:8], ex.group_ts[:8]
    jag = slice_jagged(trainer.ir, trainer.store, users, times)
    # Recount one explicit slice by hand: events strictly before request - 24h.
    s = trainer.ir.slice_names.index("media_7d")
    for b, (u, t) in enumerate(zip(users, times)):
        ev = trainer.store.user_events(int(u))
        cutoff = t - 86_400_000
        hand = ((ev["ts"] < cutoff) & (ev["ts"] >= t - 7 * 86_400_000)
                & (ev["timeline"] == 1)).sum()
        assert int(jag.counts[b, s]) == hand


class _StopAt:
    """An observer plugin that interrupts training after a given step."""

    def __init__(self, step):
        self.step = step

    @dv365.hookimpl
    def dv365_on_train_step(self, step, losses, run_dir):
        assert set(losses) >= {"total", "skip", "watch_time"}
        if step == self.step:
            raise KeyboardInterrupt


def test_resume_after_interruption_gives_the_uninterrupted_model(tmp_path, tiny_data,
                                                                  tiny_spec_file):
    straight = load_config(write_config(tmp_path / "a", tiny_data, tiny_spec_file))
    interrupted = load_config(write_config(tmp_path / "b", tiny_data, tiny_spec_file))
    train(straight, plugins=PLUGINS)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, plugins=load_plugins(extra=(_StopAt(5),), autoload=False))
    assert load_checkpoint(latest_checkpoint(interrupted.out)).step == 4
    result = train(interrupted, plugins=PLUGINS)
    assert result.resumed_from == 4 and result.step == 6
    a = load_checkpoint(latest_checkpoint(straight.out)).model
    b = load_checkpoint(latest_checkpoint(interrupted.out)).model
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


def test_resume_refuses_another_spec_or_config(tmp_path, tiny_data, tiny_spec_file):
    train(load_config(write_config(tmp_path, tiny_data, tiny_spec_file, steps=2)),
          plugins=PLUGINS)
    with pytest.raises(ConfigError, match="trained with spec"):
        Trainer(load_config(write_config(tmp_path, tiny_data, tiny_spec_file, steps=2,
                                         gap_hours=0)), plugins=PLUGINS).run()
    with pytest.raises(UsageError, match="changed: alpha"):
        Trainer(load_config(write_config(tmp_path, tiny_data, tiny_spec_file, steps=2,
                                         alpha=0.5)), plugins=PLUGINS).run()


def test_fused_pooling_trains_the_same_model_as_the_jagged_ebc_path(tmp_path, tiny_data,
                                                                    tiny_spec_file):
    # The two poolings give the same loss and the same gradient for every parameter on the
    # same batch. (Weights after an Adam step are no test: its first update is lr * g /
    # (|g| + eps), whose slope near g = 0 is lr / eps = 1e5, so float32 rounding of a near-zero
    # gradient moves a weight by 1e-5 on one CPU and not on another.)
    grads, losses = {}, {}
    for pooling in ("ebc", "fused"):
        config = load_config(write_config(tmp_path / pooling, tiny_data, tiny_spec_file,
                                          steps=1, pooling=pooling), plugins=PLUGINS)
        trainer = Trainer(config, plugins=PLUGINS)
        kjt, group_of_example, sparse, dense, labels = trainer._inputs(
            trainer.train_set, trainer._next_batch())
        outputs = trainer.model(kjt, group_of_example, sparse, dense)
        total, _ = task_losses(outputs, labels, trainer.tasks, config.alpha)
        total.backward()
        losses[pooling] = float(total.detach())
        grads[pooling] = {name: p.grad.to_dense() for name, p in
                          trainer.model.named_parameters() if p.grad is not None}
    assert losses["fused"] == pytest.approx(losses["ebc"], rel=1e-6)
    assert grads["ebc"].keys() == grads["fused"].keys()
    assert sum(name.startswith("tables.") for name in grads["ebc"]) == 3
    for name, g in grads["ebc"].items():
        torch.testing.assert_close(grads["fused"][name], g, rtol=1e-4, atol=1e-7, msg=name)
    # and a whole fused step trains: every slice table moves
    train(config, plugins=PLUGINS)
    trained = load_checkpoint(latest_checkpoint(config.out)).model
    initial = Trainer(config, plugins=PLUGINS).model.state_dict()
    moved = sum(key.startswith("tables.") and not torch.equal(trained[key], initial[key])
                for key in trained)
    assert moved == 3


@pytest.mark.parametrize("encoder, backbone", [(None, "siamese"), ({"type": "identity"},
                                                                   "siamese")])
def test_without_user_tower_and_with_siamese(tmp_path, tiny_data, tiny_spec_file, encoder,
                                             backbone):
    config = load_config(write_config(tmp_path, tiny_data, tiny_spec_file, steps=2,
                                      encoder=encoder, backbone={"type": backbone},
                                      item_features=["topic_id", "surface"]))
    result = train(config, plugins=PLUGINS)
    assert result.step == 2 and "skip/ne" in result.metrics
    assert set(Trainer(config, plugins=PLUGINS).model.backbone.items.names) == {"topic_id",
                                                                               "surface"}


def test_a_wrong_key_in_the_config_fails_with_its_path(tmp_path, tiny_data, tiny_spec_file,
                                                       capsys):
    path = write_config(tmp_path, tiny_data, tiny_spec_file, encoder={"type": "fsa",
                                                                      "stide": 2})
    assert cli_app.main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: encoder.stide: error: unknown key (did you mean 'stride'?)" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_a_gpu_is_a_config_error(tmp_path, tiny_data, tiny_spec_file):
    config = load_config(write_config(tmp_path, tiny_data, tiny_spec_file, device="cuda"),
                         plugins=PLUGINS)
    with pytest.raises(ConfigError) as info:
        Trainer(config, plugins=PLUGINS)
    assert info.value.where == config.where("device") and "device: cpu" in info.value.render()


def test_task_bias_starts_at_the_training_base_rates():
    import numpy as np

    from dv365.model.tasks import Task
    from dv365.model.foundation import initial_task_bias

    labels = np.array([[1, 2.0], [0, 0.0], [0, 6.0], [0, 0.0]], np.float32)
    bias = initial_task_bias(labels, (Task("like", "binary"), Task("w", "regression", True)))
    assert bias[0] == pytest.approx(np.log(0.25 / 0.75))
    assert bias[1] == pytest.approx(np.mean(np.log1p([2.0, 0, 6.0, 0])))


def test_evaluation_keeps_its_predictions_in_held_out_order(tmp_path, tiny_data,
                                                            tiny_spec_file):
    import numpy as np

    from dv365.model.tasks import predictions

    trainer = Trainer(load_config(write_config(tmp_path, tiny_data, tiny_spec_file)),
                      plugins=PLUGINS)
    # Shuffled rows: the evaluation's group-major batch order is not the row order.
    trainer.eval_set = trainer.eval_set.subset(
        np.random.default_rng(0).permutation(len(trainer.eval_set)))
    trainer.evaluate()
    held = trainer.eval_set
    assert trainer.eval_predictions.shape == (len(held), len(trainer.tasks))
    # Rows of two groups, predicted on their own, match the stored rows.
    rows = np.flatnonzero(np.isin(held.group, [held.num_groups - 1, 0]))
    trainer.model.eval()
    with torch.no_grad():
        out = trainer.model(*trainer._inputs(held, rows)[:4])
    np.testing.assert_allclose(trainer.eval_predictions[rows],
                               predictions(out, trainer.tasks).double().numpy(), rtol=1e-5,
                               atol=1e-6)


# ------------------------------------------------------------------ best, last, early stopping
def test_the_best_checkpoint_is_kept_by_held_out_loss_and_both_are_reported(
        tmp_path, tiny_data, tiny_spec_file, capsys):
    from dv365.model.checkpoint import best_checkpoint

    path = write_config(tmp_path, tiny_data, tiny_spec_file, steps=6, eval_every=1,
                        checkpoint_every=3)
    assert cli_app.main(["train", str(path)]) == 0
    out = capsys.readouterr().out
    records = _records(tmp_path / "run")
    losses = [r["eval/loss"] for r in records]
    best = records[losses.index(min(losses))]
    assert (f"best at step {best['step']} (lowest eval/loss" if best["step"] < 6 else
            "best: the last step (lowest eval/loss)") in out
    assert f"last: eval/loss={records[-1]['eval/loss']:.4f}" in out
    ckpt = load_checkpoint(best_checkpoint(tmp_path / "run"))
    assert ckpt.step == best["step"]
    # best.pt holds the weights that scored it
    trainer = Trainer(load_config(path), plugins=PLUGINS)
    trainer.model.load_state_dict(ckpt.model)
    assert trainer.evaluate()["eval/loss"] == pytest.approx(best["eval/loss"], rel=1e-6)
    # it stands apart from the rolling checkpoints; the schedule decayed to its floor
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == \
        ["best.pt", "step-000000003.pt", "step-000000006.pt"]
    assert records[-1]["train/lr"] == pytest.approx(0.001 * 0.1)
    assert records[0]["train/lr"] > records[-1]["train/lr"]


def _scripted(trainer, losses):
    """Make ``trainer.evaluate`` return the held-out losses ``losses`` in turn."""
    script = iter(losses)

    def evaluate():
        return {"eval/examples": 1.0, "eval/loss": next(script)}

    trainer.evaluate = evaluate
    return trainer


def test_early_stopping_ends_after_patience_evaluations_without_a_new_best(
        tmp_path, tiny_data, tiny_spec_file):
    path = write_config(tmp_path, tiny_data, tiny_spec_file, steps=10, eval_every=1,
                        checkpoint_every=100, early_stopping={"patience": 2})
    trainer = _scripted(Trainer(load_config(path), plugins=PLUGINS), [3.0, 2.0, 2.5, 2.1, 1.0])
    result = trainer.run()
    assert (result.step, result.best_step, result.stopped_early) == (4, 2, True)
    assert result.best_metrics["eval/loss"] == 2.0 and result.metrics["eval/loss"] == 2.1
    assert load_checkpoint(latest_checkpoint(tmp_path / "run")).step == 4  # written at the stop
    # running it again trains no further; more patience goes on (patience is resumable)
    again = train(load_config(path), plugins=PLUGINS)
    assert (again.step, again.resumed_from, again.stopped_early, again.best_step) == \
        (4, 4, True, 2)
    longer = write_config(tmp_path, tiny_data, tiny_spec_file, steps=10, eval_every=1,
                          checkpoint_every=100, early_stopping={"patience": 3})
    trainer = _scripted(Trainer(load_config(longer), plugins=PLUGINS), [2.2, 2.3, 2.4])
    result = trainer.run()
    assert (result.resumed_from, result.step, result.best_step) == (4, 5, 2)


def test_resume_keeps_the_schedule_and_the_best_so_far(tmp_path, tiny_data, tiny_spec_file):
    from dv365.model.checkpoint import best_checkpoint

    schedule = {"dense": {"schedule": {"warmup_steps": 2, "decay": "linear"}}}
    straight = load_config(write_config(tmp_path / "a", tiny_data, tiny_spec_file,
                                        optimizer=schedule, eval_every=2))
    interrupted = load_config(write_config(tmp_path / "b", tiny_data, tiny_spec_file,
                                           optimizer=schedule, eval_every=2))
    whole = train(straight, plugins=PLUGINS)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, plugins=load_plugins(extra=(_StopAt(5),), autoload=False))
    assert load_checkpoint(latest_checkpoint(interrupted.out)).schedulers["dense"][
        "last_epoch"] == 4
    resumed = train(interrupted, plugins=PLUGINS)
    assert (resumed.best_step, resumed.best_metrics["eval/loss"]) == \
        (whole.best_step, whole.best_metrics["eval/loss"])
    a = load_checkpoint(best_checkpoint(straight.out)).model
    b = load_checkpoint(best_checkpoint(interrupted.out)).model
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
    assert _records(interrupted.out)[-1]["train/lr"] == _records(straight.out)[-1]["train/lr"]


# ------------------------------------------------------------------ what the data lets it tell
def test_config_errors_found_while_training_name_the_file(tmp_path, tiny_data, tiny_spec_file,
                                                          capsys):
    path = write_config(tmp_path, tiny_data, tiny_spec_file,
                        data_options={"validation_days": 10})
    assert cli_app.main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: data.validation_days: error: the examples span 4 calendar day(s)" in err
    path = write_config(tmp_path, tiny_data, tiny_spec_file, tasks=["nope"])
    with pytest.raises(ConfigError) as info:
        Trainer(load_config(path), plugins=PLUGINS)
    assert info.value.where == f"{path}: tasks"


@pytest.mark.parametrize("grouping", ["user_day", "request"])
def test_train_reports_the_share_of_examples_without_history_at_the_gap(
        tmp_path, tiny_data, tiny_spec_file, capsys, grouping):
    import numpy as np

    probe = Trainer(load_config(write_config(tmp_path / "probe", tiny_data, tiny_spec_file)),
                    plugins=PLUGINS)
    store, ex = probe.store, probe.train_set
    first_event = store.ts[store.offsets[:-1]]
    # a gap that leaves about half of the examples without history
    gap_ms = int(np.median(ex.request_ts - first_event[ex.user_index]))
    path = write_config(tmp_path, tiny_data, tiny_spec_file, steps=1, grouping=grouping,
                        gap_hours=gap_ms / 3_600_000)
    assert cli_app.main(["train", str(path)]) == 0
    run_err = capsys.readouterr()
    trainer = Trainer(load_config(path), plugins=PLUGINS)
    gap = trainer.ir.gap_ms
    shares = {}
    for name, held in (("train", trainer.train_set), ("eval", trainer.eval_set)):
        users, times = held.user_index, held.request_ts
        if grouping == "user_day":  # each example's cutoff: its user-day's first request
            at = np.array([times[(users == u) & (times // 86_400_000 == t // 86_400_000)].min()
                           for u, t in zip(users, times)])
        else:
            at = times
        shares[name] = float(np.mean([not (store.user_events(int(u))["ts"] < t - gap).any()
                                      for u, t in zip(users, at)]))
        assert trainer.data_report[f"{name}/empty_history"] == pytest.approx(shares[name])
    assert 0.2 < shares["train"] < 0.8
    assert (f"history: {shares['train']:.1%} of {len(trainer.train_set):,} training and "
            f"{shares['eval']:.1%} of {len(trainer.eval_set):,} held-out examples see no "
            f"event before request - ") in run_err.err
    assert f"(grouping: {grouping}" in run_err.err
    record = _records(tmp_path / "run")[-1]
    assert record["train/empty_history"] == pytest.approx(shares["train"])
    assert f"{shares['eval']:.1%} of examples without history" in run_err.out


def test_a_held_out_set_too_small_for_a_1_percent_ne_difference_is_warned_about(
        tmp_path, tiny_data, tiny_spec_file, capsys):
    path = write_config(tmp_path, tiny_data, tiny_spec_file, steps=2)
    assert cli_app.main(["train", str(path)]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "examples of 40 users) is too small to tell a 1% NE difference" in warnings[0]
    assert "skip 0." in warnings[0]
    record = _records(tmp_path / "run")[-1]
    assert record["eval/users"] == 40 and record["skip/expected_ne_se"] > 0.01
    assert 0 < record["skip/ne_se"] < 1
    assert "held-out: 40 users" in captured.out and "NE difference is noise there" in \
        captured.out


def test_threads_set_torch_and_the_cpu_kernels_and_the_option_overrides_the_config(
        tmp_path, tiny_data, tiny_spec_file):
    import numba

    before = torch.get_num_threads(), numba.get_num_threads()
    try:
        path = write_config(tmp_path, tiny_data, tiny_spec_file, steps=1, threads=2)
        assert cli_app.main(["train", str(path), "--threads", "1"]) == 0
        assert (torch.get_num_threads(), numba.get_num_threads()) == (1, 1)
        assert json.loads((tmp_path / "run" / "config.json").read_text())["threads"] == 1
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])


# ------------------------------------------------------------------ exact resume, one record each
def _stripped(record):
    """A metrics record without what depends on the wall clock."""
    return {k: v for k, v in record.items() if k not in ("time", "train/samples_per_s")}


def _assert_equal_states(a, b, where="checkpoint"):
    """``a`` and ``b`` (nested checkpoint payloads) equal bit for bit, tensors included."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_equal_states(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b)):
            _assert_equal_states(x, y, f"{where}[{k}]")
    else:
        assert a == b, where


def test_resume_with_dropout_trains_exactly_the_uninterrupted_model(tmp_path, tiny_data,
                                                                   tiny_spec_file):
    options = dict(steps=8, eval_every=4, checkpoint_every=4,
                   encoder={"type": "fsa", "dropout": 0.3})
    straight = load_config(write_config(tmp_path / "a", tiny_data, tiny_spec_file, **options))
    interrupted = load_config(write_config(tmp_path / "b", tiny_data, tiny_spec_file,
                                           **options))
    train(straight, plugins=PLUGINS)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, plugins=load_plugins(extra=(_StopAt(6),), autoload=False))
    resumed = train(interrupted, plugins=PLUGINS)
    assert (resumed.resumed_from, resumed.step) == (4, 8)
    a = torch.load(latest_checkpoint(straight.out), weights_only=True)
    b = torch.load(latest_checkpoint(interrupted.out), weights_only=True)
    assert sum(isinstance(v, torch.Tensor) for v in a["model"].values()) > 40
    for key in ("model", "optimizers", "schedulers", "rng_states", "step"):
        _assert_equal_states(a[key], b[key], key)
    best_a, best_b = (_stripped(json.loads(c["extra"].pop("best_metrics_json"))) for c in (a, b))
    assert (a["extra"], best_a) == (b["extra"], best_b)
    assert [_stripped(r) for r in _records(straight.out)] == \
        [_stripped(r) for r in _records(interrupted.out)]


def test_each_step_is_recorded_once_after_a_resume_and_a_finished_run_records_nothing(
        tmp_path, tiny_data, tiny_spec_file):
    # Evaluations at 2 and 4, checkpoints at 3: resuming from 3 evaluates step 4 again.
    config = load_config(write_config(tmp_path, tiny_data, tiny_spec_file, steps=6,
                                      eval_every=2, checkpoint_every=3))
    with pytest.raises(KeyboardInterrupt):
        train(config, plugins=load_plugins(extra=(_StopAt(5),), autoload=False))
    assert [r["step"] for r in _records(config.out)] == [2, 4]
    result = train(config, plugins=PLUGINS)
    assert result.resumed_from == 3
    records = _records(config.out)
    assert [r["step"] for r in records] == [2, 4, 6]
    # a rerun of the finished config trains nothing and records nothing; it still reports
    again = train(config, plugins=PLUGINS)
    assert (again.resumed_from, again.step) == (6, 6)
    assert _records(config.out) == records
    assert again.metrics["eval/loss"] == pytest.approx(records[-1]["eval/loss"], rel=1e-6)


def test_a_refused_resume_leaves_the_run_folder_as_it_was(tmp_path, tiny_data, tiny_spec_file):
    train(load_config(write_config(tmp_path, tiny_data, tiny_spec_file, steps=2)),
          plugins=PLUGINS)
    run = tmp_path / "run"
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for change in ({"alpha": 0.5}, {"optimizer": {"dense": {"lr": 0.01}}}):
        with pytest.raises(UsageError, match="different config"):
            Trainer(load_config(write_config(tmp_path, tiny_data, tiny_spec_file, steps=2,
                                             **change)), plugins=PLUGINS).run()
    with pytest.raises(ConfigError, match="trained with spec"):
        Trainer(load_config(write_config(tmp_path, tiny_data, tiny_spec_file, steps=2,
                                         gap_hours=0)), plugins=PLUGINS).run()
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


class _FailAt(_StopAt):
    """An observer plugin whose step hook fails at a given step."""

    @dv365.hookimpl
    def dv365_on_train_step(self, step, losses, run_dir):
        if step == self.step:
            raise RuntimeError("observer failed")


def test_a_start_that_fails_before_its_first_record_leaves_no_run_folder(tmp_path, tiny_data,
                                                                        tiny_spec_file):
    config = load_config(write_config(tmp_path, tiny_data, tiny_spec_file, steps=4,
                                      eval_every=2, checkpoint_every=2))
    with pytest.raises(RuntimeError, match="observer failed"):
        train(config, plugins=load_plugins(extra=(_FailAt(1),), autoload=False))
    assert not (tmp_path / "run").exists()
    # one that fails after a record keeps the run (it resumes from there)
    with pytest.raises(RuntimeError, match="observer failed"):
        train(config, plugins=load_plugins(extra=(_FailAt(3),), autoload=False))
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == \
        ["checkpoints", "config.json", "metrics.jsonl", "spec.json"]
    assert train(config, plugins=PLUGINS).resumed_from == 2


def test_a_run_folder_copied_to_another_out_resumes_there(tmp_path, tiny_data, tiny_spec_file):
    import shutil

    train(load_config(write_config(tmp_path / "a", tiny_data, tiny_spec_file, steps=2)),
          plugins=PLUGINS)
    shutil.copytree(tmp_path / "a" / "run", tmp_path / "b" / "run")
    moved = load_config(write_config(tmp_path / "b", tiny_data, tiny_spec_file, steps=4))
    result = train(moved, plugins=PLUGINS)
    assert (result.resumed_from, result.step) == (2, 4)
    assert json.loads((tmp_path / "b" / "run" / "config.json").read_text())["out"] == \
        str(tmp_path / "b" / "run")


def _damaged(raw, case):
    """``raw`` (a loaded checkpoint) damaged as ``case`` says."""
    if case == "mis-shaped weight":
        name = next(k for k in raw["model"] if k.startswith("tables."))
        raw["model"][name] = torch.zeros(3, 5)
    elif case == "no sparse optimizer state":
        del raw["optimizers"]["sparse"]
    elif case == "mis-shaped optimizer state":
        state = raw["optimizers"]["dense"]["state"]
        key = next(iter(state))
        state[key]["exp_avg"] = torch.zeros(7, 3)
    elif case == "incomplete best so far":
        del raw["extra"]["best_loss"]
    return raw


@pytest.mark.parametrize("case, message", [
    ("mis-shaped weight", "its weights do not fit the model: size mismatch for tables."),
    ("no sparse optimizer state", "no sparse optimizer state"),
    ("mis-shaped optimizer state", "the dense optimizer state does not fit: exp_avg has shape "
                                   r"\(7, 3\)"),
    ("incomplete best so far", "its best-so-far record is incomplete"),
])
def test_a_checkpoint_that_does_not_fit_the_run_is_a_data_error_naming_it(
        tmp_path, tiny_data, tiny_spec_file, case, message):
    path_of_config = write_config(tmp_path, tiny_data, tiny_spec_file, steps=2)
    train(load_config(path_of_config), plugins=PLUGINS)
    path = latest_checkpoint(tmp_path / "run")
    torch.save(_damaged(torch.load(path, weights_only=True), case), path)
    with pytest.raises(DataError, match=f"malformed checkpoint: {message}") as info:
        Trainer(load_config(path_of_config), plugins=PLUGINS).run()
    assert info.value.where == str(path) and "\n" not in info.value.render()


def test_a_torchrun_rank_trains_the_config_on_one_device_per_process(tmp_path, tiny_data,
                                                                    tiny_spec_file):
    from dv365.model.train import several_devices_config

    config = load_config(write_config(tmp_path, tiny_data, tiny_spec_file))
    derived = several_devices_config(config, 2)
    assert derived.devices == ("cpu", "cpu") and derived.device == "cpu"
    assert derived.model_dump(exclude={"devices"}) == config.model_dump(exclude={"devices"})
    fused = load_config(write_config(tmp_path, tiny_data, tiny_spec_file, pooling="fused"))
    with pytest.raises(ConfigError) as info:
        several_devices_config(fused, 2)
    assert info.value.where.endswith("train.yaml: pooling")


def test_devices_torch_cannot_use_are_refused_at_their_key_before_any_rank_starts(
        tmp_path, tiny_data, tiny_spec_file, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = load_config(write_config(tmp_path, tiny_data, tiny_spec_file,
                                      devices=["cuda:0", "cuda:1"]))
    with pytest.raises(ConfigError) as info:
        train(config, plugins=PLUGINS)
    assert info.value.where.endswith("train.yaml: devices")
    assert info.value.message == "this machine has no CUDA device torch can use"
    assert not (tmp_path / "run").exists()
