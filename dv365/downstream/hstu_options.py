"""Settings of the HSTU sequence encoder (:mod:`dv365.downstream.hstu`).

Kept free of torch so that reading a config that names them is cheap; the module next to
this one builds the network.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The longest history the control is run over (the most recent K events).
MAX_HISTORY = 2000


class HstuOptions(BaseModel):
    """The shape of an HSTU stack (Zhai et al. 2024): ``layers`` blocks of ``heads`` heads
    over sequences of at most ``max_len`` events of width ``dim``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dim: int = Field(default=64, gt=0, description="d: the width of every event vector")
    layers: int = Field(default=2, gt=0, description="HSTU blocks, one after the other")
    heads: int = Field(default=1, gt=0, description="attention heads per block")
    attention_dim: int | None = Field(
        default=None, gt=0, description="width of Q and K per head (default: dim)")
    linear_dim: int | None = Field(
        default=None, gt=0, description="width of U and V per head (default: dim)")
    max_len: int = Field(default=500, gt=0, le=MAX_HISTORY,
                         description="K: the longest sequence, and the attention's divisor n")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0,
                           description="dropout on LayerNorm(AV) * U before the output linear")
    time_buckets: int = Field(default=128, gt=0,
                              description="the largest time bucket (time_buckets + 1 weights)")

    @model_validator(mode="after")
    def _per_head_defaults(self) -> "HstuOptions":
        # Frozen: fill the per-head widths through object.__setattr__ once, at validation.
        if self.attention_dim is None:
            object.__setattr__(self, "attention_dim", self.dim)
        if self.linear_dim is None:
            object.__setattr__(self, "linear_dim", self.dim)
        return self
