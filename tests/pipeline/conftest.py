"""Shared by the pipeline tests: one small generated data set, a tiny model, a config writer.

A pipeline folder holds ``data/`` (a copy of the generated data), ``pipeline.yaml`` (a tiny
FSA model trained 6 steps a training, an LMDB store, int4), and, once cycles ran, ``store/``,
``run/``, ``cache/`` and ``pipeline/pipeline.sqlite``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from dv365.data.synth import SynthConfig, synthesize
from dv365.data.synth_extend import extend
from dv365.pipeline.config import PipelineConfig, load_pipeline_config
from dv365.pipeline.cycle import CycleReport, run_cycle
from tests.model.conftest import tiny_spec


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> Path:
    """40 users, ~1,000 events each over the year (active on about one day in nine),
    examples over its last 4 days."""
    out = tmp_path_factory.mktemp("pipeline-data") / "data"
    synthesize(out, SynthConfig(users=40, seed=3, mean_events=1_000, max_events=3_000, days=4,
                                examples_per_user=24))
    return out


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Checkpoint hashes are remembered in a cache of the test run."""
    monkeypatch.setenv("DV365_CACHE_DIR", str(tmp_path_factory.mktemp("hash-cache")))


def write_pipeline(folder: Path, generated: Path, **overrides) -> Path:
    """A pipeline folder over a fresh copy of the generated data; its config's path."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(generated, folder / "data")
    (folder / "spec.json").write_text(tiny_spec().to_json())
    config = {
        "data": "data",
        "store": "lmdb://store",
        "retrain": {"every_cycles": 2},
        "codec": "int4",
        "gc_keep": 2,
        "verify_sample": 8,
        "cache_dir": "cache",
        "export": {"shard_size": 8},
        "train": {
            "spec": "spec.json", "out": "run", "data": {"validation_days": 1},
            "encoder": {"type": "fsa"},
            "backbone": {"type": "dlrm", "embedding_dim": 4, "dense_layers": [8],
                         "over_layers": [16]},
            "batch_size": 32, "steps": 6, "eval_every": 3, "checkpoint_every": 2,
        },
    }
    config.update(overrides)
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def cycle(path: Path, **options) -> CycleReport:
    return run_cycle(load_pipeline_config(path), **options)


def land(config: PipelineConfig | Path, days: int = 1) -> None:
    """A day (or more) of new events in the landing folder."""
    if isinstance(config, Path):
        config = load_pipeline_config(config)
    extend(config.data, days, config.landing_dir)


def outputs(report: CycleReport, step: str) -> dict:
    return next(s for s in report.steps if s.name == step).outputs
