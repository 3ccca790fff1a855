"""The foundation model (dv365.model.foundation): the exported user embedding, and rebuilding
a trained model from its checkpoint alone."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from dv365.errors import ConfigError, DataError
from dv365.model.checkpoint import latest_checkpoint
from dv365.model.config import load_config
from dv365.model.foundation import ModelInputs, embed_users, load_foundation_model
from dv365.model.train import Trainer
from dv365.plugins import load_plugins
from tests.model.conftest import tiny_spec, write_config

PLUGINS = load_plugins(autoload=False)


@pytest.mark.parametrize("view", ["token", "dim"])
def test_exported_embeddings_keep_users_apart_in_any_batching(tmp_path, tiny_data,
                                                              tiny_spec_file, view):
    config = write_config(tmp_path, tiny_data, tiny_spec_file,
                          encoder={"type": "fsa", "view": view})
    trainer = Trainer(load_config(config), plugins=PLUGINS)
    users = np.arange(min(12, trainer.store.num_users))
    when = int(trainer.store.ts.max()) + 1
    # The reference kernel: no code generation in a test about batching.
    batched = embed_users(trainer.model, trainer.ir, trainer.store, users, when,
                          batch_size=5, backend="reference")
    encoder = trainer.model.encoder
    assert batched.shape == (len(users), encoder.num_outputs * encoder.dim)
    one_by_one = torch.cat([embed_users(trainer.model, trainer.ir, trainer.store, [u], when,
                                        backend="reference") for u in users])
    torch.testing.assert_close(batched, one_by_one, rtol=1e-4, atol=1e-5)
    assert batched.double().std(0).median() > 1e-3  # users differ


def test_a_model_without_a_user_tower_has_no_embedding(tmp_path, tiny_data, tiny_spec_file):
    trainer = Trainer(load_config(write_config(tmp_path, tiny_data, tiny_spec_file,
                                               encoder=None)), plugins=PLUGINS)
    with pytest.raises(ValueError, match="without a user tower"):
        embed_users(trainer.model, trainer.ir, trainer.store, [0], 0)


# ------------------------------------------------------------------ rebuild from a checkpoint
@dataclass
class _Run:
    """A finished tiny run whose data folder is gone, and what its model computed."""

    trainer: Trainer
    checkpoint: Path
    batch: tuple  # the model's inputs for some held-out examples
    outputs: torch.Tensor
    users: np.ndarray
    when: np.ndarray
    embeddings: torch.Tensor


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_data, tiny_spec_file) -> _Run:
    folder = tmp_path_factory.mktemp("finished-run")
    data = folder / "data"
    shutil.copytree(tiny_data, data)
    trainer = Trainer(load_config(write_config(folder, data, tiny_spec_file, steps=3),
                                  plugins=PLUGINS), plugins=PLUGINS)
    trainer.run()
    held = trainer.eval_set
    batch = trainer._inputs(held, np.flatnonzero(held.group < 6))[:4]
    trainer.model.eval()
    with torch.no_grad():
        outputs = trainer.model(*batch)
    users = np.arange(trainer.store.num_users)
    when = np.full(len(users), int(trainer.store.ts.max()) + 1) - np.arange(len(users)) * 3_600_000
    embeddings = embed_users(trainer.model, trainer.ir, trainer.store, users, when,
                             backend="reference")
    # Rebuilding must not need the examples (nor the events: the store is the cached copy).
    shutil.rmtree(data)
    return _Run(trainer, latest_checkpoint(trainer.config.out), batch, outputs, users, when,
                embeddings)


def test_a_checkpoint_rebuilds_the_trained_model_without_its_data(finished_run):
    run = finished_run
    loaded = load_foundation_model(run.checkpoint, plugins=PLUGINS)
    assert (loaded.path, loaded.step) == (run.checkpoint, 3)
    assert loaded.config == run.trainer.config and loaded.ir == run.trainer.ir
    assert loaded.inputs == run.trainer.inputs
    assert loaded.inputs.num_dense == run.trainer.train_set.dense.shape[1] > 0
    assert not loaded.model.training
    expected = run.trainer.model.state_dict()
    got = loaded.model.state_dict()
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    with torch.no_grad():
        assert torch.equal(loaded.model(*run.batch), run.outputs)
    embeddings = embed_users(loaded.model, loaded.ir, run.trainer.store, run.users, run.when,
                             backend="reference")
    assert torch.equal(embeddings, run.embeddings)


def test_rebuilding_leaves_the_callers_random_state_alone(finished_run):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_foundation_model(finished_run.checkpoint, plugins=PLUGINS)
    assert torch.equal(torch.rand(3), expected)


def test_rebuilding_refuses_a_spec_the_checkpoint_was_not_trained_with(finished_run):
    path = finished_run.checkpoint
    assert load_foundation_model(path, plugins=PLUGINS, spec=finished_run.trainer.ir).step == 3
    with pytest.raises(ConfigError, match="trained with spec") as info:
        load_foundation_model(path, plugins=PLUGINS, spec=tiny_spec(gap_ms=0))
    assert info.value.where == str(path) and "\n" not in info.value.render()


def _rewritten(run: _Run, folder: Path, change) -> Path:
    """A copy of the run's checkpoint with its payload changed by ``change(raw)``."""
    raw = torch.load(run.checkpoint, weights_only=True)
    change(raw)
    path = folder / run.checkpoint.name
    torch.save(raw, path)
    return path


def test_a_version_1_checkpoint_is_refused_with_what_it_lacks(finished_run, tmp_path):
    def to_version_1(raw):
        raw["version"] = 1
        del raw["model_inputs_json"]

    path = _rewritten(finished_run, tmp_path, to_version_1)
    with pytest.raises(DataError, match="format version 1 does not record the model's inputs"
                       ) as info:
        load_foundation_model(path, plugins=PLUGINS)
    assert info.value.where == str(path) and "\n" not in info.value.render()


