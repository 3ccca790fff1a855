"""The training config: strict keys, plugin-validated sections, errors at the key path."""

from pathlib import Path

import pytest

from dv365.errors import ConfigError
from dv365.model.config import load_config, parse_config
from dv365.plugins import load_plugins

PLUGINS = load_plugins(autoload=False)
BASE = {"data": "data", "spec": "spec.json", "out": "runs/a", "steps": 10,
        "encoder": {"type": "fsa", "blocks": 2}, "backbone": {"type": "dlrm"}}


def parse(**changes):
    raw = {**BASE, **changes}
    return parse_config(raw, file="train.yaml", base=Path("/cfg"), plugins=PLUGINS)


def error_of(**changes) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(**changes)
    return info.value


def test_a_valid_config_resolves_paths_against_the_file():
    config = parse()
    assert config.data.events_path == Path("/cfg/data/events")
    assert config.spec == Path("/cfg/spec.json") and config.out == Path("/cfg/runs/a")
    encoder, backbone = config.resolved_plugin_options(PLUGINS)
    assert encoder.blocks == 2 and backbone.embedding_dim == 16


def test_unknown_top_level_key_names_it_and_suggests():
    err = error_of(batchsize=3)
    assert err.where == "train.yaml: batchsize" and "did you mean 'batch_size'" in err.render()


def test_unknown_nested_key_names_the_path():
    err = error_of(optimizer={"sparse": {"lr": 0.1, "lrr": 2}})
    assert err.where == "train.yaml: optimizer.sparse.lrr"
    assert "did you mean 'lr'" in err.render()


def test_plugin_options_are_validated_by_the_plugin():
    err = error_of(encoder={"type": "fsa", "blocsk": 2})
    assert err.where == "train.yaml: encoder.blocsk" and "did you mean 'blocks'" in err.render()
    err = error_of(encoder={"type": "fsa", "blocks": 0})
    assert err.where == "train.yaml: encoder.blocks" and "greater than or equal to 1" in err.message


def test_unknown_plugin_name_is_a_config_error_at_type():
    err = error_of(backbone={"type": "dlmr"})
    assert err.where == "train.yaml: backbone.type" and "did you mean 'dlrm'" in err.render()


def test_wrong_values_and_missing_keys():
    assert error_of(batch_size=-1).where == "train.yaml: batch_size"
    assert error_of(optimizer={"dense": {"type": "sgd"}}).where == \
        "train.yaml: optimizer.dense.type"
    raw = dict(BASE)
    del raw["spec"]
    with pytest.raises(ConfigError, match="missing key") as info:
        parse_config(raw, file="t.yaml", plugins=PLUGINS)
    assert info.value.where == "t.yaml: spec"


def test_exactly_one_of_steps_and_epochs():
    assert "exactly one of steps and epochs" in error_of(epochs=2).message


def test_null_encoder_means_no_user_tower():
    assert parse(encoder=None).encoder is None


def test_yaml_syntax_errors_point_at_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data: x\nspec: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, plugins=PLUGINS)
    assert info.value.where.startswith(f"{path}:")


def test_device_is_cpu_or_cuda_and_a_gpu_device_defaults_the_kernel_to_cuda():
    assert parse().kernel == "cpu"
    assert parse(device="cuda").kernel == "cuda"
    assert parse(device="cuda:1").kernel == "cuda"
    assert parse(device="cuda", kernel="cpu").kernel == "cpu"  # an explicit choice stays
    assert error_of(device="gpu").where == "train.yaml: device"


def test_pooling_defaults_to_the_fused_op_on_a_gpu_and_ebc_elsewhere():
    assert parse().pooling == "ebc"
    assert parse(device="cuda").pooling == "fused"
    assert parse(device="cuda:1", pooling="ebc").pooling == "ebc"  # an explicit choice stays


