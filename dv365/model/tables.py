"""The slice embedding tables: a torchrec ``EmbeddingBagCollection`` built from the spec's IR.

One ``EmbeddingBagConfig`` per IR table whose ``feature_names`` are the slices that share it
(the paper's table-sharing groups), pooled with SUM: the jagged kernels emit weights already
normalized per bag (``1/count`` for mean, ``w/sum(w)`` for weighted mean), so a weighted SUM
is the slice's mean -- and stays correct under torchrec's row-wise sharding, which would turn
MEAN into SUM. The pooled output is reordered from torchrec's table-major order to the IR's
slice order, ``[B, S, D]``. An empty slice pools to zeros.

The same tables can instead pool a :class:`HistoryBatch` through the fused kernel
(:func:`dv365.kernels.autograd.fused_pool`: pooled output straight from the events, a
scatter-add backward into dense gradients), the ``pooling: fused`` training path; the
parameters, and so checkpoints, are the same either way.

Gradients: a batch looks up millions of (event, slice) pairs but touches far fewer distinct
rows. A sparse gradient holds one entry per lookup and must be coalesced, which costs more than
the whole forward pass; a dense gradient accumulates in place. So tables with fewer than
``sparse_min_rows`` rows get dense gradients (a 32k x 16 table is 2 MB), larger ones sparse
gradients. The table optimizer (row-wise Adagrad) updates only the touched rows either way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor
from torchrec.modules.embedding_configs import PoolingType

from dv365.data.event_store import EventStore
from dv365.slices.ir import SpecIR

# KeyedJaggedTensor asks torch.fx whether it is being traced, and torch logs a warning about
# that API on first use: noise on every `dv365 train`, nothing a user can act on.
logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)


@dataclass(frozen=True)
class HistoryBatch:
    """A batch of histories as the fused kernel reads them: store rows and request times."""

    store: EventStore
    users: np.ndarray
    request_ts: np.ndarray
    backend: str = "cpu"


class SliceTables(nn.Module):
    """``forward(kjt | HistoryBatch) -> [B, S, D]`` pooled slice vectors in IR slice order."""

    def __init__(self, ir: SpecIR, *, init_std: float = 0.1, sparse_min_rows: int = 1 << 20,
                 device: str | torch.device = "cpu"):
        super().__init__()
        self.ir = ir
        self.slice_names = ir.slice_names
        self.dim = ir.dim
        configs = [
            EmbeddingBagConfig(name=t.name, embedding_dim=t.dim, num_embeddings=t.num_rows,
                               feature_names=[s.name for s in ir.slices_of_table(t.name)],
                               pooling=PoolingType.SUM)
            for t in ir.tables if ir.slices_of_table(t.name)
        ]
        self.ebc = EmbeddingBagCollection(tables=configs, is_weighted=True,
                                          device=torch.device(device))
        for bag in self.ebc.embedding_bags.values():
            bag.sparse = bag.num_embeddings >= sparse_min_rows
            nn.init.normal_(bag.weight, std=init_std)
        table_major = [f for c in configs for f in c.feature_names]
        self.table_major = table_major
        self._sharded_order: tuple[list[str], torch.Tensor] | None = None
        position = {name: i for i, name in enumerate(table_major)}
        self.register_buffer("order", torch.tensor([position[n] for n in self.slice_names],
                                                   dtype=torch.int64,
                                                   device=torch.device(device)),
                             persistent=False)

    def forward(self, kjt: KeyedJaggedTensor | HistoryBatch) -> torch.Tensor:
        if isinstance(kjt, HistoryBatch):
            return self.pool_fused(kjt)
        keyed = self.ebc(kjt)
        pooled = keyed.values()  # [B, S * D], table-major feature order
        batch = pooled.shape[0]
        return pooled.view(batch, -1, self.dim).index_select(1, self._order_of(keyed.keys()))

    def _order_of(self, keys: list[str]) -> torch.Tensor:
        """Where each IR slice is among pooled ``keys``: the table-major order of this EBC,
        or the order a sharded one (torchrec's DMP, grouped by sharding) returns."""
        if keys == self.table_major:
            return self.order
        if self._sharded_order is None or self._sharded_order[0] != keys:
            position = {name: i for i, name in enumerate(keys)}
            self._sharded_order = (list(keys), torch.tensor(
                [position[n] for n in self.slice_names], dtype=torch.int64,
                device=self.order.device))
        return self._sharded_order[1]

    def pool_fused(self, batch: HistoryBatch) -> torch.Tensor:
        """The fused kernel's pooled output, differentiable in the tables."""
        from dv365.kernels.autograd import fused_pool

        bags = self.ebc.embedding_bags
        device = self.order.device
        # A table no slice reads has no bag; the kernel still takes one array per IR table.
        tables = [bags[t.name].weight if t.name in bags else
                  torch.zeros((t.num_rows, t.dim), device=device) for t in self.ir.tables]
        pooled, _ = fused_pool(self.ir, batch.store, batch.users, batch.request_ts, tables,
                               batch.backend)
        return pooled