def test_weights_that_do_not_fit_the_rebuilt_model_are_refused(finished_run, tmp_path):
    path = _rewritten(finished_run, tmp_path, lambda raw: raw["model"].pop("task_bias"))
    with pytest.raises(DataError, match="weights do not fit .*: missing task_bias") as info:
        load_foundation_model(path, plugins=PLUGINS)
    assert info.value.where == str(path) and "\n" not in info.value.render()

    def widen(raw):
        raw["model"]["task_bias"] = torch.zeros(len(raw["model"]["task_bias"]) + 1)

    with pytest.raises(DataError, match="size mismatch for task_bias"):
        load_foundation_model(_rewritten(finished_run, tmp_path, widen), plugins=PLUGINS)


def test_a_checkpoint_of_a_plugin_not_loaded_names_the_file(finished_run):
    without_fsa = load_plugins(autoload=False)
    del without_fsa.encoders.entries["fsa"]
    with pytest.raises(ConfigError, match="no encoder named 'fsa'") as info:
        load_foundation_model(finished_run.checkpoint, plugins=without_fsa)
    assert info.value.where == f"{finished_run.checkpoint}: encoder.type"


def test_a_run_resumes_from_a_version_1_checkpoint_and_then_writes_a_rebuildable_one(
        tmp_path, tiny_data, tiny_spec_file):
    def config(steps):
        return load_config(write_config(tmp_path, tiny_data, tiny_spec_file, steps=steps,
                                        checkpoint_every=2), plugins=PLUGINS)

    Trainer(config(2), plugins=PLUGINS).run()
    path = latest_checkpoint(config(2).out)
    raw = torch.load(path, weights_only=True)
    raw["version"] = 1
    del raw["model_inputs_json"]
    torch.save(raw, path)
    result = Trainer(config(4), plugins=PLUGINS).run()
    assert (result.resumed_from, result.step) == (2, 4)
    assert load_foundation_model(latest_checkpoint(config(4).out), plugins=PLUGINS).step == 4


def test_model_inputs_round_trip_and_malformed_ones_are_refused(finished_run):
    inputs = finished_run.trainer.inputs
    assert ModelInputs.from_json(inputs.to_json()) == inputs
    assert [t.name for t in inputs.tasks] == [t.name for t in finished_run.trainer.tasks]
    with pytest.raises(ValueError, match="malformed model inputs"):
        ModelInputs.from_json('{"tasks": [], "num_dense": 2}')
    with pytest.raises(ValueError, match="task kind 'ordinal'"):
        ModelInputs.from_json('{"tasks": [{"name": "x", "kind": "ordinal", "log1p": false}], '
                              '"item_features": [], "num_dense": 0}')


# ------------------------------------------------------------------ the spec's vocabulary
RATED_VOCAB = {"media_type": ["movie"], "surface": ["catalog"],
               "action": ["like", "dislike", "rate"]}


def _rated_config(tmp_path: Path, spec: Path):
    """A config over an events dataset declaring the vocabulary a MovieLens import writes."""
    import pyarrow.parquet as pq

    from dv365.data.schema import DatasetMeta, events_schema

    events = tmp_path / "data" / "events"
    events.mkdir(parents=True)
    pq.write_table(events_schema(DatasetMeta(kind="events", vocab=RATED_VOCAB)).empty_table(),
                   events / "part-00000.parquet")
    return load_config(write_config(tmp_path / "cfg", tmp_path / "data", spec),
                       plugins=PLUGINS)


def test_a_slice_spec_is_compiled_against_the_vocabulary_of_the_configs_data(tmp_path):
    from dv365.model.foundation import resolve_spec

    spec = tmp_path / "ratings.slice"
    spec.write_text("table media: media_id, rows 64, dim 4\n"
                    "slice disliked: from explicit where action == dislike pool media_id "
                    "into media mean\n"
                    "slice rated: from explicit where action in [rate, like] pool media_id "
                    "into media mean\n")
    ir = resolve_spec(_rated_config(tmp_path, spec))
    assert ir.vocab["action"] == ("like", "dislike", "rate")
    assert [s.predicate.values for s in ir.slices] == [("dislike",), ("like", "rate")]


def test_a_compiled_ir_naming_a_value_the_data_does_not_declare_is_refused(tmp_path,
                                                                          monkeypatch):
    from dv365.model.foundation import resolve_spec
    from dv365.slices.compile import compile_spec

    source = ("table media: media_id, rows 64, dim 4\n"
              "slice liked: from explicit where action == like pool media_id into media mean\n")
    hidden = source + ("slice hidden: from explicit where action in [hide, like] "
                       "pool media_id into media mean\n")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "liked.ir.json").write_text(compile_spec(source).to_json())
    (tmp_path / "build" / "hidden.ir.json").write_text(compile_spec(hidden).to_json())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PWD", raising=False)
    # compiled against the generator's vocabulary, naming only values the data declares
    liked = resolve_spec(_rated_config(tmp_path / "a", tmp_path / "build" / "liked.ir.json"))
    assert liked.slices[0].predicate.values == ("like",)
    with pytest.raises(DataError) as info:
        resolve_spec(_rated_config(tmp_path / "b", tmp_path / "build" / "hidden.ir.json"))
    text = info.value.render()
    assert "\n" not in text
    assert text.startswith("build/hidden.ir.json: error: slice 'hidden' filters on action "
                           "'hide', which the data does not declare")
    assert "give the .slice spec" in text and "dv365 compile SPEC --data DATA" in text
