"""``dv365 train`` on a log that brings its own vocabulary, as a user runs it."""

from __future__ import annotations

import yaml

from dv365.cli.app import main
from tests.cli.conftest import write_rated_log


def _rated_run(tmp_path):
    """A config training on a log with its own vocabulary (2 steps), and its data folder."""
    data = write_rated_log(tmp_path / "data")
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "ratings.slice").write_text(
        "table media: media_id, rows 16, dim 4\ngap 0s\n"
        "slice disliked: from explicit where action == dislike pool media_id into media mean\n"
        "slice rated: from explicit where action in [rate, like] pool media_id into media "
        "mean\n")
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "train.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"path": "../data", "validation_days": 1},
        "spec": "../specs/ratings.slice", "out": "../runs/a", "kernel": "reference",
        "encoder": {"type": "fsa"},
        "backbone": {"type": "dlrm", "embedding_dim": 4, "dense_layers": [4],
                     "over_layers": [4]},
        "batch_size": 4, "steps": 2, "eval_every": 1, "checkpoint_every": 2,
    }))
    return config, data


def test_a_slice_spec_naming_the_datas_own_actions_trains(tmp_path, capsys):
    config, data = _rated_run(tmp_path)
    assert main(["train", str(config)]) == 0, capsys.readouterr().err
    assert "trained 2 steps" in capsys.readouterr().out
    assert data.exists() and (tmp_path / "runs" / "a" / "metrics.jsonl").exists()


def test_a_malformed_checkpoint_in_the_run_folder_is_one_line_and_exit_1(tmp_path, capsys):
    import torch

    config, _ = _rated_run(tmp_path)
    assert main(["train", str(config)]) == 0, capsys.readouterr().err
    checkpoint = tmp_path / "runs" / "a" / "checkpoints" / "step-000000002.pt"
    torch.save({"format": "dv365-checkpoint", "version": 2}, checkpoint)
    capsys.readouterr()
    assert main(["train", str(config)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert errors[0].startswith(f"{checkpoint}: error: a malformed checkpoint: no step, epoch")
