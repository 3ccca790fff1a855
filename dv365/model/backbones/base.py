"""Pieces shared by the built-in backbones."""

from __future__ import annotations

import torch
from torch import nn

from dv365.model.backbones.options import ItemFeature


class ItemTables(nn.Module):
    """One embedding table per item feature (one id per example), sparse gradients."""

    def __init__(self, features: tuple[ItemFeature, ...], dim: int):
        super().__init__()
        self.names = [f.name for f in features]
        self.tables = nn.ModuleDict({f.name: nn.Embedding(f.num_rows, dim, sparse=True)
                                     for f in features})
        for table in self.tables.values():
            nn.init.normal_(table.weight, std=0.05)

    def forward(self, sparse: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, F, dim]`` in feature order."""
        return torch.stack([self.tables[n](sparse[n]) for n in self.names], dim=1)
