"""What every encoder is: pooled slices ``[B, N, D]`` in, user vectors ``[B, N_out, D]`` out."""

from __future__ import annotations

import torch
from torch import nn

from dv365.errors import ConfigError


class Encoder(nn.Module):
    """Base class of user encoders; subclasses implement ``forward``.

    ``num_slices`` (N) and ``dim`` (D) describe the input, ``num_outputs`` (N_out) the output.
    """

    def __init__(self, *, num_slices: int, dim: int, num_outputs: int):
        super().__init__()
        if num_slices < 1 or dim < 1:
            raise ValueError(f"an encoder needs slices and a dimension, got N={num_slices}, "
                             f"D={dim}")
        if num_outputs < 1:
            raise ConfigError(f"an encoder needs at least one output, got {num_outputs}",
                              where="encoder.outputs")
        self.num_slices = num_slices
        self.dim = dim
        self.num_outputs = num_outputs

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def check_heads(width: int, heads: int, what: str) -> None:
    """Attention splits the model width across heads evenly."""
    if width % heads:
        raise ConfigError(f"{what} has width {width}, not divisible by {heads} heads",
                          where="encoder.heads", hint="choose heads that divide every width")


def mlp(widths: list[int]) -> nn.Sequential:
    """Linear layers of the given widths with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def encoder_layer(width: int, heads: int, ff_multiplier: int, dropout: float) -> nn.Module:
    """``Norm(U + FF(Norm(U + Att(U))))``: a post-norm transformer encoder layer."""
    return nn.TransformerEncoderLayer(d_model=width, nhead=heads,
                                      dim_feedforward=width * ff_multiplier, dropout=dropout,
                                      activation="gelu", batch_first=True, norm_first=False)