def test_paths_are_normalized_and_errors_name_the_file_as_display_path_spells_it(
        tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "train.yaml").write_text(
        "data: ../data\nspec: ../specs/x.slice\nout: runs/./a\nsteps: 1\n")
    (tmp_path / "configs" / "bad.yaml").write_text("data: ../data\nspec: x\nout: y\n"
                                                  "steps: 1\nbatchsize: 3\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PWD", raising=False)
    config = load_config("configs/../configs/train.yaml", plugins=PLUGINS)
    assert config.spec == tmp_path / "specs" / "x.slice"
    assert str(config.spec) == str(tmp_path / "specs" / "x.slice")  # no '..' left
    assert config.data.events_path == tmp_path / "data" / "events"
    assert str(config.out) == str(tmp_path / "configs" / "runs" / "a")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "configs" / ".." / "configs" / "bad.yaml", plugins=PLUGINS)
    assert info.value.where == "configs/bad.yaml: batchsize"
    with pytest.raises(ConfigError) as missing:
        load_config("configs/../nope.yaml", plugins=PLUGINS)
    assert missing.value.where == "nope.yaml"


def test_the_held_out_split_is_one_of_a_date_a_fraction_or_calendar_days():
    from datetime import date, datetime, timezone

    assert parse().data.validation_fraction == 0.1  # the default, written out in config.json
    assert parse().data.validation_key == "validation_fraction"
    cut = parse(data={"path": "d", "validation_from": "2025-12-20T00:00:00Z"}).data
    assert cut.validation_from == datetime(2025, 12, 20, tzinfo=timezone.utc)
    assert (cut.validation_key, cut.validation_fraction) == ("validation_from", None)
    # YAML reads a bare date as a date: midnight UTC
    assert parse(data={"path": "d", "validation_from": date(2025, 12, 20)}).data \
        .validation_from == datetime(2025, 12, 20, tzinfo=timezone.utc)
    assert parse(data={"path": "d", "validation_days": 3}).data.validation_key == \
        "validation_days"
    err = error_of(data={"path": "d", "validation_days": 3, "validation_fraction": 0.2})
    assert err.where == "train.yaml: data"
    assert "not validation_fraction and validation_days" in err.message
    assert error_of(data={"path": "d", "validation_fraction": 1.0}).where == \
        "train.yaml: data.validation_fraction"
    assert error_of(data={"path": "d", "validation_days": 0}).where == \
        "train.yaml: data.validation_days"


def test_the_chosen_split_survives_the_checkpoints_json():
    from dv365.model.config import config_from_json

    for data in ({"path": "/d", "validation_from": "2025-12-20T06:00:00+02:00"},
                 {"path": "/d", "validation_days": 2}, {"path": "/d"}):
        config = parse(data=data)
        assert config_from_json(config.to_json(), plugins=PLUGINS) == config


def test_schedule_early_stopping_threads_and_grouping_are_checked():
    config = parse()
    schedule = config.optimizer.dense.schedule
    assert (schedule.warmup_steps, schedule.decay, schedule.min_lr_ratio) == (0, "cosine", 0.1)
    assert (config.early_stopping, config.threads, config.grouping) == (None, None, "user_day")
    assert error_of(optimizer={"dense": {"schedule": {"decay": "step"}}}).where == \
        "train.yaml: optimizer.dense.schedule.decay"
    assert "did you mean 'warmup_steps'" in error_of(
        optimizer={"dense": {"schedule": {"warmup": 10}}}).render()
    assert parse(early_stopping={"patience": 3}).early_stopping.patience == 3
    assert error_of(early_stopping={"patience": 0}).where == \
        "train.yaml: early_stopping.patience"
    assert error_of(threads=0).where == "train.yaml: threads"
    assert parse(grouping="request").grouping == "request"
    assert error_of(grouping="user").where == "train.yaml: grouping"


def test_errors_found_after_validation_name_the_file_and_equal_configs_stay_equal():
    config = parse()
    assert config.where("data.validation_days") == "train.yaml: data.validation_days"
    assert parse_config({**BASE}, plugins=PLUGINS, base=Path("/cfg")).where("tasks") == "tasks"
    assert parse_config({**BASE}, plugins=PLUGINS, base=Path("/cfg")) == config


# ---------------------------------------------------------------- hostile files and values

def load_error(path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, plugins=PLUGINS)
    return info.value


def test_a_file_over_the_size_cap_is_refused_before_it_is_parsed(tmp_path):
    import time

    from dv365.model.config import MAX_CONFIG_BYTES

    path = tmp_path / "big.yaml"
    path.write_text("steps: 1\ntasks:\n" + "- a\n" * 8_000_000)  # 32 MB
    start = time.perf_counter()
    err = load_error(path)
    assert time.perf_counter() - start < 10
    assert err.where == str(path) and f"{MAX_CONFIG_BYTES:,} bytes" in err.message
    assert err.exit_code == 2 and "\n" not in err.render()


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    import time

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines + ["spec: *a8", "data: d", "out: o", "steps: 1"]) + "\n")
    start = time.perf_counter()
    err = load_error(path)
    assert time.perf_counter() - start < 10
    assert err.where.startswith(f"{path}:") and "aliases expanded" in err.message
    (tmp_path / "loop.yaml").write_text("a: &a [1, *a]\n")
    assert "refers to a value that holds it" in load_error(tmp_path / "loop.yaml").message


