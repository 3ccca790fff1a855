"""No compression: the pooled slices are the user vectors (the paper's baseline)."""

from __future__ import annotations

import torch

from dv365.model.encoders.base import Encoder


class Identity(Encoder):
    """``[B, N, D] -> [B, N, D]`` unchanged; no parameters."""

    def __init__(self, options: object = None, *, num_slices: int, dim: int):
        super().__init__(num_slices=num_slices, dim=dim, num_outputs=num_slices)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled
