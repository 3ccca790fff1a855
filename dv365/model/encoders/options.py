"""Settings of the built-in encoders (the ``encoder:`` section of a training config).

Kept free of torch so that building the plugin registries (every ``dv365`` command) is cheap;
the modules next to this one build the networks.

Every encoder maps the pooled slices ``[N, D]`` of a user to ``num_outputs`` vectors of the
same dimension ``D``. ``view`` chooses how the network sees them:

* ``token`` (the paper's choice): the transposed ``[D, N]`` view; each of the D embedding
  dimensions is a token whose features are the N slices, so every parameter is shared across
  the D dimensions and the output dimensions keep the meaning of the input dimensions.
* ``dim``: the ``[N, D]`` view (slices are tokens) for attention encoders, or the flat
  ``[1, N*D]`` view for linear and MLP encoders -- the "dim-wise" baselines of the paper.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# The paper compresses ~200 slices into 58 output vectors; the default output count keeps
# that ratio for any number of slices.
PAPER_SLICES, PAPER_OUTPUTS = 200, 58

View = Literal["token", "dim"]


def default_outputs(num_slices: int) -> int:
    """``round(N * 58 / 200)``, at least 1: 58 outputs for 200 slices."""
    return max(1, round(num_slices * PAPER_OUTPUTS / PAPER_SLICES))


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FSAOptions(_Options):
    """Funnel Summarization Arch: a funnel transformer plus a parallel linear compression."""

    view: View = "token"
    outputs: int | None = Field(default=None, gt=0,
                                description="total output vectors; default keeps 58/200")
    blocks: int = Field(default=3, ge=1, description="n: funnel blocks")
    layers_per_block: int = Field(default=1, ge=1, description="m: encoder layers per block")
    stride: int = Field(default=2, ge=1, description="mean-pooling stride between blocks")
    heads: int = Field(default=1, ge=1)
    ff_multiplier: int = Field(default=2, ge=1, description="feed-forward width / model width")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class LCEOptions(_Options):
    """Linear Compression Encoder: one learned linear map along the slice axis."""

    view: View = "token"
    outputs: int | None = Field(default=None, gt=0)


class MLPOptions(_Options):
    """A multi-layer perceptron from the slices to the outputs."""

    view: View = "token"
    outputs: int | None = Field(default=None, gt=0)
    hidden: tuple[int, ...] = Field(default=(128,), description="hidden layer widths")


class TransformerOptions(_Options):
    """A vanilla transformer encoder whose last ``outputs`` outputs are kept."""

    view: View = "token"
    outputs: int | None = Field(default=None, gt=0)
    layers: int = Field(default=2, ge=1)
    heads: int = Field(default=1, ge=1)
    ff_multiplier: int = Field(default=2, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
