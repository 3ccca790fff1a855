"""``gatenet``: GateNet (Huang et al. 2020, arXiv 2007.03519) between a retrieval user
tower's own representation and the DV365 vectors."""

from __future__ import annotations

import torch
from torch import nn

from dv365.downstream.adapters.base import Adapter
from dv365.downstream.adapters.options import GateNetOptions


class GateNetAdapter(Adapter):
    """Combines the user tower's representation ``u [B, d]`` (``d = out_dim``) with the
    user's DV365 vectors ``x_1 .. x_N`` (each ``[D]``; the learned missing input when not
    found) through learned gates; ``forward(vectors, found, user)`` returns ``[B, d]``.

    With ``sigma`` the logistic function and ``*`` the element-wise product:

    * fields: ``e_i = P_i x_i + c_i`` (a projection per DV365 vector, ``D -> d``);
    * embedding gate (GateNet section 3.1): ``g_i = sigma(W_i e_i)``, ``W_i`` ``[d, d]``
      (``embedding_gate: bit``) or ``[1, d]`` (``vector``: one scalar per field), and
      ``ê_i = g_i * e_i``;
    * the MLP input is ``z_0 = [u; ê_1; ...; ê_N]`` (``(N + 1) d`` wide);
    * hidden gate (section 3.2) on every MLP layer ``l = 1 .. L`` (``hidden`` widths):
      ``h_l = ReLU(A_l z_{l-1} + b_l)``, ``z_l = sigma(G_l h_l) * h_l``;
    * the DV365 representation ``v = O z_L + o`` (``[d]``);
    * the output gate between the two: ``a = sigma(M [u; v] + m)``,
      ``out = a * u + (1 - a) * v``.

    The gates ``W_i`` and ``G_l`` have no bias, as in the paper.
    """

    feeds = "user"

    def __init__(self, options: GateNetOptions, *, num_vectors: int, dim: int, out_dim: int):
        super().__init__(num_vectors=num_vectors, dim=dim, out_dim=out_dim)
        n, d = num_vectors, out_dim
        self.field_weight = nn.Parameter(torch.randn(n, dim, d) / dim ** 0.5)
        self.field_bias = nn.Parameter(torch.zeros(n, d))
        gate_width = d if options.embedding_gate == "bit" else 1
        self.embedding_gate = nn.Parameter(torch.randn(n, d, gate_width) / d ** 0.5)
        widths = [(n + 1) * d, *options.hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.hidden_gates = nn.ModuleList(nn.Linear(b, b, bias=False) for b in widths[1:])
        self.output = nn.Linear(widths[-1], d)
        self.mix = nn.Linear(2 * d, d)

    def gated(self, vectors: torch.Tensor, found: torch.Tensor, user: torch.Tensor
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor | list[torch.Tensor]]]:
        """The output and every gate: ``embedding [B, N, d or 1]``, ``hidden`` (one
        ``[B, width]`` per layer) and ``mix [B, d]``."""
        if user.shape != (vectors.shape[0], self.out_dim):
            raise ValueError(f"user must be [B, {self.out_dim}], got {list(user.shape)}")
        x = self.fill_missing(vectors, found)
        fields = torch.einsum("bnk,nkd->bnd", x, self.field_weight) + self.field_bias
        embedding_gate = torch.sigmoid(torch.einsum("bnd,ndg->bng", fields,
                                                    self.embedding_gate))
        z = torch.cat([user, (embedding_gate * fields).flatten(1)], dim=1)
        hidden_gates = []
        for layer, gate in zip(self.layers, self.hidden_gates):
            h = torch.relu(layer(z))
            g = torch.sigmoid(gate(h))
            hidden_gates.append(g)
            z = g * h
        v = self.output(z)
        a = torch.sigmoid(self.mix(torch.cat([user, v], dim=1)))
        return a * user + (1 - a) * v, {"embedding": embedding_gate, "hidden": hidden_gates,
                                        "mix": a}

    def forward(self, vectors: torch.Tensor, found: torch.Tensor,
                user: torch.Tensor) -> torch.Tensor:
        return self.gated(vectors, found, user)[0]
