"""Item and event embeddings of the downstream models.

An event of a user's recent sequence becomes one token, the sum of its item's id embeddings
(media, author, topic: hashed rows) and its action's embedding; an item of the catalogue
becomes the sum of the same id embeddings and its media type's. The sequence model and the
retrieval item tower share the id tables, so an item reads the same in a history as it does
as a candidate.
"""

from __future__ import annotations

import torch
from torch import nn

from dv365.downstream.inputs import Sequences
from dv365.model.examples import HASHED_ITEM_COLUMNS


class ItemEmbeddings(nn.Module):
    """Id tables (``item_rows``: column -> rows) of width ``dim``, plus ``num_actions`` action
    and ``num_media_types`` media-type embeddings (row 0: none)."""

    def __init__(self, dim: int, item_rows: dict[str, int], *, num_actions: int,
                 num_media_types: int, init_std: float = 0.05):
        super().__init__()
        self.ids = nn.ModuleDict({c: nn.Embedding(item_rows[c], dim, sparse=True)
                                  for c in HASHED_ITEM_COLUMNS})
        self.action = nn.Embedding(num_actions + 1, dim)
        self.media_type = nn.Embedding(num_media_types + 1, dim)
        for table in (*self.ids.values(), self.action, self.media_type):
            nn.init.normal_(table.weight, std=init_std)

    def events(self, sequences: Sequences) -> torch.Tensor:
        """One token per event, ``[T, dim]``."""
        out = self.action(sequences.action)
        for c in HASHED_ITEM_COLUMNS:
            out = out + self.ids[c](sequences.rows[c])
        return out

    def items(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """One vector per item, ``[I, dim]``, from its id rows and media-type code (-1
        null)."""
        out = self.media_type(features["media_type"] + 1)
        for c in HASHED_ITEM_COLUMNS:
            out = out + self.ids[c](features[c])
        return out
