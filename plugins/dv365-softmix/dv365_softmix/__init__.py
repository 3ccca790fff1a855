"""dv365-softmix: an example plugin that registers the ``softmix`` user encoder."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

import dv365
from dv365.hookspecs import RegisterEncoder
from dv365.model.encoders.base import Encoder


class SoftmixOptions(BaseModel):
    """Settings of the ``encoder:`` section when ``type: softmix``."""

    model_config = ConfigDict(extra="forbid")

    outputs: int = Field(default=8, gt=0, description="number of output vectors")
    temperature: float = Field(default=1.0, gt=0, description="softmax temperature")


class Softmix(Encoder):
    """Each output is a softmax-weighted mixture of the N slices, shared across the D dims."""

    def __init__(self, options: SoftmixOptions, *, num_slices: int, dim: int):
        super().__init__(num_slices=num_slices, dim=dim, num_outputs=options.outputs)
        self.temperature = options.temperature
        self.logits = nn.Parameter(0.01 * torch.randn(options.outputs, num_slices))
        self.scale = nn.Parameter(torch.ones(options.outputs, 1))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.logits / self.temperature, dim=-1)  # [N_out, N]
        return self.scale * torch.einsum("on,bnd->bod", weights, pooled)


@dv365.hookimpl
def dv365_register_encoders(register: RegisterEncoder) -> None:
    register("softmix", Softmix, options=SoftmixOptions,
             doc="learned convex mixtures of slices (example plugin)")
