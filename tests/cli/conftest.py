"""Shared by the command tests: a private timeline cache, and a tiny rated log.

The rated log has the shape of an imported MovieLens log: its own vocabulary (``movie``,
``catalog``, actions ``like, dislike, rate``), explicit events only, and examples at the
times of the ratings, on a few UTC days.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dv365.data.schema import DatasetMeta
from dv365.durations import DAY_MS, HOUR_MS, MINUTE_MS
from tests.data.conftest import write_events, write_examples

RATED_VOCAB = {"media_type": ["movie"], "surface": ["catalog"],
               "action": ["like", "dislike", "rate"]}
D0 = 20_100 * DAY_MS  # a UTC midnight in 2025

# user -> event times
RATED_EVENTS = {1: [D0 + HOUR_MS], 2: [D0 + 2 * DAY_MS + HOUR_MS], 3: [D0],
                4: [D0 + HOUR_MS]}
# (user, request time); user 9 has no events
RATED_EXAMPLES = [
    (1, D0 + DAY_MS + 30 * MINUTE_MS), (1, D0 + DAY_MS + 5 * HOUR_MS),
    (2, D0 + 3 * DAY_MS + 2 * HOUR_MS),
    (3, D0 + 4 * DAY_MS + HOUR_MS),
    (4, D0 + DAY_MS + 10 * MINUTE_MS), (4, D0 + DAY_MS + 6 * HOUR_MS),
    (4, D0 + DAY_MS + 7 * HOUR_MS),
    (9, D0 + 3 * DAY_MS),
]


@pytest.fixture(autouse=True)
def timeline_cache(tmp_path_factory, monkeypatch):
    """Timeline stores the commands build go to a folder of the test run."""
    monkeypatch.setenv("DV365_CACHE_DIR", str(tmp_path_factory.mktemp("timelines")))


def write_rated_log(root: Path) -> Path:
    """A data folder (events/, examples/) of the rated log."""
    rows = [(user, ts) for user, times in RATED_EVENTS.items() for ts in times]
    n = len(rows)
    actions = RATED_VOCAB["action"]
    write_events(root / "events", {
        "user_id": [u for u, _ in rows], "ts": [t for _, t in rows],
        "timeline": ["explicit"] * n, "media_id": list(range(n)), "author_id": [0] * n,
        "topic_id": [0] * n, "media_type": ["movie"] * n, "surface": ["catalog"] * n,
        "action": [actions[k % 3] for k in range(n)], "video_duration": [None] * n,
        "dwell_time": [None] * n,
    }, meta=DatasetMeta(kind="events", vocab=RATED_VOCAB, source="test"))
    m = len(RATED_EXAMPLES)
    write_examples(root / "examples", {
        "user_id": [u for u, _ in RATED_EXAMPLES], "request_ts": [t for _, t in RATED_EXAMPLES],
        "media_id": list(range(m)), "author_id": [0] * m, "topic_id": [0] * m,
        "media_type": ["movie"] * m, "surface": ["catalog"] * m,
        "label_like": [k % 2 for k in range(m)],
    }, meta=DatasetMeta(kind="examples", tasks={"like": "binary"}, source="test",
                        vocab={k: v for k, v in RATED_VOCAB.items() if k != "action"}))
    return root
