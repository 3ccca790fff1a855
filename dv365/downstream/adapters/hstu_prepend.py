"""``hstu_prepend``: DV365 vectors as tokens in front of an HSTU input sequence."""

from __future__ import annotations

import torch

from dv365.downstream.adapters.base import ProjectedAdapter
from dv365.downstream.adapters.options import HstuPrependOptions


class HstuPrependAdapter(ProjectedAdapter):
    """``T = reshape(W vec(X') + b)``, ``[B, N, D] -> [B, K, out_dim]`` with ``K = tokens``:
    tokens of the sequence model's width, to put in front of each user's event sequence with
    :func:`prepend_padded` or :func:`prepend_jagged`."""

    feeds = "sequence"

    def __init__(self, options: HstuPrependOptions, *, num_vectors: int, dim: int,
                 out_dim: int):
        super().__init__(num_vectors=num_vectors, dim=dim, out_dim=out_dim,
                         tokens=options.tokens)


def prepend_padded(tokens: torch.Tensor, sequence: torch.Tensor,
                   lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Prepend ``tokens [B, K, d]`` to a padded batch ``sequence [B, L, d]`` whose user ``b``
    holds ``lengths[b]`` events at positions ``0 .. lengths[b] - 1`` (padding at the end).

    Returns ``([B, K + L, d], lengths + K)``: the tokens at positions ``0 .. K - 1``, then
    the events; the padding stays at the end.
    """
    if tokens.shape[0] != sequence.shape[0] or tokens.shape[2] != sequence.shape[2]:
        raise ValueError(f"tokens {list(tokens.shape)} do not fit a sequence "
                         f"{list(sequence.shape)}")
    return torch.cat([tokens.to(sequence.dtype), sequence], dim=1), lengths + tokens.shape[1]


def prepend_jagged(tokens: torch.Tensor, values: torch.Tensor,
                   offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Prepend ``tokens [B, K, d]`` to a jagged batch: ``values [T, d]`` holds user ``b``'s
    events at rows ``offsets[b] .. offsets[b + 1] - 1`` (``offsets [B + 1]``, from 0).

    Returns ``(values [T + B*K, d], offsets + K * arange(B + 1))``: each user's K tokens, then
    its events; the new lengths are ``diff`` of the new offsets (old lengths + K).
    """
    batch, k, width = tokens.shape
    if offsets.shape != (batch + 1,) or values.shape[1:] != (width,):
        raise ValueError(f"tokens {list(tokens.shape)} do not fit values "
                         f"{list(values.shape)} with offsets {list(offsets.shape)}")
    offsets = offsets.to(torch.long)
    lengths = offsets[1:] - offsets[:-1]
    new_offsets = offsets + k * torch.arange(batch + 1, device=offsets.device)
    out = values.new_empty(values.shape[0] + batch * k, width)
    owner = torch.repeat_interleave(torch.arange(batch, device=offsets.device), lengths)
    out[torch.arange(values.shape[0], device=offsets.device) + k * (owner + 1)] = values
    token_rows = new_offsets[:-1, None] + torch.arange(k, device=offsets.device)
    out[token_rows.reshape(-1)] = tokens.reshape(-1, width).to(values.dtype)
    return out, new_offsets
