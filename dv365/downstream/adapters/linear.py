"""``linear``: DV365 vectors as extra sparse-feature embeddings of a ranker."""

from __future__ import annotations

import torch

from dv365.downstream.adapters.base import Adapter, Projection
from dv365.downstream.adapters.options import LinearOptions


class LinearAdapter(Adapter):
    """``E = reshape(W vec(X') + b)``, ``[B, N, D] -> [B, K, out_dim]``, where ``X'`` is the
    user's vectors (the learned missing input when not found). The K rows are concatenated
    with the ranker's other sparse embeddings (the paper's best ranking adapter)."""

    def __init__(self, options: LinearOptions, *, num_vectors: int, dim: int, out_dim: int):
        super().__init__(num_vectors=num_vectors, dim=dim, out_dim=out_dim)
        self.num_outputs = options.outputs
        self.projection = Projection(num_vectors=num_vectors, dim=dim, out_dim=out_dim,
                                     tokens=options.outputs)

    def forward(self, vectors: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
        return self.projection(self.fill_missing(vectors, found))
