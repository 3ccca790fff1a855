"""Settings of the built-in adapters (the ``adapter:`` section of a downstream config).

Kept free of torch so that building the plugin registries (every ``dv365`` command) is cheap;
the modules next to this one build the networks.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LinearOptions(_Options):
    """A learned projection of all DV365 vectors to ``outputs`` extra sparse embeddings."""

    outputs: int = Field(default=1, gt=0,
                         description="K: extra sparse-feature embeddings of width out_dim")


class HstuPrependOptions(_Options):
    """A learned projection of all DV365 vectors to ``tokens`` tokens for an HSTU sequence."""

    tokens: int = Field(default=1, gt=0, description="K: tokens prepended to the sequence")


class GateNetOptions(_Options):
    """GateNet's embedding gates on the DV365 fields, hidden gates on the MLP layers, and a
    learned gate between the user tower's own representation and the DV365 one."""

    embedding_gate: Literal["bit", "vector"] = Field(
        default="bit", description="bit: one gate per value; vector: one gate per field")
    hidden: tuple[int, ...] = Field(default=(128,), description="MLP hidden layer widths")
