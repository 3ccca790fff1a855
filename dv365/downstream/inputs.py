"""Batches of downstream examples: each example's recent events up to its request, the
target item's features, the dense context and the labels, as tensors.

Downstream models see the user's events up to the request itself (strictly before
``request_ts``; no 24h gap): only the DV365 embedding is computed offline and stale. The
last ``recent`` (K) events of each example come from the timeline store through one compiled
gather (:func:`dv365.kernels.recent.recent_events`), jagged: a user with 40 events has 40
tokens, not K.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dv365.data.event_store import EventStore
from dv365.downstream.catalogue import Catalogue
from dv365.kernels.recent import recent_events
from dv365.model.examples import HASHED_ITEM_COLUMNS, Examples, item_rows_of

EVENT_COLUMNS = ("ts", *HASHED_ITEM_COLUMNS, "action")


@dataclass(frozen=True)
class Sequences:
    """A batch's event sequences, jagged: example ``b`` owns events
    ``offsets[b]:offsets[b + 1]`` (oldest first) of ``timestamps`` (ms), ``rows`` (id column
    -> hashed table rows) and ``action`` (the action's code + 1; 0 for none); ``query_ts`` is
    each example's request time."""

    offsets: torch.Tensor
    timestamps: torch.Tensor
    rows: dict[str, torch.Tensor]
    action: torch.Tensor
    query_ts: torch.Tensor


@dataclass(frozen=True)
class Batch:
    """Examples ``index`` (into the examples the builder holds) as model input; ``user_ids``
    are the data's ids (the store's keys), ``request_ts`` the requests' times (ms);
    ``target`` the target item's catalogue row, when the builder has a catalogue."""

    index: np.ndarray
    user_ids: np.ndarray
    request_ts: np.ndarray
    sequences: Sequences
    sparse: dict[str, torch.Tensor]
    dense: torch.Tensor
    labels: torch.Tensor
    target: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.index)


class BatchBuilder:
    """Builds :class:`Batch` es of ``examples`` over ``store``, each sequence the last
    ``recent`` events before the request; ids hashed into ``item_rows`` tables."""

    def __init__(self, store: EventStore, examples: Examples, *, recent: int,
                 item_rows: dict[str, int], device: torch.device | str = "cpu",
                 catalogue: Catalogue | None = None):
        if recent < 1:
            raise ValueError(f"recent must be >= 1, got {recent}")
        self.store, self.examples, self.recent = store, examples, recent
        self.item_rows = dict(item_rows)
        self.device = torch.device(device)
        self.targets = (catalogue.index_of(examples.media_id) if catalogue is not None
                        else None)

    def __call__(self, index: np.ndarray) -> Batch:
        ex, dev = self.examples, self.device
        index = np.asarray(index, dtype=np.int64)
        events = recent_events(self.store, ex.user_index[index], ex.request_ts[index],
                               self.recent, EVENT_COLUMNS)
        cols = events.columns
        rows = {c: torch.from_numpy(item_rows_of(c, cols[c], self.item_rows[c])).to(dev)
                for c in HASHED_ITEM_COLUMNS}
        action = torch.from_numpy(cols["action"].astype(np.int64) + 1).to(dev)
        sequences = Sequences(torch.from_numpy(events.offsets).to(dev),
                              torch.from_numpy(np.asarray(cols["ts"], np.int64)).to(dev),
                              rows, action,
                              torch.from_numpy(ex.request_ts[index].copy()).to(dev))
        sparse = {k: torch.from_numpy(v[index]).to(dev) for k, v in ex.sparse.items()}
        target = (None if self.targets is None
                  else torch.from_numpy(self.targets[index]).to(dev))
        return Batch(index, self.store.user_ids[ex.user_index[index]], ex.request_ts[index],
                     sequences, sparse,
                     torch.from_numpy(ex.dense[index]).to(dev),
                     torch.from_numpy(ex.labels[index]).to(dev), target)
