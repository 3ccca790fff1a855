"""The item catalogue retrieval ranks against: every item the data mentions, with the
features the item tower reads.

An item is a ``media_id``; its features are its ``author_id`` and ``topic_id`` (hashed into
their tables, as every model of the project hashes them) and its ``media_type`` code, taken
from the first event or example that mentions it. Retrieval's Hit Rate is measured against
all of them by brute force, the full catalogue and not a sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dv365.data.event_store import EventStore
from dv365.model.examples import Examples, item_rows_of

FEATURES = ("media_id", "author_id", "topic_id", "media_type")


@dataclass(frozen=True)
class Catalogue:
    """``media_id`` [I] ascending, unique raw ids; ``features`` name -> [I] table rows (ids
    hashed, ``media_type`` a code, -1 null)."""

    media_id: np.ndarray
    features: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.media_id)

    def index_of(self, media_id: np.ndarray) -> np.ndarray:
        """Each id's row in the catalogue (int64); -1 for an id it does not hold."""
        ids = np.asarray(media_id, dtype=np.int64)
        at = np.searchsorted(self.media_id, ids)
        inside = at < len(self.media_id)
        found = np.zeros(len(ids), bool)
        found[inside] = self.media_id[at[inside]] == ids[inside]
        return np.where(found, at, -1).astype(np.int64)

    @classmethod
    def of(cls, store: EventStore, examples: Examples,
           item_rows: dict[str, int]) -> "Catalogue":
        """Every item of the events in ``store`` and of ``examples`` (whose ``media_id`` is
        set), features from its first mention (events first)."""
        if examples.media_id is None:
            raise ValueError("the examples carry no media_id")
        events = store.columns
        ids = np.concatenate([np.asarray(events["media_id"], np.int64), examples.media_id])
        media, first = np.unique(ids, return_index=True)
        n_events = len(events["media_id"])
        from_events = first < n_events
        event_at, example_at = first[from_events], first[~from_events] - n_events
        features: dict[str, np.ndarray] = {}
        for name in FEATURES:
            out = np.empty(len(media), np.int64)
            if name == "media_type":
                out[from_events] = np.asarray(events[name])[event_at]
            else:
                out[from_events] = item_rows_of(name, np.asarray(events[name])[event_at],
                                                item_rows[name])
            out[~from_events] = examples.sparse[name][example_at]
            features[name] = out
        return cls(media, features)
