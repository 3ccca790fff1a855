"""The built-in user encoders, registered as a default plugin.

``fsa`` (the paper's Funnel Summarization Arch), ``lce``, ``mlp``, ``transformer`` and
``identity`` (no compression). Their settings are in :mod:`dv365.model.encoders.options`;
the networks are imported only when built, so listing plugins stays cheap.
"""

from __future__ import annotations

from dv365.hookspecs import RegisterEncoder, hookimpl
from dv365.model.encoders.options import (
    FSAOptions,
    LCEOptions,
    MLPOptions,
    TransformerOptions,
)


def _fsa(options: FSAOptions, *, num_slices: int, dim: int):
    from dv365.model.encoders.fsa import FSA

    return FSA(options, num_slices=num_slices, dim=dim)


def _lce(options: LCEOptions, *, num_slices: int, dim: int):
    from dv365.model.encoders.lce import LCE

    return LCE(options, num_slices=num_slices, dim=dim)


def _mlp(options: MLPOptions, *, num_slices: int, dim: int):
    from dv365.model.encoders.mlp import MLPEncoder

    return MLPEncoder(options, num_slices=num_slices, dim=dim)


def _transformer(options: TransformerOptions, *, num_slices: int, dim: int):
    from dv365.model.encoders.transformer import TransformerEncoder

    return TransformerEncoder(options, num_slices=num_slices, dim=dim)


def _identity(options: object, *, num_slices: int, dim: int):
    from dv365.model.encoders.identity import Identity

    return Identity(options, num_slices=num_slices, dim=dim)


@hookimpl
def dv365_register_encoders(register: RegisterEncoder) -> None:
    register("fsa", _fsa, options=FSAOptions,
             doc="Funnel Summarization Arch: funnel transformer + linear compression (paper)")
    register("lce", _lce, options=LCEOptions, doc="Linear Compression Encoder alone")
    register("mlp", _mlp, options=MLPOptions, doc="MLP along the slice axis")
    register("transformer", _transformer, options=TransformerOptions,
             doc="vanilla transformer, last N_out outputs kept")
    register("identity", _identity, doc="no compression: the pooled slices themselves")
