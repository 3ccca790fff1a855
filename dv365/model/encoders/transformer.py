"""A vanilla transformer encoder that keeps its last ``N_out`` outputs.

Token view: D tokens (the embedding dimensions) of width N; the last N_out of the N output
features of every token are kept, ``[D, N] -> [D, N_out]``. Dim view: N tokens (the slices) of
width D; the last N_out tokens are kept, ``[N, D] -> [N_out, D]``.
"""

from __future__ import annotations

import torch
from torch import nn

from dv365.model.encoders.base import Encoder, check_heads, encoder_layer
from dv365.model.encoders.options import TransformerOptions, default_outputs


class TransformerEncoder(Encoder):
    """``layers`` post-norm encoder layers, no positional encoding (the order is arbitrary)."""

    def __init__(self, options: TransformerOptions, *, num_slices: int, dim: int):
        outputs = options.outputs or default_outputs(num_slices)
        super().__init__(num_slices=num_slices, dim=dim, num_outputs=outputs)
        if outputs > num_slices:
            from dv365.errors import ConfigError

            raise ConfigError(f"a transformer keeps at most its {num_slices} inputs, asked for "
                              f"{outputs}", where="encoder.outputs")
        self.view = options.view
        width = num_slices if self.view == "token" else dim
        check_heads(width, options.heads, "the transformer")
        self.layers = nn.Sequential(*(encoder_layer(width, options.heads, options.ff_multiplier,
                                                    options.dropout)
                                      for _ in range(options.layers)))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.view == "token":
            out = self.layers(pooled.transpose(1, 2))  # [B, D, N]
            return out[:, :, -self.num_outputs:].transpose(1, 2)
        return self.layers(pooled)[:, -self.num_outputs:, :]
