"""The downstream user side: HSTU over the user's recent events, with or without DV365.

The control's user representation is HSTU's output at the last of the user's recent events
(:meth:`dv365.downstream.hstu.Hstu.last`). A DV365 adapter changes one thing, by where
it :attr:`~dv365.downstream.adapters.base.Adapter.feeds`:

* ``features``: its K vectors come out next to the user representation (a ranker
  concatenates them with its other sparse embeddings);
* ``sequence``: its K tokens go in front of the events, so HSTU attends to them from every
  position;
* ``user``: it combines the user representation with the DV365 vectors (GateNet).
"""

from __future__ import annotations

import torch
from torch import nn

from dv365.downstream.adapters.base import Adapter
from dv365.downstream.adapters.hstu_prepend import prepend_jagged
from dv365.downstream.hstu import Hstu
from dv365.downstream.hstu_options import HstuOptions
from dv365.downstream.inputs import Sequences
from dv365.downstream.tokens import ItemEmbeddings

DV365Input = tuple[torch.Tensor, torch.Tensor]  # (vectors [B, N, D], found [B])


class UserTower(nn.Module):
    """``forward(sequences, dv365) -> (user [B, d], features [B, K, d] or None)``.

    ``recent`` is the most events a sequence holds; ``adapter`` (optional) reads the DV365
    input ``dv365``.
    """

    def __init__(self, options: HstuOptions, items: ItemEmbeddings, *, recent: int,
                 adapter: Adapter | None = None):
        super().__init__()
        self.items = items
        self.adapter = adapter
        self.feeds = adapter.feeds if adapter is not None else None
        extra = int(adapter.tokens) if self.feeds == "sequence" else 0
        self.hstu = Hstu(options.model_copy(update={"max_len": recent + extra}))

    def forward(self, sequences: Sequences, dv365: DV365Input | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.adapter is not None and dv365 is None:
            raise ValueError("this user tower has an adapter: give it the DV365 input")
        values = self.items.events(sequences)
        offsets, timestamps = sequences.offsets, sequences.timestamps
        if self.feeds == "sequence":
            tokens = self.adapter(*dv365)
            # The tokens take the time of the user's first recent event (the request's when
            # there is none): they sit at the sequence's start, and time never runs back.
            first = sequences.query_ts
            if timestamps.numel():
                starts = offsets[:-1].clamp(max=timestamps.numel() - 1)
                first = torch.where(offsets[1:] > offsets[:-1], timestamps[starts], first)
            stamps = first.view(-1, 1, 1).expand(-1, tokens.shape[1], 1)
            values, new_offsets = prepend_jagged(tokens, values, offsets)
            timestamps, _ = prepend_jagged(stamps, timestamps.view(-1, 1), offsets)
            offsets, timestamps = new_offsets, timestamps.view(-1)
        user, _ = self.hstu.last(values, offsets, timestamps, sequences.query_ts)
        if self.feeds == "user":
            return self.adapter(*dv365, user), None
        if self.feeds == "features":
            return user, self.adapter(*dv365)
        return user, None
