"""The built-in downstream adapters, registered as a default plugin.

``linear`` (extra sparse embeddings for a ranker, the paper's best ranking adapter),
``hstu_prepend`` (tokens prepended to an HSTU sequence) and ``gatenet`` (gates between a
retrieval user tower and the DV365 vectors, the paper's best retrieval adapter). Their
settings are in :mod:`dv365.downstream.adapters.options`; the networks are imported only when
built, so listing plugins stays cheap. :func:`dv365.downstream.adapters.build.build_adapter`
builds one by name from a config section.
"""

from __future__ import annotations

from dv365.downstream.adapters.options import GateNetOptions, HstuPrependOptions, LinearOptions
from dv365.hookspecs import RegisterAdapter, hookimpl


def _linear(options: LinearOptions, *, num_vectors: int, dim: int, out_dim: int):
    from dv365.downstream.adapters.linear import LinearAdapter

    return LinearAdapter(options, num_vectors=num_vectors, dim=dim, out_dim=out_dim)


def _hstu_prepend(options: HstuPrependOptions, *, num_vectors: int, dim: int, out_dim: int):
    from dv365.downstream.adapters.hstu_prepend import HstuPrependAdapter

    return HstuPrependAdapter(options, num_vectors=num_vectors, dim=dim, out_dim=out_dim)


def _gatenet(options: GateNetOptions, *, num_vectors: int, dim: int, out_dim: int):
    from dv365.downstream.adapters.gatenet import GateNetAdapter

    return GateNetAdapter(options, num_vectors=num_vectors, dim=dim, out_dim=out_dim)


@hookimpl
def dv365_register_adapters(register: RegisterAdapter) -> None:
    register("linear", _linear, options=LinearOptions,
             doc="projection to K extra sparse embeddings for a ranker (paper, ranking)")
    register("hstu_prepend", _hstu_prepend, options=HstuPrependOptions,
             doc="projection to K tokens prepended to an HSTU input sequence")
    register("gatenet", _gatenet, options=GateNetOptions,
             doc="GateNet gates between a retrieval user tower and DV365 (paper, retrieval)")
