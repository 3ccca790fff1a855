"""Linear Compression Encoder (LCE): a learned linear map along the slice axis."""

from __future__ import annotations

import torch
from torch import nn

from dv365.model.encoders.base import Encoder
from dv365.model.encoders.options import LCEOptions, default_outputs


class LinearCompression(nn.Module):
    """``[B, N, D] -> [B, L, D]``; token view ``[D, N] -> [D, L]`` shares weights across D.

    The dim view flattens to ``[1, N*D]`` and maps it to ``[1, L*D]`` (no sharing).
    """

    def __init__(self, num_slices: int, dim: int, outputs: int, view: str):
        super().__init__()
        self.view, self.dim, self.outputs = view, dim, outputs
        if view == "token":
            self.linear = nn.Linear(num_slices, outputs)
        else:
            self.linear = nn.Linear(num_slices * dim, outputs * dim)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.view == "token":
            return self.linear(pooled.transpose(1, 2)).transpose(1, 2)
        return self.linear(pooled.flatten(1)).view(-1, self.outputs, self.dim)


class LCE(Encoder):
    """The LCE branch of FSA on its own."""

    def __init__(self, options: LCEOptions, *, num_slices: int, dim: int):
        outputs = options.outputs or default_outputs(num_slices)
        super().__init__(num_slices=num_slices, dim=dim, num_outputs=outputs)
        self.lce = LinearCompression(num_slices, dim, outputs, options.view)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.lce(pooled)
