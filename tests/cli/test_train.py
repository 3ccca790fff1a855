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


# ------------------------------------------------ hostile configs: one located line, no run

def rated_config(tmp_path, **changes):
    """A valid config for the rated log (in tmp_path/data), with ``changes``."""
    data = tmp_path / "data"
    if not data.exists():
        write_rated_log(data)
    (tmp_path / "specs").mkdir(exist_ok=True)
    (tmp_path / "specs" / "ratings.slice").write_text(
        "table media: media_id, rows 16, dim 4\ngap 0s\n"
        "slice rated: from explicit where action in [rate, like] pool media_id into media "
        "mean\n")
    config = {"data": {"path": "data", "validation_days": 1}, "spec": "specs/ratings.slice",
              "out": "runs/a", "kernel": "reference", "encoder": {"type": "fsa"},
              "backbone": {"type": "dlrm", "embedding_dim": 4, "dense_layers": [4],
                           "over_layers": [4]},
              "batch_size": 4, "steps": 2, "eval_every": 1, "checkpoint_every": 2, **changes}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def refused(capsys, path) -> str:
    """The one line ``dv365 train path`` fails with (exit 2), with no warning before it
    (notes about the data aside)."""
    assert main(["train", str(path)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines()
           if line.strip() and not line.startswith("note: ")]
    assert len(err) == 1, err
    return err[0]


def test_an_alias_bomb_and_a_huge_config_fail_fast_with_one_line(tmp_path, capsys):
    import time

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines + ["spec: *a8", "data: d", "out: o", "steps: 1"]) + "\n")
    big = tmp_path / "big.yaml"
    big.write_text("steps: 1\ntasks:\n" + "- a\n" * 8_000_000)
    for path, says in ((bomb, "aliases expanded"), (big, "larger than")):
        start = time.perf_counter()
        line = refused(capsys, path)
        assert time.perf_counter() - start < 10 and says in line and str(path) in line


def test_a_table_larger_than_the_machine_is_refused_before_allocating(tmp_path, capsys):
    path = rated_config(tmp_path)
    (tmp_path / "specs" / "ratings.slice").write_text(
        "table media: media_id, rows 2^34, dim 16\ngap 0s\n"
        "slice rated: from explicit where action in [rate, like] pool media_id into media "
        "mean\n")
    line = refused(capsys, path)
    assert line.startswith(f"{path}: spec: error: the spec's table 'media'")
    assert "1,024.0 GiB" in line


def test_a_cuda_kernel_without_a_gpu_is_reported_at_the_kernel_key(tmp_path, capsys,
                                                                    monkeypatch):
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    monkeypatch.setattr("dv365.kernels.cuda_launch.available", lambda: False)
    line = refused(capsys, rated_config(tmp_path, kernel="cuda"))
    assert line.startswith(f"{tmp_path / 'train.yaml'}: kernel: error: the cuda kernel")


def test_bad_values_are_one_line_at_their_key(tmp_path, capsys):
    for key, value in (("seed", -1), ("seed", 1 << 70), ("tasks", []),
                       ("gap_hours", float("inf")), ("gap_hours", 1e300),
                       ("table_init_std", float("inf"))):
        line = refused(capsys, rated_config(tmp_path, **{key: value}))
        assert line.startswith(f"{tmp_path / 'train.yaml'}: {key}: error:"), line
    (tmp_path / "afile").write_text("x")
    line = refused(capsys, rated_config(tmp_path, out="afile/run"))
    assert ": out: error:" in line and "is under" in line


def test_examples_that_declare_no_tasks_are_a_data_error(tmp_path, capsys):
    from dv365.data.schema import DatasetMeta
    from tests.cli.conftest import RATED_EXAMPLES, RATED_VOCAB
    from tests.data.conftest import write_examples

    path = rated_config(tmp_path)
    m = len(RATED_EXAMPLES)
    write_examples(tmp_path / "data" / "examples", {
        "user_id": [u for u, _ in RATED_EXAMPLES], "request_ts": [t for _, t in RATED_EXAMPLES],
        "media_id": list(range(m)), "author_id": [0] * m, "topic_id": [0] * m,
        "media_type": ["movie"] * m, "surface": ["catalog"] * m,
    }, meta=DatasetMeta(kind="examples", tasks={}, source="test",
                        vocab={k: v for k, v in RATED_VOCAB.items() if k != "action"}))
    assert main(["train", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "the examples declare no tasks" in err and "\n" not in err