def test_small_aliases_and_merge_keys_still_load(tmp_path):
    from dv365.model.config import read_config_file

    path = tmp_path / "ok.yaml"
    path.write_text("lr: &lr 0.01\noptimizer: {sparse: {lr: *lr}, dense: {lr: *lr}}\n"
                    "base: &base {patience: 2}\nearly_stopping: {<<: *base, patience: 3}\n")
    raw, _, _ = read_config_file(path)
    assert raw["optimizer"]["dense"]["lr"] == 0.01 and raw["early_stopping"] == {"patience": 3}


def test_a_key_given_twice_is_refused_at_the_second(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("data: d\nspec: s\nout: o\nsteps: 4\noptimizer:\n  dense: {lr: 1}\n"
                    "steps: 5\n")
    err = load_error(path)
    assert err.where == f"{path}:7:1" and err.message == "duplicate key 'steps'"
    assert "first given at line 4" in err.render()
    path.write_text("data: d\nspec: s\nout: o\nsteps: 4\noptimizer: {dense: {lr: 1, lr: 2}}\n")
    assert load_error(path).where == f"{path}:5:28"


def test_a_config_must_be_a_readable_utf8_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("data: d\n# caf\xe9\n".encode("latin-1"))
    err = load_error(path)
    assert err.where == f"{path}:2:6" and "not UTF-8" in err.message
    path = tmp_path / "utf16.yaml"
    path.write_bytes("data: d\n".encode("utf-16"))
    assert "UTF-16" in load_error(path).message
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfdata: d\nspec: s\nout: o\nsteps: 1\n")
    assert load_config(path, plugins=PLUGINS).steps == 1
    err = load_error(tmp_path)
    assert err.where == str(tmp_path) and "folder, not a config file" in err.message


def test_seeds_are_non_negative_int64s():
    assert parse(seed=(1 << 63) - 1).seed == (1 << 63) - 1
    assert error_of(seed=-1).where == "train.yaml: seed"
    assert error_of(seed=1 << 70).where == "train.yaml: seed"


def test_counts_fit_an_int64_and_threads_and_days_are_bounded():
    for key in ("batch_size", "steps", "eval_every", "checkpoint_every", "sparse_min_rows"):
        assert error_of(**{key: 1 << 70}).where == f"train.yaml: {key}"
    assert error_of(item_tables={"media_id": 1 << 70}).where == \
        "train.yaml: item_tables.media_id"
    assert error_of(threads=1 << 40).where == "train.yaml: threads"
    assert error_of(data={"path": "d", "validation_days": 10 ** 6}).where == \
        "train.yaml: data.validation_days"


def test_tasks_names_at_least_one():
    err = error_of(tasks=[])
    assert err.where == "train.yaml: tasks" and "no task to train" in err.message


def test_reals_are_finite_and_the_gap_at_most_the_specs_limit():
    from dv365.model.config import MAX_GAP_HOURS

    for value in (float("inf"), float("nan")):
        assert error_of(gap_hours=value).where == "train.yaml: gap_hours"
        assert error_of(table_init_std=value).where == "train.yaml: table_init_std"
        assert error_of(alpha=value).where == "train.yaml: alpha"
        assert error_of(optimizer={"dense": {"lr": value}}).where == \
            "train.yaml: optimizer.dense.lr"
        assert error_of(optimizer={"sparse": {"lr": value}}).where == \
            "train.yaml: optimizer.sparse.lr"
    assert "finite" in error_of(gap_hours=float("inf")).message
    assert parse(gap_hours=MAX_GAP_HOURS).gap_hours == MAX_GAP_HOURS
    assert error_of(gap_hours=1e300).where == "train.yaml: gap_hours"
    assert error_of(optimizer={"dense": {"weight_decay": 1e300}}).where == \
        "train.yaml: optimizer.dense.weight_decay"


def test_the_eval_config_shares_the_finite_and_seed_checks():
    from dv365.experiments.eval_config import parse_eval_config

    base = {"data": "d", "out": "o", "export_days": 1,
            "foundation": {"checkpoint": "c.pt"}}

    def eval_error(**changes) -> ConfigError:
        with pytest.raises(ConfigError) as info:
            parse_eval_config({**base, **changes}, file="eval.yaml", plugins=PLUGINS)
        return info.value

    assert eval_error(downstream={"optimizer": {"dense": {"lr": float("inf")}}}).where == \
        "eval.yaml: downstream.optimizer.dense.lr"
    assert eval_error(downstream={"alpha": float("nan")}).where == "eval.yaml: downstream.alpha"
    assert eval_error(retrieval={"temperature": float("inf")}).where == \
        "eval.yaml: retrieval.temperature"
    assert eval_error(seeds=[0, -1]).where == "eval.yaml: seeds.1"


def test_out_and_the_cache_dir_must_be_folders_or_makeable(tmp_path):
    (tmp_path / "afile").write_text("x")
    path = tmp_path / "train.yaml"
    path.write_text("data: d\nspec: s\nout: afile\nsteps: 1\n")
    err = load_error(path)
    assert err.where == f"{path}: out" and "is a file, not a folder" in err.message
    path.write_text("data: d\nspec: s\nout: afile/run\nsteps: 1\n")
    assert "is under" in load_error(path).message
    path.write_text("data: {path: d, cache_dir: afile}\nspec: s\nout: runs/a\nsteps: 1\n")
    assert load_error(path).where == f"{path}: data.cache_dir"
    path.write_text("data: {path: d, cache_dir: cache}\nspec: s\nout: runs/a\nsteps: 1\n")
    assert load_config(path, plugins=PLUGINS).out == tmp_path / "runs" / "a"


def test_several_devices_take_the_first_as_device_and_the_jagged_path():
    config = parse(devices=["cuda:0", "cuda:1"])
    assert config.device == "cuda:0" and config.pooling == "ebc" and config.kernel == "cuda"
    assert parse(devices=["cpu", "cpu"]).sharding.plan == "auto"
    assert parse(devices=["cuda:1"]).pooling == "fused"  # one device: the single-GPU default
    assert parse(devices=["cpu", "cpu"], device="cpu").devices == ("cpu", "cpu")  # as stored
    plan = {"media": "table_wise", "author": "data_parallel"}
    assert parse(devices=["cpu", "cpu"], sharding={"plan": plan}).sharding.plan == plan


@pytest.mark.parametrize("changes, where, words", [
    ({"devices": ["cpu", "cpu"], "sharding": {"plan": {"media": "row_wise"}}},
     "sharding.plan.media", "row_wise sharding needs CUDA devices"),
    ({"devices": ["cpu", "cpu"], "pooling": "fused"}, "pooling", "use pooling: ebc"),
    ({"devices": ["cpu", "cpu"], "sharding": {"plan": {"media": "column_wise"}}},
     "sharding.plan.media", "use optimizer.sparse.type: adagrad"),
    ({"devices": ["cpu", "cpu"], "optimizer": {"sparse": {"type": "sparse_adam"}}},
     "optimizer.sparse.type", "no sharded (fused) form"),
    ({"devices": ["cpu", "cuda:0"]}, "devices", "one kind"),
    ({"devices": ["cuda:0", "cuda"]}, "devices", "a GPU is named twice"),
    ({"devices": ["cuda:0", "cuda:1"], "device": "cuda:1"}, "devices", "not both"),
    ({"devices": ["tpu"]}, "devices.0", "should match"),
])
def test_several_devices_refusals_are_one_line_at_the_key(changes, where, words):
    err = error_of(**changes)
    assert err.where == f"train.yaml: {where}" and words in err.render()
    assert "\n" not in err.render()


def test_row_wise_on_gpus_and_column_wise_under_adagrad_are_accepted():
    assert parse(devices=["cuda:0", "cuda:1"],
                 sharding={"plan": {"media": "row_wise"}}).sharding.plan["media"] == "row_wise"
    config = parse(devices=["cpu", "cpu"], sharding={"plan": {"media": "column_wise"}},
                   optimizer={"sparse": {"type": "adagrad"}})
    assert config.sharding.plan == {"media": "column_wise"}
