"""Funnel Summarization Arch (FSA), the paper's user encoder.

Two branches over the pooled slices, outputs stacked along the slice axis:

* a **funnel transformer**: ``blocks`` blocks of ``layers_per_block`` encoder layers
  ``Norm(U + FF(Norm(U + Att(U))))``, with strided mean pooling along the *slice* axis between
  blocks (not along the sequence of tokens as in the original Funnel Transformer), so the
  slice axis shrinks ``N -> ceil(N / stride) -> ...``;
* a **Linear Compression Encoder** in parallel, ``N -> L`` along the slice axis, where ``L``
  fills the remaining outputs: ``L = outputs - funnel width``.

In the token view (default) the network runs on ``[D, N]``: the D embedding dimensions are
the tokens and the slices their features, so every parameter is shared across the D
dimensions. With 200 slices, 3 blocks and stride 2 the funnel keeps 50 and the LCE adds 8:
the paper's 58 outputs (by default ``round(N * 58 / 200)``, at least one more than the
funnel keeps). The dim view runs the funnel on ``[N, D]`` (slices are tokens, pooled
between blocks) and the LCE on the flat ``[1, N*D]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dv365.errors import ConfigError
from dv365.model.encoders.base import Encoder, check_heads, encoder_layer
from dv365.model.encoders.lce import LinearCompression
from dv365.model.encoders.options import FSAOptions, default_outputs


def funnel_widths(num_slices: int, blocks: int, stride: int) -> list[int]:
    """The slice-axis length seen by each block (pooling with ``ceil`` between blocks)."""
    widths = [num_slices]
    for _ in range(blocks - 1):
        widths.append(math.ceil(widths[-1] / stride))
    return widths


def slice_mean_pool(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Mean of each run of ``stride`` along the last axis; a short last run averages itself."""
    if stride == 1:
        return x
    lead, n = x.shape[:-1], x.shape[-1]
    out = F.avg_pool1d(x.reshape(-1, 1, n), kernel_size=stride, stride=stride, ceil_mode=True)
    return out.reshape(*lead, out.shape[-1])


class FSA(Encoder):
    """Funnel transformer + LCE, stacked (see the module docstring)."""

    def __init__(self, options: FSAOptions, *, num_slices: int, dim: int):
        widths = funnel_widths(num_slices, options.blocks, options.stride)
        funnel_out = widths[-1]
        # The default keeps the paper's ratio, but always leaves the linear branch one output.
        outputs = options.outputs or max(default_outputs(num_slices), funnel_out + 1)
        lce_out = outputs - funnel_out
        if lce_out < 1:
            raise ConfigError(
                f"the funnel alone keeps {funnel_out} of {num_slices} slices, leaving no room "
                f"for the linear compression branch within {outputs} outputs",
                where="encoder.outputs", hint="raise outputs, or add blocks or stride")
        super().__init__(num_slices=num_slices, dim=dim, num_outputs=outputs)
        self.view = options.view
        self.stride = options.stride
        self.funnel_outputs, self.lce_outputs = funnel_out, lce_out
        self.blocks = nn.ModuleList()
        for width in widths:
            # token view: tokens are the D dims, width = slices; dim view: width = D.
            model_width = width if self.view == "token" else dim
            check_heads(model_width, options.heads, "an FSA block")
            self.blocks.append(nn.Sequential(*(
                encoder_layer(model_width, options.heads, options.ff_multiplier, options.dropout)
                for _ in range(options.layers_per_block))))
        self.lce = LinearCompression(num_slices, dim, lce_out, self.view)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.view == "token":
            u = pooled.transpose(1, 2)  # [B, D, N]
            for i, block in enumerate(self.blocks):
                if i:
                    u = slice_mean_pool(u, self.stride)
                u = block(u)
            funnel = u.transpose(1, 2)  # [B, N_funnel, D]
        else:
            u = pooled  # [B, N, D]
            for i, block in enumerate(self.blocks):
                if i:
                    u = slice_mean_pool(u.transpose(1, 2), self.stride).transpose(1, 2)
                u = block(u)
            funnel = u
        return torch.cat([funnel, self.lce(pooled)], dim=1)
