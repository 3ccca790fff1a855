"""Multi-task DLRM backbone built from torchrec's DLRM parts.

``DenseArch`` (an MLP) maps the dense context features to one vector; the sparse vectors are
the target item's features (one table each) plus the user vectors from the encoder, projected
to the interaction width by one linear map shared by all of them; ``InteractionArch`` takes
the dense vector and all pairwise dot products; ``OverArch`` ends in one output per task.
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.models.dlrm import DenseArch, InteractionArch, OverArch

from dv365.model.backbones.base import ItemTables
from dv365.model.backbones.options import BackboneInputs, DLRMOptions


class DLRM(nn.Module):
    """See the module docstring; ``forward(user, sparse, dense) -> [B, T]``."""

    def __init__(self, options: DLRMOptions, *, inputs: BackboneInputs):
        super().__init__()
        dim = options.embedding_dim
        self.inputs = inputs
        self.items = ItemTables(inputs.item_features, dim)
        if inputs.num_dense:
            self.dense_arch = DenseArch(inputs.num_dense, [*options.dense_layers, dim])
        else:
            # No dense context: a learned constant takes the dense vector's place.
            self.dense_constant = nn.Parameter(torch.zeros(dim))
        self.user_projection = (nn.Linear(inputs.user_dim, dim) if inputs.user_vectors
                                else None)
        num_sparse = len(inputs.item_features) + inputs.user_vectors
        self.interaction = InteractionArch(num_sparse_features=num_sparse)
        interactions = dim + (num_sparse + 1) * num_sparse // 2
        self.over_arch = OverArch(interactions, [*options.over_layers, len(inputs.tasks)])

    def forward(self, user: torch.Tensor | None, sparse: dict[str, torch.Tensor],
                dense: torch.Tensor) -> torch.Tensor:
        vectors = self.items(sparse)
        batch = vectors.shape[0]
        if self.user_projection is not None:
            vectors = torch.cat([vectors, self.user_projection(user)], dim=1)
        if self.inputs.num_dense:
            dense_vector = self.dense_arch(dense)
        else:
            dense_vector = self.dense_constant.expand(batch, -1)
        return self.over_arch(self.interaction(dense_vector, vectors))
