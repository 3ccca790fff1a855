"""What every adapter is: DV365 vectors ``[B, N, D]`` and the found mask ``[B]`` in.

A user the store has no embedding for (``found`` False) gets a learned "missing" input in
place of its vectors, so the downstream model learns what to do for such users instead of
seeing zeros it would take for an embedding.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import nn


class Adapter(nn.Module):
    """Base class of downstream adapters; subclasses implement ``forward(vectors, found)``.

    ``num_vectors`` (N) and ``dim`` (D) describe the stored embedding, ``out_dim`` the width
    the downstream model works in. ``missing`` ``[N, D]`` is the learned input of users
    without an embedding (:meth:`fill_missing`).

    ``feeds`` says where a downstream model puts the output: ``features`` (``forward(vectors,
    found) -> [B, K, out_dim]`` extra sparse embeddings, the default), ``sequence`` (the
    same shape, tokens prepended to the user's event sequence) or ``user``
    (``forward(vectors, found, user [B, out_dim]) -> [B, out_dim]``, combined with the
    model's own user representation). ``tokens`` is the K a ``features`` or ``sequence``
    adapter outputs (default 1; the ranker's interaction and the sequence model's length
    limit are sized by it).
    """

    feeds: ClassVar[Literal["features", "sequence", "user"]] = "features"
    tokens: int = 1

    def __init__(self, *, num_vectors: int, dim: int, out_dim: int):
        super().__init__()
        if num_vectors < 1 or dim < 1 or out_dim < 1:
            raise ValueError(f"an adapter needs vectors and widths, got N={num_vectors}, "
                             f"D={dim}, out_dim={out_dim}")
        self.num_vectors = num_vectors
        self.dim = dim
        self.out_dim = out_dim
        self.missing = nn.Parameter(0.02 * torch.randn(num_vectors, dim))

    def fill_missing(self, vectors: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
        """``vectors`` where ``found``, the learned ``missing`` input elsewhere; checks the
        shapes (``[B, N, D]`` and ``[B]``)."""
        expected = (self.num_vectors, self.dim)
        if vectors.dim() != 3 or tuple(vectors.shape[1:]) != expected:
            raise ValueError(f"{type(self).__name__} takes vectors [B, {expected[0]}, "
                             f"{expected[1]}], got {list(vectors.shape)}")
        if found.shape != vectors.shape[:1]:
            raise ValueError(f"found must be [B] = [{vectors.shape[0]}], got "
                             f"{list(found.shape)}")
        keep = found.to(device=vectors.device, dtype=torch.bool).view(-1, 1, 1)
        return torch.where(keep, vectors.to(self.missing.dtype), self.missing)

    def forward(self, vectors: torch.Tensor,
                found: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Projection(nn.Module):
    """All N vectors of a user, flattened, to ``tokens`` vectors of width ``out_dim``:
    ``[B, N, D] -> [B, K, out_dim]`` by one learned linear map."""

    def __init__(self, *, num_vectors: int, dim: int, out_dim: int, tokens: int):
        super().__init__()
        self.tokens, self.out_dim = tokens, out_dim
        self.linear = nn.Linear(num_vectors * dim, tokens * out_dim)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        out = self.linear(vectors.flatten(1))
        return out.view(vectors.shape[0], self.tokens, self.out_dim)


class ProjectedAdapter(Adapter):
    """``reshape(W vec(X') + b)``, ``[B, N, D] -> [B, tokens, out_dim]``: every vector of the
    user (``X'``: the learned missing input when not found) through one :class:`Projection`."""

    def __init__(self, *, num_vectors: int, dim: int, out_dim: int, tokens: int):
        super().__init__(num_vectors=num_vectors, dim=dim, out_dim=out_dim)
        self.tokens = tokens
        self.projection = Projection(num_vectors=num_vectors, dim=dim, out_dim=out_dim,
                                     tokens=tokens)

    def forward(self, vectors: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
        return self.projection(self.fill_missing(vectors, found))
