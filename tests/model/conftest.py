"""Shared fixtures of the model tests: one tiny generated data set and a tiny compiled spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from dv365.data.synth import SynthConfig, synthesize
from dv365.durations import DAY_MS
from dv365.slices.ir import Compare, FieldRef, Hashing, Member, Slice, SpecIR, Table


def tiny_spec(dim: int = 4, gap_ms: int = DAY_MS) -> SpecIR:
    """Eight slices over three shared tables: windows, a dwell predicate, explicit actions."""
    tables = (Table(name="media", id_column="media_id", num_rows=512, dim=dim,
                    hashing=Hashing(kind="hash")),
              Table(name="author", id_column="author_id", num_rows=128, dim=dim,
                    hashing=Hashing(kind="hash")),
              Table(name="topic", id_column="topic_id", num_rows=64, dim=dim))
    slices = []
    for column, table in (("media_id", "media"), ("author_id", "author"), ("topic_id", "topic")):
        slices.append(Slice(name=f"{table}_7d", timeline="implicit", id_column=column,
                            table=table, window_ms=7 * DAY_MS))
        slices.append(Slice(name=f"{table}_long_watch", timeline="implicit", id_column=column,
                            table=table, predicate=Compare(expr=FieldRef(field="dwell_time"),
                                                           op=">", value=10.0)))
    for column, table in (("media_id", "media"), ("topic_id", "topic")):
        slices.append(Slice(name=f"{table}_liked", timeline="explicit", id_column=column,
                            table=table, predicate=Member(field="action",
                                                          values=("like", "share", "save"))))
    return SpecIR(gap_ms=gap_ms, tables=tables, slices=tuple(slices))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A generated data folder: 40 users, ~300 events each, examples over 4 days."""
    out = tmp_path_factory.mktemp("model-data") / "data"
    synthesize(out, SynthConfig(users=40, seed=3, mean_events=300, max_events=800, days=4,
                                examples_per_user=24))
    return out


@pytest.fixture(scope="session")
def tiny_spec_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model-spec") / "spec.json"
    path.write_text(tiny_spec().to_json())
    return path


def write_config(folder: Path, data: Path, spec: Path, data_options: dict | None = None,
                 **overrides) -> Path:
    """A training config YAML for the tiny data (small model, few steps); ``data_options``
    replace keys of its ``data:`` section."""
    import yaml

    config = {
        "data": {"path": str(data), "cache_dir": str(folder / "cache"),
                 **(data_options or {"validation_days": 1})},
        "spec": str(spec),
        "out": str(folder / "run"),
        "encoder": {"type": "fsa"},
        "backbone": {"type": "dlrm", "embedding_dim": 4, "dense_layers": [8],
                     "over_layers": [16]},
        "batch_size": 32,
        "steps": 6,
        "eval_every": 3,
        "checkpoint_every": 2,
    }
    config.update(overrides)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
