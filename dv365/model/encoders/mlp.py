"""An MLP encoder: token view ``[D, N] -> [D, N_out]``, dim view ``[1, N*D] -> [1, N_out*D]``."""

from __future__ import annotations

import torch

from dv365.model.encoders.base import Encoder, mlp
from dv365.model.encoders.options import MLPOptions, default_outputs


class MLPEncoder(Encoder):
    """Hidden layers with ReLU; in the token view the same MLP runs on each embedding dim."""

    def __init__(self, options: MLPOptions, *, num_slices: int, dim: int):
        outputs = options.outputs or default_outputs(num_slices)
        super().__init__(num_slices=num_slices, dim=dim, num_outputs=outputs)
        self.view = options.view
        if self.view == "token":
            self.mlp = mlp([num_slices, *options.hidden, outputs])
        else:
            self.mlp = mlp([num_slices * dim, *options.hidden, outputs * dim])

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.view == "token":
            return self.mlp(pooled.transpose(1, 2)).transpose(1, 2)
        return self.mlp(pooled.flatten(1)).view(-1, self.num_outputs, self.dim)
