"""The units an evaluation plans (dv365.experiments.units): an arm equal to a model of the
main comparison (or of an earlier arm) is that model, every other unit is named by its
content, and an arm that needs what the config lacks is refused at its key."""

from __future__ import annotations

import pytest

from dv365.errors import ConfigError
from dv365.experiments.eval_config import parse_eval_config
from dv365.experiments.evaluation import build_experiments
from dv365.experiments.experiment import Setting
from dv365.experiments.units import content_hash, plan_units


def _config(tmp_path, experiments, **changes):
    raw = {"data": str(tmp_path), "out": str(tmp_path / "out"), "export_days": 4,
           "eval_days": 2, "foundation": {"train": {"spec": "x.slice",
                                                    "encoder": {"type": "fsa"}}},
           "ranking": {"adapters": [{"type": "linear"}]}, "retrieval": None,
           "experiments": experiments, **changes}
    return parse_eval_config(raw, file="eval.yaml")


def _plan(config, max_history=1000):
    setting = Setting(seeds=config.seeds, eval_days=config.eval_days, codec=config.codec,
                      max_history=max_history, foundation=dict(config.foundation.train or {}))
    return plan_units(config, [(e, e.arms(setting)) for e in build_experiments(config)])


def test_an_arm_equal_to_a_main_model_shares_its_runs(tmp_path):
    plan = _plan(_config(tmp_path, [{"type": "quantization", "codecs": ["int4", "fp32"]},
                                    {"type": "history_length", "lengths": [10, None]}]))
    assert plan.arms[("quantization", "int4", "ranking")].folder == "runs/ranking/linear"
    assert plan.arms[("history_length", "all", "ranking")].folder == "runs/ranking/linear"
    fp32 = plan.arms[("quantization", "fp32", "ranking")]
    assert fp32.folder.startswith("runs/ranking/quantization-fp32-") and fp32.codec == "fp32"
    assert fp32.folder.endswith(content_hash(fp32.content()))
    assert list(plan.runs) == ["runs/ranking/control", "runs/ranking/linear", fp32.folder,
                               plan.arms[("history_length", "10", "ranking")].folder]
    assert list(plan.foundations) == ["foundation"]  # no arm changed the foundation


def test_arms_that_change_the_foundation_train_their_own_and_share_equal_ones(tmp_path):
    plan = _plan(_config(tmp_path, [
        {"type": "encoder_ablation", "encoders": [{"type": "fsa"}, {"type": "lce"}]},
        {"type": "encoder_ablation", "encoders": [{"type": "lce"}]}]))
    assert plan.arm_foundations[("encoder_ablation", "fsa")].folder == "foundation"
    lce = plan.arm_foundations[("encoder_ablation", "lce")]
    assert lce.folder.startswith("foundations/encoder_ablation-lce-")
    assert lce.train["encoder"] == {"type": "lce"} and lce.train["spec"].endswith("x.slice")
    assert plan.arm_foundations[("encoder_ablation-2", "lce")] == lce
    assert plan.arms[("encoder_ablation-2", "lce", "ranking")] is \
        plan.arms[("encoder_ablation", "lce", "ranking")]


def test_an_override_spelling_out_the_configured_defaults_is_the_base_foundation(tmp_path):
    plan = _plan(_config(tmp_path, [{"type": "encoder_ablation", "encoders": [
        {"type": "fsa", "view": "token"}, {"type": "fsa", "view": "dim"}]}]))
    assert plan.arm_foundations[("encoder_ablation", "fsa/token")].folder == "foundation"
    assert plan.arms[("encoder_ablation", "fsa/token", "ranking")].folder == \
        "runs/ranking/linear"
    assert plan.arm_foundations[("encoder_ablation", "fsa/dim")].folder != "foundation"


def test_a_foundation_override_needs_a_training_config(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"")
    config = _config(tmp_path, [{"type": "gap"}],
                     foundation={"checkpoint": str(tmp_path / "best.pt")})
    with pytest.raises(ConfigError, match="needs foundation.train") as info:
        _plan(config)
    assert info.value.where == "eval.yaml: experiments"


def test_an_experiment_judged_on_a_family_the_config_turns_off_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="judged on retrieval") as info:
        _plan(_config(tmp_path, [{"type": "backbone"}]))
    assert info.value.where == "eval.yaml: retrieval"


@pytest.mark.parametrize("experiments, where", [
    ([{"type": "quantisation"}], "eval.yaml: experiments.0.type"),
    ([{"type": "quantization", "codecs": ["int4", "int4"]}], "eval.yaml: experiments.0.codecs"),
    ([{"type": "gap"}, {"type": "staleness", "bar": 2}], "eval.yaml: experiments.1.bar"),
])
def test_an_unknown_kind_or_a_bad_option_is_one_line_at_its_key(tmp_path, experiments, where):
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, experiments)
    assert info.value.where == where


def test_experiments_of_one_kind_are_numbered(tmp_path):
    config = _config(tmp_path, [{"type": "gap"}, {"type": "gap", "hours": [0, 6]}])
    assert [e.name for e in build_experiments(config)] == ["gap", "gap-2"]
