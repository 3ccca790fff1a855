"""A small generated dataset shared by the downstream tests: 60 users with a few hundred
events each and 24 labelled impressions over the last 6 days."""

from __future__ import annotations

import pytest

from dv365.data.synth import SynthConfig, synthesize
from dv365.data.timeline import TimelineStore
from dv365.model.config import ItemTables
from dv365.model.examples import load_examples

ITEM_ROWS = ItemTables(media_id=4096, author_id=1024, topic_id=256).model_dump()


@pytest.fixture(scope="session")
def downstream_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("downstream")
    synthesize(root / "data", SynthConfig(users=60, seed=4, mean_events=300, max_events=900,
                                          days=6, examples_per_user=24))
    store = TimelineStore.open(root / "data" / "events", cache_dir=root / "cache")
    from dv365.data.validate import DatasetReader

    tasks = list(DatasetReader(root / "data" / "examples", "examples").meta.tasks)
    examples, meta, _ = load_examples(root / "data" / "examples", store, tasks, ITEM_ROWS,
                                      "request")
    return root / "data", store, examples, meta
