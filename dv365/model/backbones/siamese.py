"""Siamese (two-tower) backbone, the alternative the paper compared with DLRM.

The user tower sees the user vectors and the dense context; the item tower sees the target
item's features. Each tower emits one ``task_dim`` vector per task; a task's output is the dot
product of the two plus a per-task bias. Nothing crosses between the towers before the dot
product, which is what makes the item side precomputable for retrieval.
"""

from __future__ import annotations

import torch
from torch import nn

from dv365.model.backbones.base import ItemTables
from dv365.model.backbones.options import BackboneInputs, SiameseOptions
from dv365.model.encoders.base import mlp


class Siamese(nn.Module):
    """See the module docstring; ``forward(user, sparse, dense) -> [B, T]``."""

    def __init__(self, options: SiameseOptions, *, inputs: BackboneInputs):
        super().__init__()
        self.inputs = inputs
        tasks, k = len(inputs.tasks), options.task_dim
        self.items = ItemTables(inputs.item_features, options.embedding_dim)
        user_in = inputs.user_vectors * inputs.user_dim + inputs.num_dense
        # Without user vectors and dense context the user side is a learned constant.
        self.user_tower = (mlp([user_in, *options.tower_layers, tasks * k]) if user_in
                           else None)
        self.user_constant = nn.Parameter(torch.zeros(tasks * k)) if not user_in else None
        item_in = len(inputs.item_features) * options.embedding_dim
        self.item_tower = mlp([item_in, *options.tower_layers, tasks * k])
        self.bias = nn.Parameter(torch.zeros(tasks))
        self.shape = (tasks, k)

    def forward(self, user: torch.Tensor | None, sparse: dict[str, torch.Tensor],
                dense: torch.Tensor) -> torch.Tensor:
        item = self.item_tower(self.items(sparse).flatten(1))
        batch = item.shape[0]
        if self.user_tower is not None:
            parts = [dense] if self.inputs.num_dense else []
            if self.inputs.user_vectors:
                parts.insert(0, user.flatten(1))
            u = self.user_tower(torch.cat(parts, dim=1))
        else:
            u = self.user_constant.expand(batch, -1)
        dot = (u.view(batch, *self.shape) * item.view(batch, *self.shape)).sum(-1)
        return dot + self.bias
