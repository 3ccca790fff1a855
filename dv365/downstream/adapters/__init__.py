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
from dv365.hookspecs import AdapterFactory, RegisterAdapter, hookimpl
from dv365.plugins import lazy_factory


def _lazy(module: str, name: str) -> AdapterFactory:
    """The network class ``name`` of this package's ``module``, imported (with torch) only
    when an adapter is built."""
    return lazy_factory(f"{__name__}.{module}", name)


@hookimpl
def dv365_register_adapters(register: RegisterAdapter) -> None:
    register("linear", _lazy("linear", "LinearAdapter"), options=LinearOptions,
             doc="projection to K extra sparse embeddings for a ranker (paper, ranking)")
    register("hstu_prepend", _lazy("hstu_prepend", "HstuPrependAdapter"),
             options=HstuPrependOptions,
             doc="projection to K tokens prepended to an HSTU input sequence")
    register("gatenet", _lazy("gatenet", "GateNetAdapter"), options=GateNetOptions,
             doc="GateNet gates between a retrieval user tower and DV365 (paper, retrieval)")
