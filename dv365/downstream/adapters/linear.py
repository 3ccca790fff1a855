"""``linear``: DV365 vectors as extra sparse-feature embeddings of a ranker."""

from __future__ import annotations

from dv365.downstream.adapters.base import ProjectedAdapter
from dv365.downstream.adapters.options import LinearOptions


class LinearAdapter(ProjectedAdapter):
    """``E = reshape(W vec(X') + b)``, ``[B, N, D] -> [B, K, out_dim]``, where ``X'`` is the
    user's vectors (the learned missing input when not found) and ``K = outputs``. The K rows
    are concatenated with the ranker's other sparse embeddings (the paper's best ranking
    adapter)."""

    def __init__(self, options: LinearOptions, *, num_vectors: int, dim: int, out_dim: int):
        super().__init__(num_vectors=num_vectors, dim=dim, out_dim=out_dim,
                         tokens=options.outputs)
