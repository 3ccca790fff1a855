"""The pipeline config: strict keys, one-line errors at ``file: key``, paths relative to the
file, the train config's data replaced by the pipeline's."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dv365.errors import ConfigError
from dv365.pipeline.config import load_pipeline_config

ROOT = Path(__file__).resolve().parents[2]


def _write(folder: Path, **config) -> Path:
    base = {"data": "data", "store": "lmdb://store", "train": str(ROOT / "configs/demo.yaml")}
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump({**base, **config}))
    return path


def test_paths_are_relative_to_the_file_and_defaults_fill_in(tmp_path):
    config = load_pipeline_config(_write(tmp_path))
    assert config.data == tmp_path / "data"
    assert config.store == f"lmdb://{tmp_path / 'store'}"
    assert config.landing_dir == tmp_path / "data" / "incoming"
    assert config.state_path == tmp_path / "pipeline" / "pipeline.sqlite"
    assert config.retrain.every_days == 3 and config.codec == "int4" and config.gc_keep == 3
    train = config.train_config  # configs/demo.yaml, trained on the pipeline's data
    assert train.data.path == tmp_path / "data" and train.data.validation_days == 3
    assert train.out == (ROOT / "build/demo/runs/fsa").resolve()


def test_an_inline_train_config_is_read_relative_to_the_pipeline_file(tmp_path):
    config = load_pipeline_config(_write(
        tmp_path, train={"spec": str(ROOT / "slices/minimal.slice"), "out": "run",
                         "steps": 4, "data": {"validation_days": 1}},
        state="state.sqlite", retrain={"every_cycles": 2}))
    assert config.train_config.out == tmp_path / "run"
    assert config.train_config.data.path == tmp_path / "data"
    assert config.state_path == tmp_path / "state.sqlite"


@pytest.mark.parametrize("change, message", [
    ({"retrian": {}}, "pipeline.yaml: retrian: error: unknown key (did you mean 'retrain'?)"),
    ({"retrain": {"every_cycles": 2, "every_days": 1}},
     "pipeline.yaml: retrain: error: give exactly one of every_cycles and every_days"),
    ({"retrain": {"every_cycles": 0}}, "pipeline.yaml: retrain.every_cycles: error:"),
    ({"store": "build/store"}, "pipeline.yaml: store: error: 'build/store' is not a store URI"),
    ({"export": {"device": "tpu"}}, "pipeline.yaml: export.device: error:"),
    ({"train": {"steps": 4}}, "pipeline.yaml: train: spec: error: missing key"),
    ({"train": 3}, "pipeline.yaml: train: error: a dv365 train config file"),
    ({"data": None}, "pipeline.yaml: data: error:"),
])
def test_mistakes_are_one_line_errors_at_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError) as error:
        load_pipeline_config(_write(tmp_path, **change))
    text = error.value.render()
    assert message in text and "\n" not in text
